#!/bin/sh
# Every test, on a fresh Debian 12 machine as root with the Rust toolchain: installs the
# packages the tests use, checks formatting and lints, then runs unit and integration tests
# (real runc containers on a busybox rootfs), the fault suite (tests/faults.rs), and a short
# fuzzing run of every input parser.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "test.sh: the integration tests need root" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# Fuzzing smoke run: each parser's fuzz target for a minute (longer runs: docs/RELIABILITY.md).
sh scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
