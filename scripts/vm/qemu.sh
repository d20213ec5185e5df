#!/bin/sh
# Provides a private qemu-system-x86_64 under DIR (the VM cache) and prints its directory:
#   sh scripts/vm/qemu.sh DIR
# Why private: the host's qemu-utils come from bookworm-backports and conflict with bookworm's
# qemu-system-common, so apt cannot install qemu-system-x86 next to them. The .debs are fetched
# with `apt-get download` and unpacked with `dpkg-deb -x` (no dpkg database entry, no conflict);
# only their shared-library dependencies are installed through apt. run.sh points QEMU at the
# unpacked firmware with -L and at its modules (the TCG accelerator is one) with
# QEMU_MODULE_DIR.
# Cached: a second call finds DIR/qemu-VERSION/ready and only re-checks the libraries (they are
# host packages, which a cache kept across machines would not bring along).
set -eu
cache=$1
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# The version apt would install, so a point release brings a fresh private copy.
version=$(apt-cache policy qemu-system-x86 | sed -n 's/^ *Candidate: *//p')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq
  version=$(apt-cache policy qemu-system-x86 | sed -n 's/^ *Candidate: *//p')
fi
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "qemu.sh: no qemu-system-x86 in apt's sources" >&2
  exit 1
fi
dir="$cache/qemu-$(printf '%s' "$version" | tr -c 'A-Za-z0-9.+~-' '_')"
root="$dir/root"
bin="$root/usr/bin/qemu-system-x86_64"
moddir="$root/usr/lib/x86_64-linux-gnu/qemu"

if [ ! -f "$dir/ready" ]; then
  rm -rf "$dir"
  mkdir -p "$dir/debs" "$root"
  # What is strictly needed: the emulator, its modules (-common: accel-tcg-x86_64.so), its
  # option ROMs and linuxboot (-data), the BIOS (seabios), and the NIC ROMs (ipxe-qemu, only for
  # the debugging NIC). apt-get download runs as _apt where it can: let it write the directory.
  chown _apt "$dir/debs" 2>/dev/null || true
  (cd "$dir/debs" && apt-get download -q qemu-system-x86 qemu-system-common qemu-system-data \
    seabios ipxe-qemu) >&2
  for deb in "$dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$root"
  done
  rm -rf "$dir/debs"
fi

# Shared libraries: qemu-system-x86's Depends are dpkg-shlibdeps' list for the binary; install
# the lib* ones that are missing (apt resolves them against the host's own packages).
need=""
for pkg in $(apt-cache depends qemu-system-x86 | awk '$1 == "Depends:" && $2 ~ /^lib/ { print $2 }' | sort -u); do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# Nothing may be missing from the binary or from the TCG accelerator module it loads at start.
missing=$(for f in "$bin" "$moddir"/accel-tcg-*.so; do ldd "$f"; done | awk '/not found/ { print $1 }' | sort -u)
if [ -n "$missing" ]; then
  echo "qemu.sh: libraries still missing for $bin: $missing" >&2
  exit 1
fi
QEMU_MODULE_DIR=$moddir "$bin" -accel help | grep -qx tcg || { echo "qemu.sh: $bin has no TCG" >&2; exit 1; }
touch "$dir/ready"
echo "$dir"
