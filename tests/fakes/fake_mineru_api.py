#!/usr/bin/env python3
"""FAKE mineru-api: a stand-in for MinerU 4.0.12's `mineru-api` server, for the paths that
cannot run on a CPU machine without models: GPU tiers, model-preload failures, an engine that
crashes mid-parse, a parse that hangs (cancellation), transient 503s during start-up.

It is NOT MinerU. It speaks the same `/v1` API shapes (checked against mineru 4.0.12's
`mineru/parser/api_server.py` and `task_api.py`) and returns a synthetic result zip.
Python standard library only.

Flags: the real server's (`--host`, `--port`, `--tier`, `--preload-models`, `--api-key`,
`--upload-dir`, ...); unknown flags are ignored.

Behaviour by the submitted file's name (its stem):
  contains "crash" -> the server process exits (code 17) while the task is running
  contains "hang"  -> the task stays `running` forever
  contains "slow"  -> the task takes 0.5 s
  contains "gate"  -> the task stays `running` until the file FAKE_MINERU_GATE exists
  contains "oom"   -> the task fails with a CUDA out-of-memory parse_failed error
  contains "degraded" -> the result zip also holds a member named "../escape.md" (unsafe)
  contains "big"   -> the result zip also holds a 64 KiB incompressible image
  anything else    -> completes at once

A PDF's result is page-aware: one Markdown paragraph "Fake page <p>." and one middle/structured
page entry per parsed page, with document-absolute 0-based `page_idx` as MinerU 4 writes
them, for the pages its `page_range` selects (the page count is the number of `/Type /Page`
objects). Every result holds `images/page_0_image_0.jpg`, whose bytes name the task's page
range: two page ranges of one document collide on the name, not on the bytes.

Environment:
  FAKE_MINERU_LOG=path              append one JSON line per start and per submission
  FAKE_MINERU_PRELOAD_FAIL=1        with --preload-models: every route answers 503
                                    model_preload_files_missing (as the real server does)
  FAKE_MINERU_HEALTH_503=N          the first N health checks answer 503 server_shutting_down
  FAKE_MINERU_EXIT_ON_START=CODE    exit with CODE before listening (a broken installation)
  FAKE_MINERU_GRANDCHILD_PIDFILE=p  start a `sleep` grandchild and write its pid to p
                                    (to check that the whole process group is stopped)
  FAKE_MINERU_FAIL_PAGES=3,7        a PDF task selecting any of these 0-based pages fails with
                                    parse_failed (a poison page the engine reports)
  FAKE_MINERU_CRASH_PAGES=3,7       a PDF task selecting any of these pages crashes the server
  FAKE_MINERU_CRASH_ONCE=path       with FAKE_MINERU_CRASH_PAGES: crash only while `path` does
                                    not exist (the crash creates it): a transient fault
  FAKE_MINERU_PAGE_SECONDS=s        a PDF task takes s seconds per selected page
"""

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

VERSION = "4.0.12"
TIERS_BY_SERVER = {
    "flash": ["flash"],
    "basic": ["flash", "basic"],
    "standard": ["flash", "basic", "standard", "advanced"],
}
PDF_OR_IMAGE = {"pdf", "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"}


def parse_args(argv):
    opts = {"host": "127.0.0.1", "port": 8000, "tier": "standard", "preload": False, "api_key": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--host":
            opts["host"] = value
            i += 1
        elif arg == "--port":
            opts["port"] = int(value)
            i += 1
        elif arg == "--tier":
            opts["tier"] = value
            i += 1
        elif arg == "--api-key":
            opts["api_key"] = value
            i += 1
        elif arg == "--preload-models":
            opts["preload"] = True
        elif arg.startswith("--") and value is not None and not value.startswith("--") and arg not in (
            "--allow-local-source",
            "--allow-http-source",
            "--no-flash",
            "--no-advanced",
            "--disable-image-analysis",
        ):
            i += 1
        i += 1
    return opts


def log(event):
    path = os.environ.get("FAKE_MINERU_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


class State:
    def __init__(self, opts):
        self.opts = opts
        self.tiers = TIERS_BY_SERVER.get(opts["tier"], ["flash"])
        self.preload_failed = opts["preload"] and os.environ.get("FAKE_MINERU_PRELOAD_FAIL") == "1"
        self.health_503_left = int(os.environ.get("FAKE_MINERU_HEALTH_503", "0"))
        self.tasks = {}
        self.lock = threading.Lock()


def error_body(type_, code, message, param=None):
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


def task_payload(task):
    base = f"/v1/tasks/{task['task_id']}"
    return {
        "status": task["status"],
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
        "tier": task["tier"],
        "output_formats": task["output_formats"],
        "access_level": "anonymous",
        "progress": {"completed": int(task["status"] == "completed"), "failed": int(task["status"] == "failed"), "total": 1},
        "files": [
            {
                "file_id": None,
                "name": task["name"],
                "page_range": task["page_range"] or "",
                "status": task["file_status"],
                "parse": None,
                "output_files": {"zip": {"file_id": "file-fake", "bytes": len(task["zip"] or b"")}} if task["zip"] else None,
                "error": task["error"],
            }
        ],
        "links": {"self": base, "cancel": base},
        "task_id": task["task_id"],
        "status_url": base,
        "result_url": f"{base}/result",
    }


def env_pages(name):
    return {int(p) for p in os.environ.get(name, "").split(",") if p.strip()}


def pdf_pages(task):
    """The 0-based pages a PDF task selects (MinerU 4's 1-based `page_range`), else None."""
    if task["ext"] != "pdf":
        return None
    try:
        with open(task["path"], "rb") as f:
            count = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", f.read()))
    except OSError:
        return None
    first, last = 0, count - 1
    if task["page_range"]:
        start, _, end = task["page_range"].partition("-")
        first = int(start) - 1
        if end and end != "r1":
            last = min(int(end) - 1, count - 1)
    return list(range(first, last + 1))


def result_zip(task):
    pages = task["pages"] or [0]
    paragraphs = "".join(f"Fake page {p}.\n\n" for p in task["pages"] or [])
    markdown = (
        f"# Fake parse of {task['name']}\n\n"
        f"tier={task['tier']} ocr_mode={task['ocr_mode']} page_range={task['page_range']}\n\n"
        f"{paragraphs}"
        "![](images/page_0_image_0.jpg)\n"
    )
    page_count = max(pages) + 1
    doc = {
        "schema": "fake",
        "metadata": {"document": {"page_count": page_count}},
        "is_full_document": task["page_range"] is None,
    }
    middle = dict(doc, pages=[{"page_idx": p, "blocks": []} for p in pages])
    structured = dict(doc, pages=[
        {"page_idx": p, "blocks": [{"type": "image", "image_source": "images/page_0_image_0.jpg"}]} for p in pages])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("markdown.md", markdown)
        z.writestr("middle_json.json", json.dumps(middle))
        z.writestr("structured_content.json", json.dumps(structured))
        z.writestr("model_output.json", json.dumps({"fake": True}))
        z.writestr("images/page_0_image_0.jpg", b"\xff\xd8\xff\xe0fake-jpeg " + str(task["page_range"]).encode())
        if "degraded" in task["name"]:
            z.writestr("../escape.md", "outside the output directory")
        if "big" in task["name"]:
            z.writestr("images/page_0_image_1.jpg", b"\xff\xd8\xff\xe0" + os.urandom(65536))
    return buf.getvalue()


def run_task(state, task):
    stem = task["name"].rsplit(".", 1)[0]
    with state.lock:
        if task["status"] == "canceled":
            return
        task["status"] = task["file_status"] = "running"
    if "crash" in stem:
        time.sleep(0.1)
        sys.stderr.write("ERROR: fake mineru-api crashing mid-parse\n")
        sys.stderr.flush()
        os._exit(17)
    if "hang" in stem:
        while True:
            time.sleep(3600)
    if "slow" in stem:
        time.sleep(0.5)
    if "gate" in stem:
        gate = os.environ["FAKE_MINERU_GATE"]
        while not os.path.exists(gate):
            time.sleep(0.02)
    selected = set(task["pages"] or [])
    if selected & env_pages("FAKE_MINERU_CRASH_PAGES"):
        once = os.environ.get("FAKE_MINERU_CRASH_ONCE")
        if not once or not os.path.exists(once):
            if once:
                open(once, "w").close()
            sys.stderr.write("ERROR: fake mineru-api crashing on a poison page\n")
            sys.stderr.flush()
            os._exit(17)
    poisoned = sorted(selected & env_pages("FAKE_MINERU_FAIL_PAGES"))
    if poisoned:
        with state.lock:
            task["status"] = task["file_status"] = "failed"
            task["error"] = {"type": "engine_error", "code": "parse_failed", "param": None,
                "message": f"fake poison page {poisoned[0]}: broken image stream"}
        return
    time.sleep(float(os.environ.get("FAKE_MINERU_PAGE_SECONDS", "0")) * len(selected))
    if "oom" in stem:
        with state.lock:
            task["status"] = task["file_status"] = "failed"
            task["error"] = {"type": "engine_error", "code": "parse_failed", "param": None,
                "message": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"}
        return
    data = result_zip(task)
    with state.lock:
        if task["status"] == "running":
            task["zip"] = data
            task["status"] = task["file_status"] = "completed"


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("INFO: " + (fmt % args) + "\n")

        def send_json(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def gate(self, public):
            if state.preload_failed:
                self.send_json(503, error_body("engine_error", "model_preload_files_missing",
                    "Model repo MinerU-4_models_onnx is not ready under /fake/models/MinerU-4_models_onnx; "
                    "missing: OCR/paddleocr/ch_PP-OCRv6_tiny_det_infer.onnx"))
                return False
            key = state.opts["api_key"]
            if key and not public and self.headers.get("Authorization") != f"Bearer {key}":
                self.send_json(401, error_body("authentication_error", "invalid_api_key", "Invalid or missing API key"))
                return False
            return True

        def find_task(self, task_id):
            task = state.tasks.get(task_id)
            if task is None:
                self.send_json(404, error_body("invalid_request_error", "job_not_found", f"Job {task_id} not found"))
            return task

        def do_GET(self):
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/v1/health":
                if not self.gate(True):
                    return
                with state.lock:
                    if state.health_503_left > 0:
                        state.health_503_left -= 1
                        self.send_json(503, error_body("engine_error", "server_shutting_down", "Server is shutting down"))
                        return
                self.send_json(200, {"status": "ok", "version": VERSION, "features": {"webhook": False,
                    "output_formats": ["markdown", "middle_json", "structured_content", "zip"],
                    "sources": ["file_id", "url", "inline", "local"]}})
            elif url.path == "/v1/tiers":
                if self.gate(True):
                    self.send_json(200, {"object": "list", "data": [
                        {"id": t, "description": "fake", "current_model": f"mineru-{VERSION}"} for t in state.tiers]})
            elif len(parts) == 3 and parts[:2] == ["v1", "tasks"]:
                if self.gate(False):
                    task = self.find_task(parts[2])
                    if task:
                        with state.lock:
                            self.send_json(200, task_payload(task))
            elif len(parts) == 4 and parts[:2] == ["v1", "tasks"] and parts[3] == "result":
                if not self.gate(False):
                    return
                task = self.find_task(parts[2])
                if not task:
                    return
                with state.lock:
                    status, data = task["status"], task["zip"]
                    payload = task_payload(task)
                if status in ("queued", "running"):
                    self.send_json(202, payload)
                elif status != "completed":
                    self.send_json(409, payload)
                else:
                    self.send_response(200)
                    self.send_header("content-type", "application/zip")
                    self.send_header("content-length", str(len(data)))
                    self.send_header("X-MinerU-Task-Status", "completed")
                    self.end_headers()
                    self.wfile.write(data)
            else:
                self.send_json(404, {"detail": "Not Found"})

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            if urlsplit(self.path).path != "/v1/tasks":
                self.send_json(404, {"detail": "Not Found"})
                return
            if not self.gate(False):
                return
            body = json.loads(raw or b"{}")
            log({"event": "submit", "pid": os.getpid(), "body": body})
            file = body["files"][0]
            path = file["source"]["path"]
            name = os.path.basename(path)
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            tier = body.get("tier")
            if tier is not None and tier not in state.tiers:
                self.send_json(400, error_body("invalid_request_error", "invalid_request",
                    f"Tier '{tier}' not available in this server"))
                return
            if tier is None:
                if ext in PDF_OR_IMAGE and state.tiers == ["flash"]:
                    self.send_json(503, error_body("engine_error", "quality_tier_unavailable",
                        "No basic, standard, or advanced tier available in this server. "
                        "Pass tier='flash' explicitly for flash parsing."))
                    return
                tier = state.tiers[-1] if ext in PDF_OR_IMAGE else "flash"
            task = {
                "task_id": "job_" + uuid.uuid4().hex[:24],
                "status": "queued",
                "file_status": "queued",
                "tier": tier,
                "ocr_mode": body.get("ocr_mode", "auto"),
                "page_range": file.get("page_range"),
                "output_formats": body.get("output_formats", ["markdown"]),
                "name": name,
                "path": path,
                "ext": ext,
                "zip": None,
                "error": None,
            }
            task["pages"] = pdf_pages(task)
            if task["page_range"] and ext != "pdf":
                task["status"] = task["file_status"] = "failed"
                task["error"] = {"type": "invalid_request_error", "code": "page_range_invalid",
                    "message": f"Page range is only supported for PDF files; '{ext}' uses full-document parsing.",
                    "param": "page_range"}
            elif not os.path.isfile(path):
                task["status"] = task["file_status"] = "failed"
                task["error"] = {"type": "engine_error", "code": "parse_failed",
                    "message": f"[Errno 2] No such file or directory: '{path}'", "param": None}
            with state.lock:
                state.tasks[task["task_id"]] = task
                payload = task_payload(task)
            if task["status"] == "queued":
                threading.Thread(target=run_task, args=(state, task), daemon=True).start()
            self.send_json(202, payload)

        def do_DELETE(self):
            parts = urlsplit(self.path).path.strip("/").split("/")
            if not (len(parts) == 3 and parts[:2] == ["v1", "tasks"]):
                self.send_json(404, {"detail": "Not Found"})
                return
            if not self.gate(False):
                return
            task = self.find_task(parts[2])
            if not task:
                return
            with state.lock:
                if task["status"] in ("completed", "failed", "canceled"):
                    self.send_json(409, error_body("invalid_request_error", "job_already_terminal",
                        f"Job is {task['status']}"))
                    return
                # Like MinerU: only marks the task; a running parse goes on.
                task["status"] = "canceled"
                self.send_json(200, task_payload(task))

    return Handler


def main():
    opts = parse_args(sys.argv[1:])
    exit_code = os.environ.get("FAKE_MINERU_EXIT_ON_START")
    log({"event": "start", "pid": os.getpid(), "argv": sys.argv[1:]})
    if exit_code:
        sys.stderr.write("ERROR: fake mineru-api told to fail at start\n")
        sys.exit(int(exit_code))
    pidfile = os.environ.get("FAKE_MINERU_GRANDCHILD_PIDFILE")
    if pidfile:
        child = subprocess.Popen(["sleep", "600"])
        with open(pidfile, "w", encoding="utf-8") as f:
            f.write(str(child.pid))
    state = State(opts)
    server = ThreadingHTTPServer((opts["host"], opts["port"]), make_handler(state))
    server.daemon_threads = True
    sys.stderr.write(f"INFO: fake mineru-api listening on http://{opts['host']}:{opts['port']}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
