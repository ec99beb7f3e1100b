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
# nextest runs each test in its own process (SoftHSM2 reads its config once per
# process); plain cargo test is the fallback.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
