#!/usr/bin/env bash
# Creates the two Python environments the tests and the worker need, idempotently:
#   .venv/mineru  mineru==4.0.12           (the engine: mineru-api, offline flash tier)
#   .venv/sdk     runpod==1.12.0, rotel    (the SDK as the wire reference; an OTLP collector)
#   .venv/sdk2    runpod==2.0.0rc2         (the SDK's 2.0 start-up behaviour, for parity tests)
#   .venv/mineru3 mineru==3.4.5            (MinerU 3.4 for the v3 adapter's tests; no torch)
#   .venv/s3      moto[server]             (a local S3 API server for the s3 transport's tests)
# They are separate because runpod's and mineru's dependency pins conflict (and moto pins
# boto3/botocore, which runpod also depends on).
# Needs python3 (3.10-3.14) with the venv module (Debian: apt-get install python3-venv).
# Installs with uv (PyPI's `uv`, pinned below): the one on PATH, or one bootstrapped with pip
# into $VENV_ROOT/uv, since it installs MinerU's ~150 packages in about a minute where pip
# takes seven; plain pip when neither works. Re-running only installs what is missing or at
# the wrong version.
#
# Usage: setup-python.sh [--mineru-only]   (--mineru-only: just the engine's environment, all
# the worker itself needs; scripts/main-job.sh uses it)
# Environment: PYTHON (interpreter, default python3), VENV_ROOT (default <repo>/.venv).
set -euo pipefail

mineru_only=0
case "${1:-}" in
    "") ;;
    --mineru-only) mineru_only=1 ;;
    *) echo "usage: $0 [--mineru-only]" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_root="${VENV_ROOT:-$repo/.venv}"
python="${PYTHON:-python3}"

MINERU_REQS=(mineru==4.0.12)
SDK_REQS=(runpod==1.12.0 rotel==0.0.1a15)
SDK2_REQS=(runpod==2.0.0rc2)
MINERU3_REQS=(mineru==3.4.5)
S3_REQS=("moto[server]==5.2.5")
UV_REQ=uv==0.13.9

command -v "$python" >/dev/null || { echo "error: $python not found; install python3 (3.10-3.14)" >&2; exit 1; }
"$python" - <<'PY' || { echo "error: MinerU 4.0.12 needs Python >= 3.10 and < 3.15" >&2; exit 1; }
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 15) else 1)
PY

# uv on PATH, else bootstrapped once into $venv_root/uv; nothing when that fails (pip is used).
uv=""
if command -v uv >/dev/null; then
    uv="$(command -v uv)"
elif [[ -x "$venv_root/uv/bin/uv" ]]; then
    uv="$venv_root/uv/bin/uv"
elif "$python" -m venv "$venv_root/uv" >/dev/null 2>&1 \
    && "$venv_root/uv/bin/python" -m pip install --quiet --disable-pip-version-check "$UV_REQ"; then
    uv="$venv_root/uv/bin/uv"
else
    echo "note: could not bootstrap uv; installing with pip (slower)" >&2
fi

# Prints nothing and succeeds when every "name==version" is installed in the environment.
installed() {
    local venv="$1"; shift
    "$venv/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for req in sys.argv[1:]:
    name, want = req.split("==")
    name = name.split("[")[0]
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

ensure_venv() {
    local venv="$1"; shift
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "creating $venv"
        if [[ -n "$uv" ]]; then
            "$uv" venv --quiet --python "$python" "$venv"
        else
            "$python" -m venv "$venv" || {
                echo "error: '$python -m venv' failed (Debian: apt-get install python3-venv)" >&2
                exit 1
            }
        fi
    fi
    if installed "$venv" "$@"; then
        echo "up to date: $venv ($*)"
        return
    fi
    echo "installing into $venv: $*"
    if [[ -n "$uv" ]]; then
        "$uv" pip install --quiet --python "$venv/bin/python" "$@"
    else
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    fi
    installed "$venv" "$@" || { echo "error: $* did not install into $venv" >&2; exit 1; }
}

ensure_venv "$venv_root/mineru" "${MINERU_REQS[@]}"
if [[ $mineru_only == 1 ]]; then
    echo "MinerU environment ready: $venv_root/mineru (mineru-api: $venv_root/mineru/bin/mineru-api)"
    exit 0
fi
ensure_venv "$venv_root/sdk" "${SDK_REQS[@]}"
ensure_venv "$venv_root/sdk2" "${SDK2_REQS[@]}"
ensure_venv "$venv_root/mineru3" "${MINERU3_REQS[@]}"
ensure_venv "$venv_root/s3" "${S3_REQS[@]}"

cat <<EOF_SUMMARY

Python environments ready:
  MinerU:     $venv_root/mineru   (mineru-api: $venv_root/mineru/bin/mineru-api)
  SDK:        $venv_root/sdk      (python: $venv_root/sdk/bin/python)
  SDK 2.0:    $venv_root/sdk2     (runpod 2.0.0rc2; tests: SDK2_VENV)
  MinerU 3.4: $venv_root/mineru3  (mineru-api for MINERU_ENGINE_ADAPTER=v3; tests: MINERU3_VENV)
  S3 server:  $venv_root/s3       (moto_server: $venv_root/s3/bin/moto_server)

The worker finds mineru-api with MINERU_VENV=$venv_root/mineru (or MINERU_API_BIN); the
tests use the same variable and default to <repo>/.venv/mineru.
EOF_SUMMARY
