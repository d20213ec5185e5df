#!/bin/sh
# The cost of one health-check probe (issue 5): rcd's probe (the daemon's `runc exec`), against
# `runc exec` run by hand (the floor) and `podman healthcheck run` (the peer), on one busybox
# rootfs. Prints median (min-max) wall and CPU time per probe, and ratios; see
# docs/PERFORMANCE.md. Options after ITERATIONS go to benches/health_probe.py (--seconds,
# --interval-ms, --json FILE, --keep).
#
#   sh benches/health.sh [ITERATIONS]        (default 30; as root; builds nothing)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
name=health.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"
iterations=${1:-30}
[ $# -gt 0 ] && shift
bench_number "$iterations" ITERATIONS
bench_checks "apt-get install -y runc podman python3 busybox-static util-linux" \
  runc podman python3 busybox findmnt
bench_header
exec python3 "$here/health_probe.py" --bin-dir "$bin" --iterations "$iterations" "$@"
