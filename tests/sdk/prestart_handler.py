"""A real worker on the official Python SDK's 2.0 line (runpod 2.0.0rc2, venv .venv/sdk2): the
reference for runpod 2.0's start-up behaviour in tests/runtime/sdk2_parity.rs.

Its prestart hook logs a line, then never ends: SIGTERM is what ends start-up. The handler
echoes its input (it never runs in the scenarios that use this worker).
"""

import asyncio

import runpod


async def load_weights():
    print("probe: loading weights (slowly)", flush=True)
    await asyncio.sleep(3600)


def handler(job):
    return job["input"]


runpod.serverless.register_prestart_hook(load_weights)
runpod.serverless.start({"handler": handler})
