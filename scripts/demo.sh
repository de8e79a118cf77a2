#!/usr/bin/env bash
# Runs the whole system on one machine: embedded Kafka broker, simulator of
# a Da Nang day, processor, gateway and dashboards. Prints `broker:`,
# `dashboards:` (open it) and `token:` lines. Extra arguments go to `ioc demo`
# (e.g. --speed 10, --bind 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node dashboards/build.mjs
cargo build --release --locked -p ioc
exec ./target/release/ioc demo "$@"
