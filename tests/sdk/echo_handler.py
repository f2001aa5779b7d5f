"""A real worker on the official Python SDK (runpod 1.12.0): the wire reference for
tests/worker_sdk_parity.rs and the runtime benchmark (benches/runtime.rs).

Without a "mode" key it echoes its input, like examples/echo.rs. With one, it follows the
protocol of tests/bin/protocol_probe.rs for the modes the parity test needs:
  {"mode": "progress", "updates": [...], "value": V}  progress updates, then V
  {"mode": "fail", "message": S}                       raises ValueError(S)
SDK_CONCURRENCY (default 1) sets the SDK's concurrency through its concurrency_modifier.
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


runpod.serverless.start(
    {"handler": handler, "concurrency_modifier": lambda current: CONCURRENCY}
)
