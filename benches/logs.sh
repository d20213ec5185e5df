#!/bin/sh
# Log throughput, issue 5: a container writing 100-byte lines to stdout as fast as it can,
# through rcd's shim (with and without rotation, and with the journald driver: issue 19) and
# through podman's conmon (k8s-file, with and without a size limit), on one busybox rootfs. Prints lines per second, the logger's CPU
# time (/proc/PID/stat) and peak memory per scenario; see docs/PERFORMANCE.md.
#
#   sh benches/logs.sh [ROUNDS]        (default 3; as root; builds nothing)
#
# Binaries come from $RCD_BIN_DIR (default: target/release of this repository). Extra options
# after ROUNDS go to benches/log_throughput.py (--lines N, --scenarios rcd,rcd-rot,
# rcd-journald,podman,podman-rot, --json FILE, --keep). $RCD_BENCH_DIR picks where the temporary directory goes
# (default /var/tmp; keep it on a disk, as /var/lib/rcd and podman's storage are).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
name=logs.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"
rounds=${1:-3}
[ $# -gt 0 ] && shift
bench_number "$rounds" ROUNDS
bench_checks "apt-get install -y runc podman conmon python3 busybox-static systemd" \
  runc podman conmon python3 busybox journalctl
bench_header
echo "conmon:  $(conmon --version | head -1 | awk '{print $3}')"
exec python3 "$here/log_throughput.py" --bin-dir "$bin" --rounds "$rounds" "$@"
