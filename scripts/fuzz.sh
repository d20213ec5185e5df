#!/bin/sh
# Fuzzes rcd's input parsers: builds the cargo-fuzz targets in fuzz/ and runs each for
# SECONDS_PER_TARGET (default 60), one after the other, from the seeds committed under
# fuzz/corpus/<target>/ plus the crash inputs kept under fuzz/regressions/<target>/ (each
# replayed first). Exits non-zero if any target crashes; the input is saved under
# fuzz/artifacts/<target>/.
#
#   sh scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment:
#   FUZZ_TARGETS    the targets to run, space-separated (default: all five)
#   FUZZ_SANITIZER  none (default) or address; address needs a nightly toolchain
#
# The default build needs only a stable toolchain: cargo-fuzz passes nightly-only flags
# (-Zsanitizer) for a sanitizer alone, and with --sanitizer none it keeps libFuzzer's coverage
# instrumentation, debug assertions and overflow checks. The code fuzzed is safe Rust, where
# AddressSanitizer has little to find. The layer_unpack target needs root: it unpacks in a
# chroot with a mount namespace of its own.
set -eu
cd "$(dirname "$0")/.."

seconds="${1:-60}"
targets="${FUZZ_TARGETS:-unit_file image_reference port_mapping layer_unpack api_request}"
sanitizer="${FUZZ_SANITIZER:-none}"

case "$seconds" in
    '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac

# libFuzzer itself is C++, built by libfuzzer-sys.
if ! command -v c++ >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq g++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

toolchain=""
if [ "$sanitizer" != none ]; then
    toolchain="+nightly"
fi

cd fuzz
# shellcheck disable=SC2086 # $toolchain is empty or one word
cargo $toolchain fuzz build --sanitizer "$sanitizer"

failed=""
for target in $targets; do
    # Seed directories of the project's own, read but never written: the unit fixtures.
    extra=""
    case "$target" in
        unit_file) extra="../units ../examples/restart-policies ../tests/fixtures/units/good ../tests/fixtures/units/bad" ;;
    esac
    # Tar members with a few KiB of data need more room than libFuzzer's default 4 KiB.
    max_len=4096
    [ "$target" = layer_unpack ] && max_len=65536
    # New inputs go to work/ (not committed), so the seed corpus stays small and reviewed.
    mkdir -p "work/$target" "corpus/$target" "regressions/$target"
    echo "fuzz.sh: $target for ${seconds}s"
    # shellcheck disable=SC2086 # $toolchain, $extra: word lists
    if ! cargo $toolchain fuzz run --sanitizer "$sanitizer" "$target" \
        "work/$target" "corpus/$target" "regressions/$target" $extra \
        -- -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1; then
        failed="$failed $target"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz.sh: crashed:$failed (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzz.sh: no crash ($targets; ${seconds}s each)"
