#!/bin/sh
# Every test, on a fresh Debian 12 machine as root with the Rust toolchain: installs the
# packages the tests use, checks formatting and lints, then runs unit and integration tests
# (real runc containers on a busybox rootfs), the fault suite (tests/faults.rs), a short
# fuzzing run of every input parser, and last the VM suite: the release .deb installed on a
# Debian 12 guest booted under QEMU (systemd as PID 1, cgroup v2), checked, rebooted, checked
# again and purged (scripts/vm/; it installs what it needs itself).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "test.sh: the integration tests need root" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# Fuzzing smoke run: each parser's fuzz target for 30 s (longer runs: docs/RELIABILITY.md); the
# whole suite stays well under 30 minutes on two cores.
sh scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
# The host-mutating package test runs here, inside the guest, never on this machine.
sh scripts/vm/run.sh
