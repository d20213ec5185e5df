#!/bin/sh
# rcd at scale (issue 7), side by side with runc (the floor) and podman (the peer) on one
# busybox rootfs; see docs/PERFORMANCE.md and the docstring of benches/scale.py.
#
#   sh benches/scale.sh boot  [OPTIONS]   cold boot of 100 units, then their removal (1, 2);
#                                         --tools rcd,rcd-bridge,rcd-cni,runc for bridge-mode
#                                         units (native driver, CNI driver; issue 15)
#   sh benches/scale.sh idle  [OPTIONS]   shim vs conmon memory, the daemon's RSS and idle CPU
#                                         with 100 and 1,000 units, rctl status/list (4, 5)
#   sh benches/scale.sh storm [OPTIONS]   100 units crash-looping under `always` (6)
#   sh benches/scale.sh restart [ITERATIONS]
#                                         exit -> restarted, against runc and podman (3):
#                                         benches/start.sh with scenarios b,b2,d,d-floor,d-podman
#
# As root; builds nothing. Installs what is missing (runc, podman, conmon, hyperfine,
# busybox-static) with apt-get. Binaries come from $RCD_BIN_DIR (default: target/release of
# this repository); $RCD_BENCH_DIR picks where the temporary directory goes (default /var/tmp:
# a disk, as /var/lib/rcd and podman's storage are). OPTIONS go to benches/scale.py
# (`python3 benches/scale.py --help`): --count, --rounds, --seconds, --json FILE, --keep, ...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
name=scale.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"
scenario=${1:-}
case $scenario in
  boot | idle | storm | restart) shift ;;
  *) echo "usage: sh benches/scale.sh boot|idle|storm|restart [OPTIONS]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "$name: run as root (containers, mounts, cgroups)" >&2; exit 2; }
missing=""
for pair in runc:runc podman:podman conmon:conmon hyperfine:hyperfine busybox:busybox-static; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  echo "$name: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $missing
fi
if [ "$scenario" = restart ]; then
  iterations=${1:-30}
  [ $# -gt 0 ] && shift
  exec sh "$here/start.sh" "$iterations" --scenarios b,b2,d,d-floor,d-podman "$@"
fi
bench_checks "apt-get install -y runc podman conmon hyperfine python3 busybox-static" \
  runc podman conmon hyperfine python3 busybox mount umount
bench_header
echo "hyperfine: $(hyperfine --version)"
exec python3 "$here/scale.py" "$scenario" --bin-dir "$bin" "$@"
