#!/bin/sh
# Installs what rcd needs on Debian 12, as root: the OCI runtime, busybox-static (for the demo
# and test root filesystems), and docker-registry + skopeo + zstd + openssl (the tests' local
# registry, the tool that pushes test images to it, zstd-compressed test layers, and the TLS
# registries' throwaway certificates), umoci (benches/pull.sh unpacks with it), and
# containernetworking-plugins + iptables (bridge networking: the CNI plugins in /usr/lib/cni and
# the iptables they run), nftables (the leak test reads `nft list ruleset`), and systemd (the
# test of the shipped unit file runs `systemd-analyze verify`; the journald driver's test runs a
# systemd-journald of its own in a mount namespace), and faketime (the fault test
# that sets the daemon's wall clock back and forward, through libfaketime), and ca-certificates
# (the system CA store the daemon trusts registries through; a test reads Debian's), and
# catatonit (the init of units with `init = true`), procps (`ps`, which the Docker API's `top` runs),
# e2fsprogs and mount (the image collection test's loop-mounted ext4 store), curl (tests ask
# the sockets directly), prometheus (its promtool checks /metrics; its service is left
# stopped), and a docker CLI (the Docker API tests run
# the real client; Debian's docker.io where the machine has none, its daemon left stopped). Extra
# package names may be given as arguments. Last, the Docker SDK for Python in a venv (below).
# Idempotent: installs only what is missing.
set -eu
need=""
for pkg in runc busybox-static docker-registry skopeo zstd openssl umoci containernetworking-plugins iptables nftables systemd faketime ca-certificates catatonit procps e2fsprogs mount curl "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $need
fi
# The Docker API tests need a docker client, any recent one; Debian ships it with its daemon,
# which must not run beside the tests.
if ! command -v docker >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
  fi
fi
# promtool, which the metrics test runs, comes with Debian's Prometheus server, which must not
# run beside the tests.
if ! command -v promtool >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi
# The Docker SDK for Python (PyPI's `docker`), which the Docker API tests drive, in a venv of
# its own: Debian's python3-venv, then pip.
SDK_VENV="${RCD_DOCKER_SDK_VENV:-/var/tmp/rcd-docker-sdk}"
if ! "$SDK_VENV/bin/python" -c 'import docker' >/dev/null 2>&1; then
  dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed" || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv
  }
  /usr/bin/python3 -m venv "$SDK_VENV"
  "$SDK_VENV/bin/pip" install -q 'docker>=7.1,<8'
fi
