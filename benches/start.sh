#!/bin/sh
# Start latency, issue 2: on one busybox rootfs and one command, side by side in one run,
#   (a) unit file renamed into the units directory -> the container's process running (rcd)
#   (b) `runc run -d` of the same bundle (the floor)   (b2) `runc create` + `runc start`
#   (c) `podman run -d --rm` of the same rootfs (the peer)
#   (d) container exit -> restarted process under `always`, delay 0s (rcd), against a
#       `while :; do runc run ...; done` supervisor loop (the floor for a restart).
# Prints median, min and max per scenario and the ratios; see docs/PERFORMANCE.md.
# benches/network.sh runs the bridge network scenarios (n, nn, nc, p, pc) through this script.
#
#   sh benches/start.sh [ITERATIONS]        (default 30; as root; builds nothing)
#
# Binaries come from $RCD_BIN_DIR (default: target/release of this repository). Extra
# options after ITERATIONS go to benches/start_latency.py (--scenarios, --json FILE, --keep,
# --warmup N). $RCD_BENCH_DIR picks where the temporary directory goes (default /var/tmp;
# keep it on a disk, as /var/lib/rcd and podman's storage are). $RCD_LOG is passed to rcd
# (default warn,rcd::network::cni=debug,rcd::network::bridge=debug; its log is kept with
# --keep).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
name=start.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"
iterations=${1:-30}
[ $# -gt 0 ] && shift
bench_number "$iterations" ITERATIONS
bench_checks "apt-get install -y runc podman python3 busybox-static" \
  runc podman python3 busybox mount umount
bench_header
exec python3 "$here/start_latency.py" --bin-dir "$bin" --iterations "$iterations" "$@"
