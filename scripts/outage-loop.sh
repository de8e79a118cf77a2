#!/usr/bin/env bash
# Runs the broker-outage scenario (tests/broker_faults_and_shutdown.rs,
# broker_outage_marks_screens_stale_and_loses_nothing: the broker away 30 s,
# a call produced during the outage) N times and prints, per run and in
# sum, what a dispatch centre cares about: calls lost (the run failed: the
# call never reached the screen, or an incident was doubled), calls held
# (on screen more than 30 s after the broker came back), and the time from
# broker back to the call on screen (p50, max) and to screens live again.
#
#   scripts/outage-loop.sh [RUNS]     # default 30; about 50 s a run
#
# Not a timed test: the figures go to BENCHMARKS.md. Runs against the
# embedded broker (librdkafka's mock cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"
logs="$(mktemp -d)"
cargo nextest run --locked -p ioc-integration-tests --test broker_faults_and_shutdown --no-run >/dev/null 2>&1
lost=0; held=0; calls=(); live=()
for i in $(seq 1 "$runs"); do
  log="$logs/run-$i.log"
  if cargo nextest run --locked -p ioc-integration-tests --test broker_faults_and_shutdown \
      broker_outage --no-capture >"$log" 2>&1; then ok=1; else ok=0; fi
  call_ms=$(grep -o 'the call from the outage on screen [0-9]* ms' "$log" | grep -o '[0-9]*' | head -1 || true)
  live_ms=$(grep -o 'screens live again [0-9]* ms' "$log" | grep -o '[0-9]*' | head -1 || true)
  if [ "$ok" -eq 0 ] || [ -z "$call_ms" ]; then
    lost=$((lost + 1)); echo "run $i: LOST or failed (log $log)"
    continue
  fi
  calls+=("$call_ms"); live+=("${live_ms:-0}")
  [ "$call_ms" -gt 30000 ] && held=$((held + 1))
  echo "run $i: call on screen ${call_ms} ms, screens live ${live_ms:-?} ms after the broker came back"
done
stats() { printf '%s\n' "$@" | sort -n | awk 'NF {a[++n]=$1} END {if (!n) {print "-"; exit} printf "p50 %d ms, max %d ms", a[int((n+1)/2)], a[n]}'; }
echo "runs $runs: lost $lost, held beyond 30 s $held"
echo "broker back -> call on screen: $(stats "${calls[@]:-}")"
echo "broker back -> screens live:   $(stats "${live[@]:-}")"
echo "logs in $logs"
