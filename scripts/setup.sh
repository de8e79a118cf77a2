#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine with Rust:
# C build tools for librdkafka (built from source by rdkafka-sys), rustfmt
# and clippy, cargo-nextest, kcat (poking the broker by hand, and the
# browser tests' producer), Node.js/npm if missing, Debian's chromium for the
# browser tests, the screens' pinned npm packages (npm ci), and for the
# secure-cluster test (tests/secure_cluster.rs) openssl, Debian's stunnel4 and
# Tansu 0.6 built with its SQLite storage.
# Idempotent: skips what is already there.
set -euo pipefail

need_apt=()
for pkg in build-essential pkg-config python3 zlib1g-dev libssl-dev kcat curl ca-certificates chromium openssl stunnel4; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# Node.js and npm from Debian only when none is installed (any node >= 18 will do).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]}" >&2
  fi
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# Tansu 0.6 (Kafka-compatible broker) with its SQLite storage, which keeps SCRAM
# credentials (the PyPI wheel's build is memory-only and cannot; the PostgreSQL
# engine of the published crate needs a schema the crate does not ship). Built
# from source, about 14 minutes cold on 2 cores, into a root of its own so that it never
# shadows another tansu on PATH. tests/support/secure.rs looks for it there.
tansu_root="$HOME/.local/share/ioc/tansu-sqlite"
if [ ! -x "$tansu_root/bin/tansu" ]; then
  echo "setup: building tansu 0.6.0 with its SQLite storage (about 14 minutes)"
  cargo install --locked --root "$tansu_root" tansu --version 0.6.0 --features libsql
fi

# The screens' npm packages, exactly as pinned in the lockfile; skipped when
# node_modules already matches it.
lock=dashboards/package-lock.json
stamp=dashboards/node_modules/.package-lock.json
if [ -f "$lock" ] && { [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; }; then
  echo "setup: npm ci in dashboards/"
  (cd dashboards && npm ci --no-audit --no-fund --loglevel=error)
fi
