#!/bin/sh
# Bridge network start, issues 4 and 15: start latency of a bridge-networked unit with one
# published port, side by side in one run with the same start without a network, rcd's two
# drivers of its default network, and the peers:
#   (n)  rcd, `mode = "bridge"`, `ports = ["PORT:80"]`, native driver (netlink + nftables)
#   (nn) the same without the port                      (a) rcd, `mode = "none"`
#   (nc) as (n) on a second rcd daemon with `[network] driver = "cni"` (the CNI plugins)
#   (p)  `podman run -d --rm -p PORT:80` (netavark)      (c) podman `--network none`
#   (b)  `runc run -d` (the floor)
# Each published-port round also times the first HTTP answer on 127.0.0.1:PORT (busybox
# httpd). Prints medians, min, max, the network's share of each start (paired per round), the
# first HTTP answer against runc and podman, and rcd's own network time from its debug log
# (native attach; CNI per plugin); see docs/PERFORMANCE.md, "Native bridge network (issue 15)".
#
#   sh benches/network.sh [ITERATIONS] [OPTIONS]   (default 20; as root; builds nothing)
#
# A thin wrapper of benches/start.sh (same binaries, RCD_BIN_DIR, RCD_BENCH_DIR, options) with
# --scenarios a,n,nn,nc,b,c,p; later options win (add pc, podman's CNI backend, with
# --scenarios a,n,nn,nc,b,c,p,pc). Host ports 19380-19383 (n, p, pc, nc) and subnets
# 10.97.0.0/24 (rcd native), 10.99.0.0/24 (rcd CNI) and 10.98.0.0/24 (podman CNI) by default:
# --port N, RCD_BENCH_SUBNET, RCD_BENCH_CNI_SUBNET, RCD_BENCH_PODMAN_SUBNET. At the end the
# run's bridges, rcd's nftables tables and the FORWARD rules for its bridges are deleted.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
iterations=${1:-20}
[ $# -gt 0 ] && shift

missing=""
for tool in ip iptables nft; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
for plugin in bridge host-local portmap firewall tuning; do
  [ -x "/usr/lib/cni/$plugin" ] || [ -x "/opt/cni/bin/$plugin" ] || missing="$missing cni/$plugin"
done
if [ -n "$missing" ]; then
  echo "network.sh: missing:$missing" >&2
  echo "  apt-get install -y iproute2 iptables nftables containernetworking-plugins" >&2
  exit 2
fi
echo "nft:     $(nft --version)"
echo "iptables: $(iptables --version)"
exec sh "$here/start.sh" "$iterations" --scenarios a,n,nn,nc,b,c,p "$@"
