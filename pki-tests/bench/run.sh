#!/usr/bin/env bash
# The benchmark: hpki-gateway against nginx, side by side in one run (README, "Benchmarks").
#
#   bash pki-tests/bench/run.sh           # the full run: pki-tests/bench/results/<date>.md
#   bash pki-tests/bench/run.sh --quick   # a short one while working on the harness
#
# Builds the release binaries, generates (or reuses) the PKI in $CARGO_TARGET_DIR/bench
# on every core, then runs the scenarios with the load generator pinned to core 1 and
# the proxies to core 0. Needs nginx (deploy/setup.sh installs nginx-light), taskset and
# two cores. Never part of scripts/test.sh: benchmarks are not timed tests
# (pki-tests/tests/bench_harness.rs checks that the harness works).
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
  esac
done

for tool in nginx taskset; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: $tool not found (deploy/setup.sh installs what is needed)" >&2
    exit 1
  fi
done
if (( $(nproc --all) < 2 )); then
  echo "bench: needs two cores (one for the proxies, one for the load generator)" >&2
  exit 1
fi

target="${CARGO_TARGET_DIR:-target}"
work="$target/bench"
cards=2000
if (( ${#quick[@]} )); then cards=100; fi

started=$SECONDS
echo "== build (release)"
cargo build --release --locked -p hpki-gateway --bin hpki-gateway -p pki-tests --bin hpki-bench
built=$SECONDS
echo "== PKI ($cards cards, cached in $work)"
"$target/release/hpki-bench" pki --work "$work" --cards "$cards"
echo "== scenarios (load generator on core 1, proxies on core 0)"
# Idle-connection scenario: 10,000 client sockets here and as many in each proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
taskset -c 1 "$target/release/hpki-bench" run "${quick[@]}" \
  --work "$work" --results pki-tests/bench/results \
  --gateway "$target/release/hpki-gateway" --server-core 0 \
  --invoked-as "bash pki-tests/bench/run.sh${quick:+ --quick}"
echo "== done in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s (build $(( built - started )) s)"
