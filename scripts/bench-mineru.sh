#!/usr/bin/env bash
# mineru-handler's benchmarks (docs/performance.md): packaging throughput and peak memory for a
# ~100 MB result, then our overhead on a warm flash-tier parse against calling mineru-api
# directly. Installs MinerU 4.0.12 into .venv/ first (scripts/setup-python.sh).
# Knobs: BENCH_IMAGE_MB, BENCH_RUNS, BENCH_PDF (see the headers of mineru-handler/benches/*.rs).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash scripts/setup-python.sh
export MINERU_VENV="$repo/.venv/mineru"
cargo bench --locked -p mineru-handler --bench package_throughput
cargo bench --locked -p mineru-handler --bench engine_overhead
