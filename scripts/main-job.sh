#!/usr/bin/env bash
# The main job, from a fresh clone: parse the bundled sample PDF with the MinerU worker through its
# local API (the SDK's --rp_serve_api), offline, on the model-free flash tier, and write the Markdown to a file.
#
#   1. scripts/setup-python.sh --mineru-only   (.venv/mineru with mineru==4.0.12)
#   2. cargo build --release -p mineru-handler
#   3. mineru-handler --rp_serve_api, one /runsync job (tier flash, ocr_mode txt, tarball_b64)
#   4. the tar.gz from the result unpacked into OUT_DIR: sample.md, images/, JSON artefacts
#
# Usage: scripts/main-job.sh [document.pdf]   (default mineru-handler/assets/sample.pdf)
# Environment: OUT_DIR (default <repo>/out).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

doc="$(realpath "${1:-mineru-handler/assets/sample.pdf}")"
out_dir="$(realpath -m "${OUT_DIR:-$repo/out}")"
basename="$(basename "$doc")"; basename="${basename%.*}"
basename="$(printf '%s' "$basename" | tr -c 'A-Za-z0-9_-' '_')"
[[ -f "$doc" ]] || { echo "error: $doc not found" >&2; exit 1; }

bash scripts/setup-python.sh --mineru-only
venv="$repo/.venv/mineru"
cargo build --release --locked -p mineru-handler
worker="$repo/target/release/mineru-handler"

work="$(mktemp -d)"
worker_pid=""
cleanup() {
    [[ -n "$worker_pid" ]] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The worker's local API (--rp_serve_api) answers /runsync with the whole job result; the
# test-input mode only logs it, cut to the log line limit.
port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
echo "starting the worker (offline, tier flash) on 127.0.0.1:$port; log: $work/worker.log"
env MINERU_VENV="$venv" MINERU_SERVER_TIER=flash MINERU_MODEL_SOURCE=local HF_HUB_OFFLINE=1 \
    "$worker" --rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port "$port" > "$work/worker.log" 2>&1 &
worker_pid=$!

mkdir -p "$out_dir"
status=0
"$venv/bin/python" - "$doc" "$basename" "$port" "$out_dir" "$worker_pid" <<'PY' || status=$?
import base64, io, json, os, sys, tarfile, time, urllib.error, urllib.request
doc, basename, port, out_dir, pid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
base = f"http://127.0.0.1:{port}"

# The API serves once the engine has started and warmed up (a few seconds on CPU).
deadline = time.monotonic() + 300
while True:
    try:
        urllib.request.urlopen(f"{base}/health", timeout=5).read()
        break
    except (urllib.error.URLError, ConnectionError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("error: the worker exited before serving")
        if time.monotonic() > deadline:
            sys.exit("error: the worker did not start serving within 300s")
        time.sleep(0.5)

with open(doc, "rb") as f:
    data = base64.b64encode(f.read()).decode()
job = {"input": {"file_b64": data, "basename": basename, "tier": "flash", "ocr_mode": "txt",
                 "transport": "tarball_b64"}}
request = urllib.request.Request(f"{base}/runsync", data=json.dumps(job).encode(),
                                 headers={"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=600))
output = answer.get("output") or {}
if answer.get("status") != "COMPLETED" or not output.get("ok"):
    sys.exit(f"error: the job failed: {answer.get('error') or output.get('error') or answer}")
archive = base64.b64decode(output["results"][0]["tarball_b64"])
with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
    tar.extractall(out_dir, filter="data")
print(f"parsed in {output['elapsed_seconds']}s with MinerU {output['mineru_version']} "
      f"(tier {output['debug']['tier']}, phase_ms {output['debug']['phase_ms']})")
PY
if [[ $status != 0 ]]; then
    echo "---- worker log (last lines) ----" >&2
    tail -n 30 "$work/worker.log" >&2
    exit "$status"
fi

md="$out_dir/$basename.md"
echo
echo "Markdown written to $md"
echo "(images and the JSON artefacts are next to it in $out_dir)"
echo "---- first lines ----"
head -n 15 "$md"
