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
iterations=${1:-30}
[ $# -gt 0 ] && shift
case $iterations in
  '' | *[!0-9]*) echo "health.sh: ITERATIONS must be a number, got '$iterations'" >&2; exit 2 ;;
esac
for b in rcd rctl rcd-shim; do
  [ -x "$bin/$b" ] || {
    echo "health.sh: $bin/$b missing; build first: (cd $repo && cargo build --release --bins)" >&2
    exit 2
  }
done
[ "$(id -u)" = 0 ] || { echo "health.sh: run as root" >&2; exit 2; }
for tool in runc podman python3 busybox findmnt; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "health.sh: $tool not found (apt-get install -y runc podman python3 busybox-static util-linux)" >&2
    exit 2
  }
done
echo "machine: $(nproc) cores, kernel $(uname -r)"
echo "runc:    $(runc --version | head -1)"
echo "podman:  $(podman --version)"
echo "rcd:     $bin (this checkout is at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
exec python3 "$here/health_probe.py" --bin-dir "$bin" --iterations "$iterations" "$@"
