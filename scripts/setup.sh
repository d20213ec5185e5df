#!/bin/sh
# Installs what rcd needs on Debian 12, as root: the OCI runtime, busybox-static (for the demo
# and test root filesystems), and docker-registry + skopeo + zstd + openssl (the tests' local
# registry, the tool that pushes test images to it, zstd-compressed test layers, and the TLS
# registries' throwaway certificates), umoci (benches/pull.sh unpacks with it), and
# containernetworking-plugins + iptables (bridge networking: the CNI plugins in /usr/lib/cni and
# the iptables they run), nftables (the leak test reads `nft list ruleset`), and systemd (the
# test of the shipped unit file runs `systemd-analyze verify`), and faketime (the fault test
# that sets the daemon's wall clock back and forward, through libfaketime), and ca-certificates
# (the system CA store the daemon trusts registries through; a test reads Debian's), and
# catatonit (the init of units with `init = true`). Extra
# package names may be given as arguments.
# Idempotent: installs only what is missing.
set -eu
need=""
for pkg in runc busybox-static docker-registry skopeo zstd openssl umoci containernetworking-plugins iptables nftables systemd faketime ca-certificates catatonit "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $need
fi
