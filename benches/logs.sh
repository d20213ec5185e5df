#!/bin/sh
# Log throughput, issue 5: a container writing 100-byte lines to stdout as fast as it can,
# through rcd's shim (with and without rotation) and through podman's conmon (k8s-file, with
# and without a size limit), on one busybox rootfs. Prints lines per second, the logger's CPU
# time (/proc/PID/stat) and peak memory per scenario; see docs/PERFORMANCE.md.
#
#   sh benches/logs.sh [ROUNDS]        (default 3; as root; builds nothing)
#
# Binaries come from $RCD_BIN_DIR (default: target/release of this repository). Extra options
# after ROUNDS go to benches/log_throughput.py (--lines N, --scenarios rcd,rcd-rot,podman,
# podman-rot, --json FILE, --keep). $RCD_BENCH_DIR picks where the temporary directory goes
# (default /var/tmp; keep it on a disk, as /var/lib/rcd and podman's storage are).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
rounds=${1:-3}
[ $# -gt 0 ] && shift

case $rounds in
  '' | *[!0-9]*) echo "logs.sh: ROUNDS must be a number, got '$rounds'" >&2; exit 2 ;;
esac
missing=""
for b in rcd rctl rcd-shim; do
  [ -x "$bin/$b" ] || missing="$missing $b"
done
if [ -n "$missing" ]; then
  echo "logs.sh: missing in $bin:$missing" >&2
  echo "  build them first:  (cd $repo && cargo build --release --bins)" >&2
  echo "  or point RCD_BIN_DIR at a directory that has them" >&2
  exit 2
fi
[ "$(id -u)" = 0 ] || { echo "logs.sh: run as root (containers, mounts, cgroups)" >&2; exit 2; }
for tool in runc podman conmon python3 busybox; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "logs.sh: $tool not found (apt-get install -y runc podman conmon python3 busybox-static)" >&2
    exit 2
  }
done

echo "machine: $(nproc) cores, kernel $(uname -r)"
echo "runc:    $(runc --version | head -1)"
echo "podman:  $(podman --version); conmon $(conmon --version | head -1 | awk '{print $3}')"
echo "rcd:     $bin (rcd built $(date -u -r "$bin/rcd" '+%Y-%m-%d %H:%M UTC'); this checkout is at $(
  git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(
  git -C "$repo" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes in src'))"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
exec python3 "$here/log_throughput.py" --bin-dir "$bin" --rounds "$rounds" "$@"
