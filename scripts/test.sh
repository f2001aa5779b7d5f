#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the Python parts the tests drive for real
# (MinerU 4.0.12, the runpod 1.12.0 SDK, the rotel OpenTelemetry collector, the moto S3 server)
# into .venv/, then runs every Rust test of the workspace (unit, integration, doc tests).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash scripts/setup-python.sh

# No import circle between the modules of any crate (issue 9; docs/README.md).
python3 scripts/module-cycles.py runpod-handler runpod-otel-layer mineru-handler

export MINERU_VENV="$repo/.venv/mineru"
export SDK_VENV="$repo/.venv/sdk"
export SDK2_VENV="$repo/.venv/sdk2"
export MINERU3_VENV="$repo/.venv/mineru3"
export S3_VENV="$repo/.venv/s3"
# Two cores: keep test binaries from starving each other's child processes.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
