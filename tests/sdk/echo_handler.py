"""A real worker on the official Python SDK (runpod 1.12.0): the wire reference for
tests/runtime/sdk_parity.rs and the runtime benchmark (benches/runtime.rs).

Without a "mode" key it echoes its input, like examples/echo.rs. With one, it follows the
protocol of the protocol probe (tests/support/probe.rs; tests/bin/protocol_probe.rs) for the modes the parity test needs:
  {"mode": "progress", "updates": [...], "value": V}  progress updates, then V
  {"mode": "fail", "message": S}                       raises ValueError(S)
SDK_CONCURRENCY (default 1) sets the SDK's concurrency through its concurrency_modifier.
SDK_HANDLER=stream makes the handler a generator, as the probe's "stream" mode:
  {"parts": [...]}  yields each part; a part {"fail": S} raises ValueError(S) instead
SDK_REFRESH_WORKER=1 sets the SDK's worker-level refresh_worker.
"""

import os

import runpod

CONCURRENCY = int(os.environ.get("SDK_CONCURRENCY", "1"))


def handler(job):
    job_input = job["input"]
    if not isinstance(job_input, dict) or "mode" not in job_input:
        return job_input
    mode = job_input["mode"]
    if mode == "progress":
        for update in job_input.get("updates", []):
            runpod.serverless.progress_update(job, update)
        return job_input.get("value")
    if mode == "fail":
        raise ValueError(job_input.get("message", ""))
    return job_input.get("value")


def stream_handler(job):
    for part in job["input"].get("parts", []):
        if isinstance(part, dict) and "fail" in part:
            raise ValueError(part["fail"])
        yield part


runpod.serverless.start(
    {
        "handler": stream_handler if os.environ.get("SDK_HANDLER") == "stream" else handler,
        "concurrency_modifier": lambda current: CONCURRENCY,
        "refresh_worker": os.environ.get("SDK_REFRESH_WORKER") == "1",
    }
)
