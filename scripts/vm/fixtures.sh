#!/bin/sh
# The test fixtures the guest cannot make itself (it has no network), built on the host:
#   sh scripts/vm/fixtures.sh DIR
#   DIR/busybox/           a busybox root filesystem (tests/fixtures/mkrootfs.sh: /bin/busybox,
#                          its applet symlinks, /etc/passwd, /etc/group)
#   DIR/busybox-oci.tar    the same as a one-layer OCI image layout, tagged `vm` in its index,
#                          for `rctl image import /vm/fixtures/busybox-oci.tar --name busybox`
#                          (which stores it as busybox:vm); its command: sh -c 'echo hi; ...'
# Needs busybox-static and umoci (run.sh installs them).
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
dest=$1
rm -rf "$dest/busybox" "$dest/busybox-oci.tar"
mkdir -p "$dest"
sh "$repo/tests/fixtures/mkrootfs.sh" "$dest/busybox"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# umoci builds the layer from a diff of an unpacked bundle: start empty, add the rootfs, repack.
umoci init --layout "$work/layout"
umoci new --image "$work/layout:vm"
umoci unpack --image "$work/layout:vm" "$work/bundle" >/dev/null
cp -a "$dest/busybox/." "$work/bundle/rootfs/"
umoci repack --image "$work/layout:vm" "$work/bundle"
umoci config --image "$work/layout:vm" --config.cmd sh --config.cmd -c \
  --config.cmd 'echo hi from the busybox:vm image; exec sleep 1000000'
# umoci keeps the superseded manifests and configs as blobs: drop them.
umoci gc --layout "$work/layout"
tar -C "$work/layout" -cf "$dest/busybox-oci.tar" .
