#!/bin/sh
# Start latency, issue 2: on one busybox rootfs and one command, side by side in one run,
#   (a) unit file renamed into the units directory -> the container's process running (rcd)
#   (b) `runc run -d` of the same bundle (the floor)   (b2) `runc create` + `runc start`
#   (c) `podman run -d --rm` of the same rootfs (the peer)
#   (d) container exit -> restarted process under `always`, delay 0s (rcd), against a
#       `while :; do runc run ...; done` supervisor loop (the floor for a restart).
# Prints median, min and max per scenario and the ratios; see docs/PERFORMANCE.md.
# benches/network.sh runs the bridge network scenarios (n, p, pc) through this script.
#
#   sh benches/start.sh [ITERATIONS]        (default 30; as root; builds nothing)
#
# Binaries come from $RCD_BIN_DIR (default: target/release of this repository). Extra
# options after ITERATIONS go to benches/start_latency.py (--scenarios, --json FILE, --keep,
# --warmup N). $RCD_BENCH_DIR picks where the temporary directory goes (default /var/tmp;
# keep it on a disk, as /var/lib/rcd and podman's storage are). $RCD_LOG is passed to rcd
# (default warn,rcd::network::cni=debug; its log is kept with --keep).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
iterations=${1:-30}
[ $# -gt 0 ] && shift

case $iterations in
  '' | *[!0-9]*) echo "start.sh: ITERATIONS must be a number, got '$iterations'" >&2; exit 2 ;;
esac
missing=""
for b in rcd rctl rcd-shim; do
  [ -x "$bin/$b" ] || missing="$missing $b"
done
if [ -n "$missing" ]; then
  echo "start.sh: missing in $bin:$missing" >&2
  echo "  build them first:  (cd $repo && cargo build --release --bins)" >&2
  echo "  or point RCD_BIN_DIR at a directory that has them, e.g." >&2
  echo "  (cd $repo && CARGO_TARGET_DIR=/work/target-bench cargo build --release --bins)" >&2
  echo "  RCD_BIN_DIR=/work/target-bench/release sh benches/start.sh" >&2
  exit 2
fi
[ "$(id -u)" = 0 ] || { echo "start.sh: run as root (containers, mounts, cgroups)" >&2; exit 2; }
for tool in runc podman python3 busybox mount umount; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "start.sh: $tool not found (apt-get install -y runc podman python3 busybox-static)" >&2
    exit 2
  }
done

echo "machine: $(nproc) cores, kernel $(uname -r)"
echo "runc:    $(runc --version | head -1)"
echo "podman:  $(podman --version)"
echo "rcd:     $bin (rcd built $(date -u -r "$bin/rcd" '+%Y-%m-%d %H:%M UTC'); this checkout is at $(
  git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(
  git -C "$repo" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes in src'))"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
exec python3 "$here/start_latency.py" --bin-dir "$bin" --iterations "$iterations" "$@"
