#!/bin/sh
# /metrics (issue 19): a scrape of N running units over the daemon's socket, and the daemon's
# CPU while nobody scrapes; see docs/PERFORMANCE.md and benches/metrics.py.
#
#   sh benches/metrics.sh [--count N] [--scrapes S] [--idle-seconds T]
#
# As root; builds nothing (`cargo build --release --bins` first). busybox-static comes from
# scripts/setup.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
name=metrics.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"
bench_checks "sh scripts/setup.sh" python3 busybox
bench_header
exec python3 "$here/metrics.py" --bin-dir "$bin" "$@"
