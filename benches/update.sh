#!/bin/sh
# Image updates (issue 18): a check cycle over N units that follow their tags on a local
# registry (time, registry requests, daemon writes) and rollbacks to a stored digest against
# `rctl restart`; see docs/PERFORMANCE.md and benches/update.py.
#
#   sh benches/update.sh [--count N] [--cycles C] [--rollbacks R]
#
# As root; builds nothing (`cargo build --release --bins` first). Needs docker-registry, skopeo
# and busybox-static, which scripts/setup.sh installs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
name=update.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"
bench_checks "sh scripts/setup.sh" docker-registry skopeo python3 busybox
bench_header
exec python3 "$here/update.py" --bin-dir "$bin" "$@"
