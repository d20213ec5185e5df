#!/bin/bash
# Pull + unpack, issue 3: one multi-layer image of more than 100 MB (compressed) on a local
# registry, pulled and unpacked from an empty store, side by side:
#   (a)  rcd: `rctl image pull REF` against a running daemon with an empty --root: manifest,
#        config and layers downloaded and verified, every layer unpacked into its snapshot
#   (a0) rcd, right after (a): a unit naming the image (`command = ["true"]`) renamed into the
#        units directory -> `rctl status` shows it exited 0 (polled every 50 ms): what a start
#        adds once the image is there (and, for a build that does not unpack at pull time,
#        the unpack too: compare (a)+(a0) between builds)
#   (b)  `skopeo copy docker://... oci:DIR:bench` then `umoci unpack --image DIR:bench BUNDLE`
#        (also shown apart as (b1) and (b2))
#   (c)  `podman pull` into a fresh, initialized, empty --root/--runroot (overlay driver)
#   (a') with RCD_BASE_BIN_DIR set: (a) and (a0) again with those binaries (another build of
#        rcd), in the same rounds, to compare two builds under the same noise
# Prints median, min and max per scenario and the ratios; see docs/PERFORMANCE.md.
#
#   bash benches/pull.sh [ROUNDS]        (default 5; as root; builds nothing)
#
# Binaries come from $RCD_BIN_DIR (default: target/release of this repository). Everything
# lives in one temporary directory under $RCD_BENCH_DIR (default /var/tmp, a disk like
# /var/lib/rcd): the registry's storage, the image, every store. It is removed at the end, also
# on error or Ctrl-C; RCD_BENCH_KEEP=1 keeps it. The registry listens on 127.0.0.1 only.
#
# Cold and warm: every round starts each tool on an empty store (rcd: a new --root and a new
# daemon, started before the clock; podman: a new --root, initialized before the clock;
# skopeo/umoci: new directories). The registry's files are warm: the image was pushed just
# before the first round and a warm-up round runs before the counted ones, so its blobs come
# from the page cache. The page cache is not dropped; `sync` runs before every measurement
# so that one tool's dirty pages are not written back on another's clock. Every tool's output
# is kept until the end (some GB under the work directory): ext4 makes the creation of new
# inodes slow for a while after many were deleted, which would tax whichever tool runs next.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${RCD_BIN_DIR:-$repo/target/release}
base_bin=${RCD_BASE_BIN_DIR:-}
rounds=${1:-5}
# Layers of random (incompressible) files beside the busybox one, and their size.
random_layers=${RCD_BENCH_LAYERS:-4}
layer_mb=${RCD_BENCH_LAYER_MB:-30}

die() { echo "pull.sh: $*" >&2; exit 2; }
case $rounds in '' | *[!0-9]* | 0) die "ROUNDS must be a positive number, got '$rounds'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (containers, mounts, podman's storage)"
for b in rcd rctl rcd-shim; do
  [ -x "$bin/$b" ] || die "$bin/$b missing: (cd $repo && cargo build --release --bins), or set RCD_BIN_DIR"
  [ -z "$base_bin" ] || [ -x "$base_bin/$b" ] || die "$base_bin/$b missing (RCD_BASE_BIN_DIR)"
done
for d in "$bin" $base_bin; do
  "$d/rctl" image pull --help >/dev/null 2>&1 || die "$d/rctl has no 'image pull' (a build before it)"
done
for tool in docker-registry skopeo umoci podman runc gzip sha256sum python3 busybox; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found (sh scripts/setup.sh podman python3 installs what is missing)"
done

work=$(mktemp -d "${RCD_BENCH_DIR:-/var/tmp}/rcd-pull-bench.XXXXXX")
chmod 700 "$work"
registry_pid=""
rcd_pid=""
rcd_tags=()

log() { echo "# $*" >&2; }
now_ns() { date +%s%N; }

# Unmounts everything mounted at or below $1, deepest first.
unmount_under() {
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

stop_rcd() {
  [ -n "$rcd_pid" ] || return 0
  local units=$1 sock=$2 bin=${3:-$bin}
  rm -f "$units"/*.toml
  local i
  for i in $(seq 200); do
    [ "$("$bin/rctl" --socket "$sock" status --output json 2>/dev/null | tr -d ' \n')" = "[]" ] && break
    sleep 0.05
  done
  kill -TERM "$rcd_pid" 2>/dev/null || true
  for i in $(seq 200); do kill -0 "$rcd_pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$rcd_pid" 2>/dev/null || true
  wait "$rcd_pid" 2>/dev/null || true
  rcd_pid=""
}

cleanup() {
  set +e
  [ -n "$rcd_pid" ] && stop_rcd "$work/rcd/units" "$work/rcd/rcd.sock"
  if [ -n "$registry_pid" ]; then
    kill -TERM "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null
  fi
  unmount_under "$work"
  for root in "$work"/rcd/root-*/runc; do
    [ -d "$root" ] || continue
    for cid in $(runc --root "$root" list -q 2>/dev/null); do runc --root "$root" delete -f "$cid"; done
  done
  local tag ctrl
  for tag in "${rcd_tags[@]}"; do
    for ctrl in /sys/fs/cgroup/*/; do rmdir "$ctrl/rcd-$tag" 2>/dev/null; done
  done
  if [ "${RCD_BENCH_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the registry ----------------------------------------------------------------------------

start_registry() {
  mkdir -p "$work/registry"
  local try port
  for try in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  formatter: text
storage:
  filesystem:
    rootdirectory: $work/registry/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: rcd-bench-secret
EOF
    env -u REGISTRY_HTTP_ADDR docker-registry serve "$work/registry/config.yml" \
      >"$work/registry/log" 2>&1 </dev/null &
    registry_pid=$!
    local i
    for i in $(seq 100); do
      if ! kill -0 "$registry_pid" 2>/dev/null; then break; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /v2/ HTTP/1.0\r\n\r\n' >&3 &&
        head -1 <&3 | grep -q ' 200 ') 2>/dev/null; then
        registry="127.0.0.1:$port"
        return 0
      fi
      sleep 0.1
    done
    kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  done
  cat "$work/registry/log" >&2
  die "docker-registry did not start"
}

# --- the image -------------------------------------------------------------------------------

# Adds a layer of directory $1 to the layout: gzip blob in blobs/, "digest size diffid" out.
add_layer() {
  local dir=$1 tar="$work/layer.tar"
  tar -C "$dir" --sort=name --mtime=@0 --numeric-owner --format=gnu -cf "$tar" .
  local diff_id size digest
  diff_id=$(sha256sum "$tar" | cut -d' ' -f1)
  gzip -n -1 -c "$tar" >"$work/layer.tar.gz"
  digest=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
  size=$(stat -c %s "$work/layer.tar.gz")
  mv "$work/layer.tar.gz" "$layout/blobs/sha256/$digest"
  rm -f "$tar"
  echo "$digest $size $diff_id"
}

put_json() { # content -> "digest size", stored as a blob
  local f="$work/blob.json" digest
  printf '%s' "$1" >"$f"
  digest=$(sha256sum "$f" | cut -d' ' -f1)
  echo "$digest $(stat -c %s "$f")"
  mv "$f" "$layout/blobs/sha256/$digest"
}

build_image() {
  layout="$work/image"
  mkdir -p "$layout/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  local layers=() l src="$work/src"
  rm -rf "$src"; sh "$repo/tests/fixtures/mkrootfs.sh" "$src"
  layers+=("$(add_layer "$src")")
  local i j
  for i in $(seq "$random_layers"); do
    rm -rf "$src"; mkdir -p "$src/data$i/small"
    # Mostly large files, and some small ones: file creation counts too.
    for j in $(seq 6); do
      head -c "$((layer_mb * 1024 * 1024 / 6))" /dev/urandom >"$src/data$i/big$j"
    done
    for j in $(seq 200); do head -c 4096 /dev/urandom >"$src/data$i/small/f$j"; done
    layers+=("$(add_layer "$src")")
  done
  rm -rf "$src"
  local ldesc="" diffs="" total=0 digest size diff_id
  for l in "${layers[@]}"; do
    read -r digest size diff_id <<<"$l"
    total=$((total + size))
    ldesc="$ldesc${ldesc:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$digest\",\"size\":$size}"
    diffs="$diffs${diffs:+,}\"sha256:$diff_id\""
  done
  local arch
  case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  local config cdesc manifest mdesc
  config="{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/bin\"],\"Cmd\":[\"sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diffs]}}"
  read -r digest size <<<"$(put_json "$config")"
  cdesc="{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$digest\",\"size\":$size}"
  manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":$cdesc,\"layers\":[$ldesc]}"
  read -r digest size <<<"$(put_json "$manifest")"
  mdesc="{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$digest\",\"size\":$size,\"annotations\":{\"org.opencontainers.image.ref.name\":\"bench\"}}"
  printf '{"schemaVersion":2,"manifests":[%s]}' "$mdesc" >"$layout/index.json"
  image_layers=${#layers[@]}
  image_bytes=$total
}

push_image() {
  printf '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"
  skopeo --policy "$work/policy.json" copy -q --dest-tls-verify=false \
    "oci:$layout:bench" "docker://$registry/bench/big:latest"
  image="$registry/bench/big:latest"
}

# --- the scenarios ---------------------------------------------------------------------------

declare -A samples

record() { samples[$1]="${samples[$1]:-} $2"; }

ms_since() { echo $((($(now_ns) - $1) / 1000000)); }

# Drops unit $2 (image $image, `true`) into the running daemon; waits for it to exit 0.
rcd_unit_run() {
  local units=$1 name=$2 sock=$3 bin=$4
  printf '[container]\nimage = "%s"\ncommand = ["true"]\n\n[restart]\npolicy = "no"\n' "$image" \
    >"$work/rcd/staging/$name.toml"
  mv "$work/rcd/staging/$name.toml" "$units/$name.toml"
  local out deadline=$(($(date +%s) + 600))
  while :; do
    out=$("$bin/rctl" --socket "$sock" status "$name" --output json 2>/dev/null || true)
    case $out in
      *'"state": "exited"'*) break ;;
      *'"state": "failed"'*) echo "$out" >&2; die "rcd: unit $name failed" ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$out" >&2; die "rcd: $name did not exit in 600 s"; }
    sleep 0.05
  done
  case $out in *'"exit_code": 0'*) ;; *) echo "$out" >&2; die "rcd: $name did not exit 0" ;; esac
}

run_rcd() { rcd_round "$1" "$bin" a; }
run_rcd_base() { rcd_round "$1" "$base_bin" a_base; }

# One rcd round with the binaries in $2: a new daemon on a new root; samples as $3 and ${3}0
# (and their sum as ${3}_sum).
rcd_round() {
  local round=$1 bin=$2 key=$3
  local root="$work/rcd/root-$key-$round" units="$work/rcd/units" sock="$work/rcd/rcd.sock"
  mkdir -p "$units" "$work/rcd/staging"
  rm -f "$units"/*.toml
  rcd_tags+=("$(printf %s "$root" | sha256sum | cut -c1-6)")
  # An empty config file: the defaults, whatever /etc/rcd holds.
  : >"$work/rcd/rcd.toml"
  RCD_LOG=${RCD_LOG:-warn} "$bin/rcd" --units-dir "$units" --root "$root" --socket "$sock" \
    --config "$work/rcd/rcd.toml" --shim "$bin/rcd-shim" --runtime runc \
    >>"$work/rcd/rcd.log" 2>&1 </dev/null &
  rcd_pid=$!
  local i
  for i in $(seq 200); do
    "$bin/rctl" --socket "$sock" list >/dev/null 2>&1 && break
    sleep 0.05
  done
  sync
  local t0 pulled ran
  t0=$(now_ns)
  "$bin/rctl" --socket "$sock" image pull "$image" >"$work/rcd/pull.out" 2>&1 ||
    { cat "$work/rcd/pull.out" >&2; die "rcd: rctl image pull failed"; }
  pulled=$(ms_since "$t0")
  sync
  t0=$(now_ns)
  rcd_unit_run "$units" "run$round" "$sock" "$bin"
  ran=$(ms_since "$t0")
  record "$key" "$pulled"
  record "${key}0" "$ran"
  record "${key}_sum" $((pulled + ran))
  stop_rcd "$units" "$sock" "$bin"
  unmount_under "$root"
}

run_skopeo_umoci() {
  local dir="$work/oci-$1" t0 t1
  mkdir -p "$dir"
  sync
  t0=$(now_ns)
  skopeo --policy "$work/policy.json" copy -q --src-tls-verify=false \
    "docker://$image" "oci:$dir/layout:bench"
  t1=$(now_ns)
  umoci unpack --image "$dir/layout:bench" "$dir/bundle" >/dev/null
  record b "$(ms_since "$t0")"
  record b1 $(((t1 - t0) / 1000000))
  record b2 "$(ms_since "$t1")"
  [ -x "$dir/bundle/rootfs/bin/busybox" ] || die "umoci: the bundle has no /bin/busybox"
}

podman_in() { podman --root "$1/root" --runroot "$1/run" --storage-driver overlay \
  --events-backend file --cgroup-manager cgroupfs "${@:2}"; }

run_podman() {
  local dir="$work/podman-$1" t0
  mkdir -p "$dir"
  # An empty, initialized store: the database and the overlay driver's probes are set up
  # outside the clock, as rcd's daemon is started outside it.
  podman_in "$dir" images >/dev/null
  sync
  t0=$(now_ns)
  podman_in "$dir" pull -q --tls-verify=false "$image" >/dev/null
  record c "$(ms_since "$t0")"
  podman_in "$dir" image exists "$image" || die "podman: the image is not stored"
  unmount_under "$dir"
}

# --- statistics ------------------------------------------------------------------------------

# "median min max" of the values given, in ms.
stats() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%d %d %d\n", m, v[1], v[NR] }'
}

median() { stats "$@" | cut -d' ' -f1; }

# --- main ------------------------------------------------------------------------------------

echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "tools:   $(skopeo --version), $(umoci --version), $(podman --version), $(runc --version | head -1)"
[ -z "$base_bin" ] || echo "base:    $base_bin (rcd built $(date -u -r "$base_bin/rcd" '+%Y-%m-%d %H:%M UTC'))"
echo "rcd:     $bin (rcd built $(date -u -r "$bin/rcd" '+%Y-%m-%d %H:%M UTC'); this checkout is at $(
  git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "work:    $work"

start_registry
log "registry on $registry (pid $registry_pid)"
build_image
push_image
echo "image:   $image: $image_layers layers (busybox + $random_layers of random files), $((image_bytes / 1024 / 1024)) MiB compressed (gzip)"

last() { echo "${samples[$1]:-}" | awk '{ print $NF }'; }

scenarios=(rcd skopeo_umoci podman)
[ -z "$base_bin" ] || scenarios+=(rcd_base)
n=${#scenarios[@]}
log "warm-up round (not counted)"
for s in "${scenarios[@]}"; do "run_$s" 0; done
samples=()
for r in $(seq "$rounds"); do
  # The order rotates so that no tool always runs after the same one.
  for k in $(seq 0 $((n - 1))); do
    s=${scenarios[$(((r + k) % n))]}
    "run_$s" "$r"
  done
  line="round $r/$rounds: a $(last a) ms, b $(last b) ms, c $(last c) ms"
  [ -z "$base_bin" ] || line="$line, base a $(last a_base) ms"
  log "$line"
done

echo
printf '%-62s %10s %14s\n' "scenario ($rounds rounds)" "median ms" "min-max ms"
row() {
  local key=$1 label=$2 m lo hi
  # shellcheck disable=SC2086
  read -r m lo hi <<<"$(stats ${samples[$key]})"
  printf '%-62s %10s %14s\n' "$label" "$m" "$lo-$hi"
}
row a "(a)    rcd: rctl image pull (pull + unpack)"
row a0 "(a0)   rcd: then a unit on it: dropped -> ran true -> exited"
row a_sum "(a+a0) rcd: both, per round"
row b "(b)    skopeo copy + umoci unpack"
row b1 "(b1)     skopeo copy"
row b2 "(b2)     umoci unpack"
row c "(c)    podman pull"
if [ -n "$base_bin" ]; then
  row a_base "(a')   base rcd: rctl image pull"
  row a_base0 "(a0')  base rcd: then a unit on it"
  row a_base_sum "(a'+a0') base rcd: both, per round"
fi
m() { # shellcheck disable=SC2086
  median ${samples[$1]}; }
# Per round, the difference of two scenarios run in that round (the same noise).
paired() { paste -d' ' <(printf '%s\n' ${samples[$1]}) <(printf '%s\n' ${samples[$2]}) |
  awk '{ print $1 - $2 }' | sort -n | awk '{ v[NR] = $1 } END {
    printf "%+d", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
awk -v a="$(m a)" -v b="$(m b)" -v c="$(m c)" 'BEGIN {
  printf "rcd / (skopeo + umoci)     %.2fx (medians)\n", a / b
  printf "rcd / podman               %.2fx (medians)\n", a / c
}'
echo "rcd - podman, per round     $(paired a c) ms (median of the differences)"
if [ -n "$base_bin" ]; then
  awk -v a="$(m a_sum)" -v ab="$(m a_base_sum)" 'BEGIN {
    printf "rcd / base rcd (a+a0)      %.2fx (medians)\n", a / ab }'
  echo "rcd - base rcd (a+a0)      $(paired a_sum a_base_sum) ms per round (median of the differences)"
fi
echo
echo "raw samples (ms), in round order:"
for k in a a0 a_sum b b1 b2 c a_base a_base0 a_base_sum; do
  [ -z "${samples[$k]:-}" ] || echo "  $k:${samples[$k]}"
done
