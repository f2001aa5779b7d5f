#!/usr/bin/env python3
"""A FAKE OpenAI-compatible VLM server for MinerU 3.4's `vlm-http-client` backend.

No model runs here: MinerU's real PDF path (page rendering, two-step extraction, middle JSON,
markdown) talks to this server as it would to vLLM, and gets scripted answers:

* GET  /v1/models            -> {"data": [{"id": "fake-mineru-vlm"}]}
* POST /v1/chat/completions  -> the layout prompt ("Layout Detection:") gets one title block
  and one text block covering the page; every other prompt (the per-block extraction) gets
  FAKE_VLM_TEXT (default "Fake VLM text").

Usage: fake_openai_vlm.py [PORT]  (0 or none: any free port). Prints "listening on PORT" on
stdout once it accepts connections, so a test can read the port without polling.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-mineru-vlm"
TEXT = os.environ.get("FAKE_VLM_TEXT", "Fake VLM text")
LAYOUT = (
    "<|box_start|>100 080 900 140<|box_end|><|ref_start|>title<|ref_end|><|rotate_up|>\n"
    "<|box_start|>100 200 900 400<|box_end|><|ref_start|>text<|ref_end|><|rotate_up|>"
)


def prompt_text(body):
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self.reply(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        elif self.path in ("/health", "/v1/health"):
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.reply(404, {"error": {"message": "not found"}})
            return
        answer = LAYOUT if "Layout Detection" in prompt_text(body) else TEXT
        self.reply(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
