#!/usr/bin/env bash
# Fuzzes every input decoder for a short fixed time (default 15 s each),
# starting from the checked-in corpus (fuzz/corpus/<target>: the schema
# examples plus what earlier runs found, minimised). A crash fails the run
# and leaves its input under fuzz/artifacts/. cargo-fuzz passes nightly-only
# flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them, so no other
# toolchain is fetched.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-15}"
export RUSTC_BOOTSTRAP=1
log="$(mktemp)"
for target in decode_call decode_incident decode_position decode_unit decode_command; do
  echo "== fuzz $target (${seconds}s)"
  if ! cargo fuzz run "$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target failed (input saved under fuzz/artifacts/$target)" >&2
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log" || tail -3 "$log"
done
rm -f "$log"
