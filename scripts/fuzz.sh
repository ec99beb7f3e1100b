#!/usr/bin/env bash
# Coverage-guided fuzzing of the pki core (cargo-fuzz / libFuzzer). NOT run in CI: CI
# runs the bounded property tests in gateway/tests/pki_never_panics.rs instead. This is
# for a developer's machine, before a release or after changing gateway/src/pki/.
#
#   scripts/fuzz.sh                    every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh hc_roles           just that target
#   FUZZ_SECONDS=600 scripts/fuzz.sh   longer
#
# Environment:
#   FUZZ_SECONDS      time per target (libFuzzer -max_total_time), default 60
#   FUZZ_TOOLCHAIN    "nightly" (cargo +nightly) or "bootstrap" (stable toolchain with
#                     RUSTC_BOOTSTRAP=1); default: nightly if installed, else bootstrap
#   HPKI_SHARED_DIR   the directory holding hpki/ (default <repo>/../shared): the seed
#                     corpus and the trust store of the parse_and_verify target
#   CARGO_TARGET_DIR  build directory (default fuzz/target)
#
# Installs cargo-fuzz if missing, seeds the corpora (fuzz/seed.sh), runs each target and
# exits nonzero if any target found a crash (or a timeout / out-of-memory input),
# printing the path of the input libFuzzer saved under fuzz/artifacts/<target>/.
# Reproduce one with: cargo +nightly fuzz run <target> <artifact path>
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

seconds="${FUZZ_SECONDS:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "fuzz: FUZZ_SECONDS must be a positive number of seconds, not '$seconds'" >&2
    exit 2
fi
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=(parse_and_verify hc_roles)
fi

export HPKI_SHARED_DIR="${HPKI_SHARED_DIR:-$(cd .. && pwd)/shared}"
if [[ ! -d "$HPKI_SHARED_DIR/hpki/ca" ]]; then
    echo "fuzz: real HPKI certificates not found at $HPKI_SHARED_DIR/hpki (set HPKI_SHARED_DIR)" >&2
    exit 1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module, ...).
toolchain="${FUZZ_TOOLCHAIN:-}"
if [[ -z "$toolchain" ]]; then
    if cargo +nightly --version >/dev/null 2>&1; then
        toolchain=nightly
    else
        toolchain=bootstrap
    fi
fi
case "$toolchain" in
    nightly) cargo_fuzz=(cargo +nightly fuzz) ;;
    bootstrap) cargo_fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz) ;;
    *)
        echo "fuzz: FUZZ_TOOLCHAIN must be 'nightly' or 'bootstrap', not '$toolchain'" >&2
        exit 2
        ;;
esac
build_args=()
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    build_args+=(--target-dir "$CARGO_TARGET_DIR")
fi

echo "== seeding corpora"
bash fuzz/seed.sh

logs="$repo/fuzz/artifacts/logs"
mkdir -p "$logs"
failed=()
for target in "${targets[@]}"; do
    artifacts="$repo/fuzz/artifacts/$target"
    mkdir -p "$artifacts" "$repo/fuzz/corpus/$target"
    log="$logs/$target.log"
    marker="$(mktemp)"
    echo "== $target: ${seconds}s (toolchain: $toolchain, log: $log)"
    set +e
    "${cargo_fuzz[@]}" run "${build_args[@]}" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    # libFuzzer's final statistics.
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" \
        | sed "s/^/   $target /" || true
    if [[ $rc -ne 0 ]]; then
        failed+=("$target")
        echo "!! $target: exit status $rc"
        found="$(grep -oE 'Test unit written to .*' "$log" | sed 's/^Test unit written to //' || true)"
        if [[ -z "$found" ]]; then
            found="$(find "$artifacts" -type f -newer "$marker" || true)"
        fi
        if [[ -n "$found" ]]; then
            while IFS= read -r f; do
                echo "!! $target: failing input saved at $f"
            done <<<"$found"
        else
            echo "!! $target: no input saved (a build failure?); see $log"
        fi
    fi
    rm -f "$marker"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no crash in ${targets[*]} (${seconds}s each)"
