#!/bin/sh
# The Docker Engine API (issue 17): `docker ps` against rcd and podman's compat API with the
# same N containers, `docker stats --no-stream` over them, and rcd's idle CPU with and without
# the Docker socket; see docs/PERFORMANCE.md and benches/docker_api.py.
#
#   sh benches/docker_api.sh [--count N] [--rounds R] [--idle-seconds S]
#
# As root; builds nothing (`cargo build --release --bins` first). Installs podman and
# busybox-static with apt-get when missing; the docker CLI comes from scripts/setup.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
name=docker_api.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"
missing=""
for pair in podman:podman busybox:busybox-static; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $missing
fi
bench_checks "sh scripts/setup.sh; apt-get install -y podman" docker podman python3 busybox
bench_header
exec python3 "$here/docker_api.py" --bin-dir "$bin" "$@"
