#!/usr/bin/env bash
# The test command: set-up, then formatting, lints and the whole test suite
# (unit, property, schema and integration tests against the embedded Kafka
# broker on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest"
cargo nextest run --workspace --locked --no-fail-fast
