#!/bin/sh
# Bridge network start, issue 4: start latency of a bridge-networked unit with one published
# port, side by side in one run with the same start without a network, and the peers:
#   (n)  rcd, `mode = "bridge"`, `ports = ["PORT:80"]`     (a) rcd, `mode = "none"`
#   (p)  `podman run -d --rm -p PORT:80` (netavark)         (c) podman `--network none`
#   (pc) the same with podman's CNI backend                 (b) `runc run -d` (the floor)
# Each bridge round also times the first HTTP answer on 127.0.0.1:PORT (busybox httpd).
# Prints medians, min, max, the network's share of each start, and rcd's time per CNI plugin
# (from its debug log); see docs/PERFORMANCE.md, "Bridge network start".
#
#   sh benches/network.sh [ITERATIONS]      (default 20; as root; builds nothing)
#
# A thin wrapper of benches/start.sh (same binaries, RCD_BIN_DIR, RCD_BENCH_DIR, options) with
# --scenarios a,n,b,c,p,pc; later options win. Ports 19380-19382 and subnets 10.97.0.0/24 (rcd)
# and 10.98.0.0/24 (podman CNI) by default: --port N, RCD_BENCH_SUBNET, RCD_BENCH_PODMAN_SUBNET.
# The run's two bridges are deleted at the end.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
iterations=${1:-20}
[ $# -gt 0 ] && shift

missing=""
for tool in ip iptables; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
for plugin in bridge host-local portmap firewall tuning; do
  [ -x "/usr/lib/cni/$plugin" ] || [ -x "/opt/cni/bin/$plugin" ] || missing="$missing cni/$plugin"
done
if [ -n "$missing" ]; then
  echo "network.sh: missing:$missing" >&2
  echo "  apt-get install -y iproute2 iptables containernetworking-plugins" >&2
  exit 2
fi
exec sh "$here/start.sh" "$iterations" --scenarios a,n,b,c,p,pc "$@"
