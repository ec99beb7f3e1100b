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
# ---- deployment files (deploy/check.sh): Kubernetes manifests and the systemd unit ----
echo "== deploy check"
bash deploy/check.sh
# ---------------------------------------------------------------------------------------
echo "== tests"
# Everything started here (PostgreSQL, pcscd) is stopped on exit, by this one trap.
PG_DIR=""
PCSCD_DIR=""
PCSCD_PID=""
cleanup() {
  if [[ -n "$PCSCD_PID" ]]; then
    kill "$PCSCD_PID" 2>/dev/null || true
    wait "$PCSCD_PID" 2>/dev/null || true
    # The restart test (cardreader/tests/pcsc.rs) replaces the pcscd started here.
    pkill -x pcscd 2>/dev/null || true
  fi
  if [[ -n "$PCSCD_DIR" ]]; then rm -rf "$PCSCD_DIR"; fi
  if [[ -n "$PG_DIR" ]]; then
    bash scripts/pg-throwaway.sh stop "$PG_DIR" || true
    rm -rf "$PG_DIR"
  fi
}
trap cleanup EXIT
# The store tests run on PostgreSQL too: a throwaway server for this run (each test makes
# its own database in it), unless HPKI_TEST_POSTGRES_URL already names one.
if [[ -z "${HPKI_TEST_POSTGRES_URL:-}" ]]; then
  PG_DIR=$(mktemp -d)
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
# The PC/SC tests (cardreader/tests/pcsc.rs, agent.rs) need pcscd with the
# vsmartcard-vpcd driver: readers "Virtual PCD 00 00" (TCP 35963) and "Virtual PCD 00 01"
# (35964), the tests being the cards. pcscd is one per machine (/run/pcscd/pcscd.comm):
# start one unless one runs already (then it must have the vpcd driver).
vpcd_listening() { (exec 3<>/dev/tcp/127.0.0.1/35963) 2>/dev/null; }
if [[ -S /run/pcscd/pcscd.comm ]] && pgrep -x pcscd >/dev/null && vpcd_listening; then
  echo "test: using the running pcscd (it has the vpcd reader)"
else
  # A pcscd without the virtual reader (e.g. one the package started) cannot serve the
  # tests, and there can be only one: replace it for this run.
  if pgrep -x pcscd >/dev/null; then
    echo "test: stopping the running pcscd (it has no vpcd reader)"
    pkill -x pcscd || true
    sleep 0.5
  fi
  rm -f /run/pcscd/pcscd.comm # left by a pcscd that is gone
  PCSCD_DIR=$(mktemp -d)
  mkdir -p "$PCSCD_DIR/rc"
  printf 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x8C7B\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x8C7B\n' \
    >"$PCSCD_DIR/rc/vpcd"
  pcscd -f -a -i -c "$PCSCD_DIR/rc" >"$PCSCD_DIR/pcscd.log" 2>&1 &
  PCSCD_PID=$!
  for _ in $(seq 1 50); do
    [[ -S /run/pcscd/pcscd.comm ]] && vpcd_listening && break
    sleep 0.1
  done
  if ! [[ -S /run/pcscd/pcscd.comm ]] || ! kill -0 "$PCSCD_PID" 2>/dev/null; then
    echo "test: pcscd did not start:" >&2
    cat "$PCSCD_DIR/pcscd.log" >&2
    exit 1
  fi
  echo "test: pcscd with the vpcd reader started (log $PCSCD_DIR/pcscd.log)"
fi
export HPKI_TEST_PCSCD=1
# The browser tests' driver: Playwright's library only (it never downloads a browser; the
# tests use Debian's /usr/bin/chromium). Screenshots are kept in artifacts/browser/.
echo "test: npm ci in browser-tests (playwright-core)"
npm ci --prefix browser-tests --no-audit --no-fund --loglevel=error
export HPKI_ARTIFACTS_DIR="${HPKI_ARTIFACTS_DIR:-$PWD/artifacts}"
# nextest runs each test in its own process (SoftHSM2 reads its config once per
# process); plain cargo test is the fallback.
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast || status=$?
else
  cargo test --workspace --locked --no-fail-fast || status=$?
fi
if [[ -d "$HPKI_ARTIFACTS_DIR/browser" ]]; then
  echo "test: browser screenshots kept in $HPKI_ARTIFACTS_DIR/browser"
fi
exit "$status"
