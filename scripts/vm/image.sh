#!/bin/sh
# The VM's base image: Debian 12 (bookworm) with systemd as PID 1, the cloud kernel, rcd's
# dependencies and the generic test runner (guest/runner.sh, guest/rcd-vm.service).
#   sh scripts/vm/image.sh mirrors     print the host's Debian mirror lines (one-line format)
#   sh scripts/vm/image.sh build DIR   build DIR/rootfs.img (4 GiB sparse ext4), DIR/vmlinuz,
#                                      DIR/initrd.img
# run.sh keys its image cache on this file's content (which holds the package list), the runner
# files and the mirror lines, so changing any of them builds a new image and nothing else does.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

# The image's packages: systemd as init, a kernel that boots under QEMU (virtio), iproute2;
# rcd's Depends and Recommends (packaging/deb/control.in: runc, nftables, libc6;
# containernetworking-plugins, iptables); dbus as on a standard Debian install (systemd recommends it);
# busybox-static for fixtures and debugging, kmod (modprobe for the CNI plugins' iptables),
# procps (ps, pgrep), util-linux (setpriv, mount), e2fsprogs (fsck of / and of the test disk),
# jq (the scenario reads rctl's JSON), curl (it scrapes /metrics on the socket).
packages="systemd systemd-sysv udev dbus linux-image-cloud-amd64 initramfs-tools iproute2
runc containernetworking-plugins iptables libc6 nftables
busybox-static ca-certificates kmod procps util-linux e2fsprogs jq curl"

# The Debian mirror(s) the host's apt uses, and nothing else: third-party repositories in the
# same sources (Google Cloud, NodeSource, ...) are left out by keeping only bookworm's own
# suites. Reads deb822 *.sources and one-line *.list files; disabled files do not match.
mirrors() {
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      # deb822: stanzas separated by blank lines; "Key: value"; comments start with #.
      awk '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && enabled != "no")
            for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print "deb " u[i] " " s[j] " " comps
          types = ""; enabled = ""; comps = ""; nu = 0; ns = 0
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        {
          key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
          if (key == "types") types = $0
          else if (key == "uris") nu = split($0, u, " ")
          else if (key == "suites") ns = split($0, s, " ")
          else if (key == "components") comps = $0
          else if (key == "enabled") enabled = tolower($0)
        }
        END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      # One-line: "deb [options] URI SUITE COMPONENT...": drop the [options].
      sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 4 { $1 = $1; print }'
    done
  } | awk '$3 == "bookworm" || $3 == "bookworm-updates" || $3 == "bookworm-security"' | sort -u
}

build() {
  out=$1
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  root="$out/rootfs"
  rm -rf "$root"
  list=$(mirrors)
  [ -n "$list" ] || { echo "image.sh: no bookworm mirror in the host's apt sources" >&2; exit 1; }
  # One mirror argument per line of $list.
  set --
  while IFS= read -r line; do set -- "$@" "$line"; done <<EOF
$list
EOF
  # --variant=minbase: Essential and apt only, plus $packages and their Depends (no Recommends).
  mmdebstrap --quiet --variant=minbase --include="$(echo "$packages" | tr -s ' \n' ',,')" \
    bookworm "$root" "$@"

  # mmdebstrap copies the host's hostname and resolv.conf: the guest gets its own. The tests
  # need no network (QEMU runs with -nic none); see README.md for adding one.
  echo rcd-vm >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\trcd-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"
  rm -f "$root/etc/resolv.conf"
  echo '# No network in the rcd test VM (-nic none).' >"$root/etc/resolv.conf"
  printf '# The root disk; the test disk (/dev/vdb) is mounted at /vm by rcd-vm.service.\n/dev/vda / ext4 defaults 0 1\n' \
    >"$root/etc/fstab"
  # Root logs in on the serial console (ttyS0) without a password: for debugging only.
  chroot "$root" passwd -d root >/dev/null
  # Persistent journal: phase 2 can read boot 1's journal, shutdown included.
  mkdir -p "$root/var/log/journal"
  # Nothing may hold the dpkg lock while a test installs rcd; no interactive first-boot prompts
  # (the machine id is generated anew on each fresh copy, which is a first boot).
  for unit in apt-daily.timer apt-daily-upgrade.timer systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  # The generic runner: a Type=simple service that runs /vm/scenario.sh once per boot.
  install -D -m 0755 "$here/guest/runner.sh" "$root/usr/local/libexec/rcd-vm-runner"
  install -D -m 0644 "$here/guest/rcd-vm.service" "$root/etc/systemd/system/rcd-vm.service"
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/vm"
  ln -sf ../rcd-vm.service "$root/etc/systemd/system/multi-user.target.wants/rcd-vm.service"

  # The kernel and initrd boot from outside the disk (-kernel/-initrd). virtio_blk is a module
  # in the cloud kernel, so the initrd must carry it (ext4 too unless built in).
  kver=""
  for d in "$root"/lib/modules/*; do kver=${d##*/}; done
  [ -n "$kver" ] || { echo "image.sh: no kernel in the image" >&2; exit 1; }
  cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
  cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
  initrd_files=$(chroot "$root" lsinitramfs "/boot/initrd.img-$kver")
  for pair in virtio_blk:VIRTIO_BLK ext4:EXT4_FS; do
    mod=${pair%:*}
    grep -q "^CONFIG_${pair#*:}=y" "$root/boot/config-$kver" && continue
    echo "$initrd_files" | grep -q "/$mod\.ko" || { echo "image.sh: $mod missing from the initrd" >&2; exit 1; }
  done
  echo "$kver" >"$out/kernel-version"

  # A sparse 4 GiB ext4 filled from the directory (no loop mount needed).
  rm -f "$out/rootfs.img"
  truncate -s 4G "$out/rootfs.img"
  mkfs.ext4 -q -F -L rcd-vm-root -d "$root" "$out/rootfs.img"
  rm -rf "$root"
}

case ${1:-} in
  mirrors) mirrors ;;
  build) [ $# -eq 2 ] || { echo "usage: image.sh build DIR" >&2; exit 2; }; build "$2" ;;
  *) echo "usage: image.sh mirrors | build DIR" >&2; exit 2 ;;
esac
