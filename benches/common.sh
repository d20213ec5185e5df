# What the benchmark wrappers share (sourced, not run): checks of the number argument, the
# binaries, root and the tools, and the header that says what was measured.
# Set before sourcing: $name (the script's name for messages), $repo, $bin.

# A whole number, or exit 2.
bench_number() {
  case $1 in
    '' | *[!0-9]*) echo "$name: $2 must be a number, got '$1'" >&2; exit 2 ;;
  esac
}

# rcd, rctl and rcd-shim in $bin, root, and each tool given (the apt-get line to get them is
# the last argument), or exit 2.
bench_checks() {
  install=$1
  shift
  missing=""
  for b in rcd rctl rcd-shim; do
    [ -x "$bin/$b" ] || missing="$missing $b"
  done
  if [ -n "$missing" ]; then
    echo "$name: missing in $bin:$missing" >&2
    echo "  build them first:  (cd $repo && cargo build --release --bins)" >&2
    echo "  or point RCD_BIN_DIR at a directory that has them" >&2
    exit 2
  fi
  [ "$(id -u)" = 0 ] || { echo "$name: run as root (containers, mounts, cgroups)" >&2; exit 2; }
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "$name: $tool not found ($install)" >&2
      exit 2
    }
  done
}

# The machine, the peers' versions and the rcd build measured.
bench_header() {
  echo "machine: $(nproc) cores, kernel $(uname -r)"
  echo "runc:    $(runc --version | head -1)"
  echo "podman:  $(podman --version)"
  echo "rcd:     $bin (rcd built $(date -u -r "$bin/rcd" '+%Y-%m-%d %H:%M UTC'); this checkout is at $(
    git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    git -C "$repo" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes in src'))"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
}
