#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, checks formatting
# and lints, then runs every test of the workspace. The shared test data (real HPKI
# certificates, x509-limbo, NIST PKITS) is read from ../shared or $HPKI_SHARED_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup.sh

export HPKI_SHARED_DIR="${HPKI_SHARED_DIR:-$(cd .. && pwd)/shared}"
if [[ ! -d "$HPKI_SHARED_DIR/hpki" ]]; then
  echo "test: shared test data not found at $HPKI_SHARED_DIR (set HPKI_SHARED_DIR)" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
# The store tests run on PostgreSQL too: a throwaway server for this run (each test makes
# its own database in it), unless HPKI_TEST_POSTGRES_URL already names one.
if [[ -z "${HPKI_TEST_POSTGRES_URL:-}" ]]; then
  PG_DIR=$(mktemp -d)
  trap 'bash scripts/pg-throwaway.sh stop "$PG_DIR" || true; rm -rf "$PG_DIR"' EXIT
  pg_port=55432
  while (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; do
    pg_port=$((pg_port + 1))
    if ((pg_port > 55531)); then
      echo "test: no free port in 55432-55531 for the throwaway PostgreSQL" >&2
      exit 1
    fi
  done
  HPKI_TEST_POSTGRES_URL=$(bash scripts/pg-throwaway.sh start "$PG_DIR" "$pg_port")
  export HPKI_TEST_POSTGRES_URL
fi
echo "test: PostgreSQL for the store tests at $HPKI_TEST_POSTGRES_URL"
# nextest runs each test in its own process (SoftHSM2 reads its config once per
# process); plain cargo test is the fallback.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
