#!/usr/bin/env bash
# Scaling curves: the router's nearest-available query and position update at
# 1k, 10k, 100k and 1M units (criterion, --quick), plus the websocket fan-out
# figures already measured by wsbench (BENCHMARKS.md, "Push gateway"), drawn
# into docs/scaling-curves.svg with the table printed for BENCHMARKS.md.
# A few minutes on a 2-core machine (most of it building the 1M fixture).
#
#   loadtest/scaling.sh            # bench + plot
#   loadtest/scaling.sh --plot     # plot only, from existing target/criterion
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
log="$target/scaling-router-bench.txt"
if [[ "${1:-}" != "--plot" ]]; then
  mkdir -p "$target"
  IOC_BENCH_SIZES="${IOC_BENCH_SIZES:-1000,10000,100000,1000000}" \
    cargo bench -p ioc-router --bench router -- --quick \
    'nearest_available_k5/(ours|rstar_one_tree|kiddo_per_kind)/|position_update/ours/' | tee "$log"
fi
python3 loadtest/plot.py --criterion "$target/criterion" --percentiles "$log" \
  --benchmarks BENCHMARKS.md --out docs/scaling-curves.svg
