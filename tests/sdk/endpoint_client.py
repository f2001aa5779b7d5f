"""The official Python client (runpod 1.12.0) against the local endpoint, changed only in its
base URL (`runpod.endpoint_url_base`). Driven by tests/runtime/local_endpoint.rs, which starts
three local endpoints:

  ENDPOINT_A  two protocol_probe workers (four jobs each), API key TEST_KEY required;
  ENDPOINT_B  no workers (jobs stay queued);
  ENDPOINT_C  two protocol_probe workers (one job each), their pids in WORKERS_C as JSON.

Every scenario runs in a thread of its own (they overlap in time) and returns what it saw;
the script prints one JSON object of them for the Rust test to check.
"""

import http.server
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import runpod

KEY = os.environ["TEST_KEY"]
HEADERS = {"Authorization": f"Bearer {KEY}"}
LIMIT = 60


def endpoint(base):
    # The client reads the base URL when it is built.
    runpod.endpoint_url_base = base
    runpod.api_key = KEY
    return runpod.Endpoint("local")


def raw(base, path, method="GET", **kwargs):
    answer = requests.request(method, f"{base}/local/{path}", headers=HEADERS, timeout=30, **kwargs)
    return answer.status_code, answer.json()


def until(check, what, limit=LIMIT):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(what)


def running(base, job_id):
    def check():
        _, status = raw(base, f"status/{job_id}")
        return status if status["status"] == "IN_PROGRESS" else None

    return until(check, f"{job_id} running")


def sync_echo(a):
    return endpoint(a).run_sync({"mode": "echo", "value": {"a": 1}}, timeout=LIMIT)


def run_and_status(a):
    job = endpoint(a).run({"mode": "sleep", "ms": 300})
    first = job.status()
    output = job.output(timeout=LIMIT)
    _, final = raw(a, f"status/{job.job_id}")
    return {"first": first, "output": output, "final": final}


def failed_then_retried(a):
    job = endpoint(a).run({"mode": "fail", "message": "boom"})
    output = job.output(timeout=LIMIT)
    _, final = raw(a, f"status/{job.job_id}")
    code, retried = raw(a, f"retry/{job.job_id}", "POST")
    again = until(
        lambda: (lambda s: s if s["status"] == "FAILED" else None)(raw(a, f"status/{job.job_id}")[1]),
        "the retried job failing again",
    )
    return {"output": output, "status": job.status(), "final": final, "retry": [code, retried], "again": again}


def streamed(a):
    job = endpoint(a).run({"mode": "stream", "parts": [1, {"two": 2}, "three"]})
    return list(job.stream())


def progress(a):
    job = endpoint(a).run({"mode": "progress", "updates": ["step 1/2", "step 2/2"], "ms": 2000, "value": "done"})

    def latest():
        _, status = raw(a, f"status/{job.job_id}")
        return status if status.get("output") == "step 2/2" else None

    seen = until(latest, "the second progress update")
    return {"seen": seen, "output": job.output(timeout=LIMIT)}


def cancelled(a):
    job = endpoint(a).run({"mode": "sleep", "ms": 60000})
    running(a, job.job_id)
    answer = job.cancel()
    return {"answer": answer, "status": job.status(), "final": raw(a, f"status/{job.job_id}")[1]}


def timed_out(a):
    started = time.monotonic()
    job = endpoint(a).run({"input": {"mode": "sleep", "ms": 60000}, "policy": {"executionTimeout": 5000}})
    output = job.output(timeout=LIMIT)
    return {
        "output": output,
        "status": job.status(),
        "final": raw(a, f"status/{job.job_id}")[1],
        "seconds": time.monotonic() - started,
    }


def webhook(a):
    received = []
    arrived = threading.Event()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        job = endpoint(a).run({"input": {"mode": "echo", "value": "hooked"}, "webhook": url})
        arrived.wait(LIMIT)
        return {"received": received, "status": raw(a, f"status/{job.job_id}")[1]}
    finally:
        server.shutdown()


def runsync_wait(a):
    started = time.monotonic()
    code, answer = raw(a, "runsync?wait=1000", "POST", json={"input": {"mode": "sleep", "ms": 3000}})
    return {"code": code, "answer": answer, "seconds": time.monotonic() - started}


def unauthorized(a):
    answer = requests.post(f"{a}/local/run", json={"input": {}}, timeout=30)
    return answer.status_code


def purge_then_ttl(b):
    ep = endpoint(b)
    queued = [ep.run({"n": 1}), ep.run({"n": 2})]
    purged = ep.purge_queue()
    statuses = [job.status() for job in queued]
    started = time.monotonic()
    job = ep.run({"input": {"n": 3}, "policy": {"ttl": 10000}})
    output = job.output(timeout=LIMIT)
    return {
        "purged": purged,
        "purged_statuses": statuses,
        "ttl_output": output,
        "ttl_status": job.status(),
        "ttl_final": raw(b, f"status/{job.job_id}")[1],
        "ttl_seconds": time.monotonic() - started,
    }


def requeued(c, pids):
    ep = endpoint(c)
    job = ep.run({"mode": "sleep", "ms": 1500})
    first = running(c, job.job_id)
    os.kill(pids[first["workerId"]], signal.SIGKILL)
    output = job.output(timeout=LIMIT)
    return {
        "killed": first["workerId"],
        "output": output,
        "final": raw(c, f"status/{job.job_id}")[1],
        "health": ep.health(),
    }


def main():
    a, b, c = (os.environ[name] for name in ("ENDPOINT_A", "ENDPOINT_B", "ENDPOINT_C"))
    pids = json.loads(os.environ["WORKERS_C"])
    scenarios = {
        "sync_echo": lambda: sync_echo(a),
        "run_and_status": lambda: run_and_status(a),
        "failed": lambda: failed_then_retried(a),
        "stream": lambda: streamed(a),
        "progress": lambda: progress(a),
        "cancel": lambda: cancelled(a),
        "timeout": lambda: timed_out(a),
        "webhook": lambda: webhook(a),
        "runsync_wait": lambda: runsync_wait(a),
        "unauthorized": lambda: unauthorized(a),
        "purge_ttl": lambda: purge_then_ttl(b),
        "requeue": lambda: requeued(c, pids),
    }
    results = {}
    with ThreadPoolExecutor(len(scenarios)) as pool:
        futures = {name: pool.submit(run) for name, run in scenarios.items()}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as err:  # reported to the Rust test, which names the scenario
                results[name] = {"exception": f"{type(err).__name__}: {err}"}
    results["health"] = endpoint(a).health()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
