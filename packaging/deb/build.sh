#!/bin/sh
# Builds the rcd Debian package from built binaries:
#   sh packaging/deb/build.sh [OUT_DIR]     (default: target/deb)
# Binaries come from $RCD_BIN_DIR (default target/release; build them first with
# `cargo build --release --bins`). $RCD_DEB_COMPRESSION picks dpkg-deb's compressor (default
# xz; the test uses none for its debug binaries). Needs dpkg-deb and gzip (Debian's dpkg, gzip).
# Prints the path of the .deb.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RCD_BIN_DIR:-$repo/target/release}
out=${1:-$repo/target/deb}
for b in rcd rctl rcd-shim; do
  [ -x "$bin/$b" ] || { echo "build.sh: $bin/$b missing (cargo build --release --bins)" >&2; exit 2; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/systemd/system" \
  "$stage/usr/lib/tmpfiles.d" "$stage/usr/lib/sysusers.d" "$stage/etc/rcd/units" \
  "$stage/etc/rcd/networks" "$stage/usr/share/doc/rcd" "$stage/usr/share/man/man1" \
  "$stage/usr/share/man/man8" "$stage/usr/share/bash-completion/completions" \
  "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"
# Stripped, as Debian ships binaries: the release profile keeps debuginfo for profiling, which
# would make the package ~230 MB unpacked and its install slow.
install -m 0755 -s "$bin/rcd" "$bin/rctl" "$bin/rcd-shim" "$stage/usr/bin/"
install -m 0644 "$repo/packaging/rcd.service" "$stage/usr/lib/systemd/system/rcd.service"
install -m 0644 "$repo/packaging/rcd.slice" "$stage/usr/lib/systemd/system/rcd.slice"
install -m 0644 "$repo/packaging/tmpfiles.d/rcd.conf" "$stage/usr/lib/tmpfiles.d/rcd.conf"
install -m 0644 "$repo/packaging/sysusers.d/rcd.conf" "$stage/usr/lib/sysusers.d/rcd.conf"
install -m 0644 "$repo/packaging/rcd.toml" "$stage/etc/rcd/rcd.toml"
install -m 0644 "$repo/README.md" "$repo/docs/units.md" "$repo/docs/operations.md" "$repo/docs/networking.md" \
  "$stage/usr/share/doc/rcd/"
"$bin/rcd" --manpage | gzip -9n >"$stage/usr/share/man/man8/rcd.8.gz"
"$bin/rctl" manpage | gzip -9n >"$stage/usr/share/man/man1/rctl.1.gz"
"$bin/rctl" completions bash >"$stage/usr/share/bash-completion/completions/rctl"
"$bin/rctl" completions zsh >"$stage/usr/share/zsh/vendor-completions/_rctl"
"$bin/rctl" completions fish >"$stage/usr/share/fish/vendor_completions.d/rctl.fish"
for s in postinst prerm postrm; do
  install -m 0755 "$repo/packaging/deb/$s" "$stage/DEBIAN/$s"
done
echo /etc/rcd/rcd.toml >"$stage/DEBIAN/conffiles"
size=$(du -sk "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  "$repo/packaging/deb/control.in" >"$stage/DEBIAN/control"
mkdir -p "$out"
deb="$out/rcd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${RCD_DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
