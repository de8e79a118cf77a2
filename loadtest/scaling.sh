#!/usr/bin/env bash
# Scaling curves, drawn by loadtest/plot.py with the tables printed for BENCHMARKS.md.
#
# Router (default): the router's nearest-available query and position update at 1k, 10k, 100k
# and 1M units (criterion, --quick), plus the websocket fan-out figures already measured by
# wsbench (BENCHMARKS.md, "Push gateway"), into docs/scaling-curves.svg. A few minutes on a
# 2-core machine (most of it building the 1M fixture).
#
# End to end (`--rate`, `--units`): `loadtest --embedded` (broker, processor, gateway and
# websocket clients in one process) once per point, one JSON report per run under
# $target/scaling-e2e/, then drawn into docs/scaling-event-rate.svg and docs/scaling-fleet.svg.
#   --rate   as the event rate grows: RATES pings/s (0 = capacity, COUNT pings as fast as
#            possible) for DURATION s each, UNITS units, each of CLIENTS websocket clients.
#   --units  as the fleet grows: FLEETS units, each at FLEET_RATE pings/s for DURATION s and
#            in capacity mode (COUNT pings), FLEET_CLIENTS clients.
#   Capacity runs are repeated REPEATS times (default 3; the plot takes the median): on a shared
#   2-core machine one capacity run can be off by 2x.
#
#   loadtest/scaling.sh              # router bench + plot
#   loadtest/scaling.sh --plot       # router plot only, from existing target/criterion
#   loadtest/scaling.sh --rate       # end to end against the event rate (~10 min) + plot
#   loadtest/scaling.sh --units      # end to end against the fleet size (~12 min) + plot
#   loadtest/scaling.sh --e2e-plot   # end-to-end plots only, from existing reports
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
mode="${1:-}"

e2e_dir="$target/scaling-e2e"
RATES="${RATES:-1000 5000 20000 50000 100000 0}"
CLIENTS="${CLIENTS:-1 10}"
UNITS="${UNITS:-1000}"
DURATION="${DURATION:-15}"
COUNT="${COUNT:-100000}"
FLEETS="${FLEETS:-1000 10000 100000 1000000}"
FLEET_RATE="${FLEET_RATE:-20000}"
FLEET_CLIENTS="${FLEET_CLIENTS:-1}"
REPEATS="${REPEATS:-3}"

loadtest() {
  # One run; its report is $1, the rest are loadtest flags. Failed runs are reported, not fatal.
  local report="$1"
  shift
  echo "== loadtest --embedded $* (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  if ! "$target/release/loadtest" --embedded --mem-interval 1 --mem-warmup 0 \
    --report "$report" "$@" >"${report%.json}.md" 2>"${report%.json}.log"; then
    echo "   failed: see ${report%.json}.log" >&2
    tail -n 3 "${report%.json}.log" >&2
    rm -f "$report"
  fi
  sleep 3
}

e2e_plot() {
  python3 loadtest/plot.py --e2e "$e2e_dir" --e2e-out docs/scaling-event-rate.svg \
    --e2e-fleet-out docs/scaling-fleet.svg
}

case "$mode" in
  "" | --plot)
    log="$target/scaling-router-bench.txt"
    if [[ "$mode" != "--plot" ]]; then
      mkdir -p "$target"
      IOC_BENCH_SIZES="${IOC_BENCH_SIZES:-1000,10000,100000,1000000}" \
        cargo bench -p ioc-router --bench router -- --quick \
        'nearest_available_k5/(ours|rstar_one_tree|kiddo_per_kind)/|position_update/ours/' | tee "$log"
    fi
    python3 loadtest/plot.py --criterion "$target/criterion" --percentiles "$log" \
      --benchmarks BENCHMARKS.md --out docs/scaling-curves.svg
    ;;
  --rate)
    cargo build --release -p ioc-loadtest --bin loadtest
    mkdir -p "$e2e_dir"
    for c in $CLIENTS; do
      for r in $RATES; do
        if [[ "$r" == 0 ]]; then
          for i in $(seq 1 "$REPEATS"); do
            loadtest "$e2e_dir/rate-$r-c$c$( ((i > 1)) && echo "-$i").json" --units "$UNITS" --rate 0 \
              --count "$COUNT" --clients "$c"
          done
        else
          loadtest "$e2e_dir/rate-$r-c$c.json" --units "$UNITS" --rate "$r" --duration "$DURATION" --clients "$c"
        fi
      done
    done
    e2e_plot
    ;;
  --units)
    cargo build --release -p ioc-loadtest --bin loadtest
    mkdir -p "$e2e_dir"
    for n in $FLEETS; do
      loadtest "$e2e_dir/units-$n-r$FLEET_RATE.json" --units "$n" --rate "$FLEET_RATE" \
        --duration "$DURATION" --clients "$FLEET_CLIENTS"
      for i in $(seq 1 "$REPEATS"); do
        loadtest "$e2e_dir/units-$n-r0$( ((i > 1)) && echo "-$i").json" --units "$n" --rate 0 \
          --count "$COUNT" --clients "$FLEET_CLIENTS"
      done
    done
    e2e_plot
    ;;
  --e2e-plot)
    e2e_plot
    ;;
  *)
    echo "usage: $0 [--plot | --rate | --units | --e2e-plot]" >&2
    exit 2
    ;;
esac
