#!/bin/sh
# Installs what rcd needs on Debian 12, as root: the OCI runtime and busybox-static (for the
# demo and test root filesystems). Extra package names may be given as arguments.
set -eu
need=""
for pkg in runc busybox-static "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $need
fi
