#!/usr/bin/env bash
# The test command: set-up, then formatting, lints and the whole test suite
# (unit, property, schema and integration tests against the embedded Kafka
# broker on loopback), then the operator screens: built, and tested in
# Debian's chromium against the running demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== dashboards: build"
node dashboards/build.mjs
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest"
cargo nextest run --workspace --locked --no-fail-fast
echo "== fuzz: every decoder, ${FUZZ_SECONDS:-15} s each"
bash scripts/fuzz.sh
echo "== dashboards: browser tests (chromium, against ioc demo --no-sim)"
cargo build --locked -p ioc
(cd dashboards && node --test --test-concurrency=1 test/)
if docker compose version >/dev/null 2>&1; then
  echo "== docker compose config"
  IOC_JWT_SECRET=compose-config-check docker compose config --quiet
fi
