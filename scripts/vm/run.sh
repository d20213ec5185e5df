#!/bin/sh
# Proves rcd on a real Debian 12 host: systemd 252 as PID 1, cgroup v2, the real .deb, a real
# reboot, inside QEMU (TCG). Run as root from anywhere; see scripts/vm/README.md.
#   sh scripts/vm/run.sh [--deb FILE] [--scenario FILE] [--out DIR] [--timeout SECONDS] [--console]
# Stages: host packages and a private QEMU; the .deb (built unless --deb); the base image
# (cached, keyed by its inputs); the test disk (the .deb, the scenario, lib.sh, fixtures); one
# QEMU run (boot 1 → phase 1 → reboot → phase 2 → power-off); the results read back from the
# test disk. Exits 0 only if every phase ran to completion (at least two, so a real reboot),
# results.txt has an `ok` line and no `not ok` line.
# Environment: RCD_VM_CACHE (default target/vm/cache), RCD_BIN_DIR (reuse built binaries:
# skips cargo build, as packaging/deb/build.sh), RCD_VM_KEEP=1 (keep the run's disks).
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
vmdir=$repo/scripts/vm

usage() {
  sed -n '2,12s/^# \{0,1\}//p' "$0"
}
die() {
  echo "run.sh: $*" >&2
  exit 2
}
abspath() { # FILE -> its absolute path (the file must exist)
  [ -e "$1" ] || die "$1: no such file"
  echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

deb=""
scenario=$vmdir/guest/scenario.sh
out=""
timeout=1200
console=0
while [ $# -gt 0 ]; do
  case $1 in
    --deb) [ $# -ge 2 ] || die "--deb needs a file"; deb=$(abspath "$2"); shift 2 ;;
    --scenario) [ $# -ge 2 ] || die "--scenario needs a file"; scenario=$(abspath "$2"); shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --timeout)
      [ $# -ge 2 ] || die "--timeout needs seconds"
      case $2 in '' | *[!0-9]*) die "--timeout: seconds, not '$2'" ;; esac
      timeout=$2
      shift 2
      ;;
    --console) console=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (apt-get, mmdebstrap and mkfs need it)"
# Relative --out and RCD_VM_CACHE are the caller's: resolve them before moving to the repository.
cache=${RCD_VM_CACHE:-$repo/target/vm/cache}
out=${out:-$repo/target/vm/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$cache" "$out"
cache=$(cd "$cache" && pwd)
out=$(cd "$out" && pwd)
cd "$repo"
work=$out/work
rm -rf "$work"
mkdir -p "$work"

# Stage timings (host clock, milliseconds), printed at the end and kept in timings.txt.
ms() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
t_run=$(ms)
: >"$out/timings.txt"
timing() { # LABEL START_MS [NOTE]
  printf '%-28s %7ss  %s\n' "$1" "$(secs $(($(ms) - $2)))" "${3:-}" >>"$out/timings.txt"
}
step() { echo "== $*"; }

# 1. Host packages. Idempotent (as scripts/setup.sh): only what is missing is installed.
#    mmdebstrap builds the image, e2fsprogs makes and reads the ext4 disks (mkfs.ext4 -d,
#    debugfs), umoci and busybox-static make the fixtures; QEMU is private (qemu.sh).
step "host packages"
t=$(ms)
need=""
for pkg in mmdebstrap e2fsprogs umoci busybox-static debian-archive-keyring; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
qemu=$(sh "$vmdir/qemu.sh" "$cache")/root
timing "host packages + QEMU" "$t"

# 2. The .deb: given, or built from this tree.
step "rcd .deb"
t=$(ms)
if [ -n "$deb" ]; then
  timing "deb" "$t" "given: $deb"
else
  if [ -z "${RCD_BIN_DIR:-}" ]; then
    cargo build --release --bins
  fi
  deb=$(sh packaging/deb/build.sh)
  timing "deb build" "$t" "$deb"
fi
case $(basename "$deb") in rcd_*.deb) ;; *) die "$deb: the scenario installs /vm/rcd_*.deb: name it so" ;; esac
echo "$deb"

# 3. The base image, cached under a key made of everything that goes into it: image.sh (which
#    holds the package list), the baked-in runner and its unit, and the mirror lines. Each run
#    boots a sparse copy: the cached image is never booted, so it stays pristine.
step "base image"
t=$(ms)
key=$({
  cat "$vmdir/image.sh" "$vmdir/guest/runner.sh" "$vmdir/guest/rcd-vm.service"
  sh "$vmdir/image.sh" mirrors
} | sha256sum | cut -c1-16)
image=$cache/image-$key
(
  # One builder at a time per cache; a half-built image never has `ready`.
  flock 9
  if [ -f "$image/ready" ]; then
    echo "cache hit: $image"
    timing "base image" "$t" "cache hit ($key)"
  else
    echo "building $image (mmdebstrap, about a minute)"
    rm -rf "$image.tmp"
    sh "$vmdir/image.sh" build "$image.tmp"
    touch "$image.tmp/ready"
    mv "$image.tmp" "$image"
    timing "base image" "$t" "built ($key)"
    # Older images (other keys) are about 0.5 GiB each: keep only the current one.
    for old in "$cache"/image-*; do
      [ "$old" = "$image" ] || rm -rf "$old"
    done
  fi
  t=$(ms)
  cp --sparse=always "$image/rootfs.img" "$work/root.img"
  timing "root disk copy" "$t"
) 9>"$cache/image.lock"

# 4. The test disk: inputs in, results (/out) back. The guest mounts it at /vm.
step "test disk"
t=$(ms)
stage=$work/input
mkdir -p "$stage/out"
cp "$deb" "$stage/"
cp "$scenario" "$stage/scenario.sh"
cp "$vmdir/guest/lib.sh" "$stage/lib.sh"
sh "$vmdir/fixtures.sh" "$stage/fixtures"
# The guest's own bound on one phase, well inside the host's timeout, so that a hung scenario
# still ends in a saved journal and a clean power-off rather than a killed QEMU.
echo "phase_timeout=$((timeout * 2 / 5))" >"$stage/config"
truncate -s 512M "$work/input.img"
mkfs.ext4 -q -F -L rcd-vm-test -d "$stage" "$work/input.img"
rm -rf "$stage"
timing "test disk" "$t"

# 5. Boot. TCG (the host's /dev/kvm cannot boot a stock kernel); tb-size=128 keeps the reboot
#    fast and QEMU small; never -cpu max,-svm (it breaks the boot). No -no-reboot: the guest
#    reboots inside this QEMU process, and QEMU exits when the guest powers off. No network:
#    for debugging replace `-nic none` with `-nic user,model=virtio-net-pci` (then in the guest:
#    ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2;
#    echo nameserver 10.0.2.3 >/etc/resolv.conf).
step "boot (QEMU, at most ${timeout}s)"
serial=$out/serial.log
set -- -name rcd-vm -accel tcg,tb-size=128 -cpu max -smp 2 -m 2048 -nographic \
  -L "$qemu/usr/share/qemu" -L "$qemu/usr/share/seabios" -L "$qemu/usr/lib/ipxe/qemu" \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0" \
  -drive "file=$work/root.img,format=raw,if=virtio,cache=unsafe" \
  -drive "file=$work/input.img,format=raw,if=virtio" \
  -nic none
if [ "$console" = 1 ]; then
  # The serial console on this terminal too (log in as root, no password); Ctrl-a x quits.
  set -- "$@" -chardev "stdio,id=ser0,mux=on,signal=off,logfile=$serial" -serial chardev:ser0 \
    -mon chardev=ser0
else
  set -- "$@" -monitor none -serial "file:$serial"
fi
# The exact command, to boot this run's disks again by hand.
{
  echo "#!/bin/sh"
  echo "# The QEMU command of this run (its disks are in work/ when RCD_VM_KEEP=1 or on failure)."
  printf 'QEMU_MODULE_DIR=%s exec %s' "$qemu/usr/lib/x86_64-linux-gnu/qemu" "$qemu/usr/bin/qemu-system-x86_64"
  for a in "$@"; do printf " '%s'" "$a"; done
  echo
} >"$out/qemu-cmd.sh"

t_qemu=$(ms)
qemu_start=$(date +%s.%3N)
export QEMU_MODULE_DIR="$qemu/usr/lib/x86_64-linux-gnu/qemu"
qrc=0
if [ "$console" = 1 ]; then
  timeout --foreground -k 10 "$timeout" nice -n 10 "$qemu/usr/bin/qemu-system-x86_64" "$@" || qrc=$?
else
  # In the background so that an interrupted run takes QEMU down with it.
  timeout -k 10 "$timeout" nice -n 10 "$qemu/usr/bin/qemu-system-x86_64" "$@" </dev/null &
  qpid=$!
  trap 'kill "$qpid" 2>/dev/null; exit 130' INT TERM HUP
  wait "$qpid" || qrc=$?
  trap - INT TERM HUP
fi
qemu_end=$(date +%s.%3N)
timing "QEMU (boot to power-off)" "$t_qemu" "exit $qrc"

# 6. Results: the test disk's /out, read without mounting it. e2fsck first replays the journal
#    in case QEMU was killed before the guest unmounted it.
step "results"
e2fsck -fy "$work/input.img" >/dev/null 2>&1 || true
rm -rf "$work/readback"
mkdir -p "$work/readback"
debugfs -R "rdump /out $work/readback" "$work/input.img" >/dev/null 2>&1 || true
if [ -d "$work/readback/out" ]; then
  cp -a "$work/readback/out/." "$out/"
fi
rm -rf "$work/readback"
status=$out/status.txt
results=$out/results.txt
touch "$status" "$results"

echo
echo "results ($results):"
sed 's/^/  /' "$results"
echo
echo "phases ($status):"
sed 's/^/  /' "$status"

# Durations from the guest's events (guest clock, set from the host's at each boot: ±1 s).
awk -v qs="$qemu_start" -v qe="$qemu_end" '
  function val(k,   i, kv) { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] } return "" }
  /^boot=/ && / system=/ { sys[val("boot")] = val("at"); st[val("boot")] = val("system") }
  /^phase=/ && / start=/ { ps[val("phase")] = val("start") }
  /^phase=/ && / end=/ { pe[val("phase")] = val("end"); last = val("phase") }
  END {
    prev = qs
    for (n = 1; n in sys; n++) {
      printf "%-28s %7.1fs  %s\n", (n == 1 ? "boot 1" : "reboot -> boot " n), sys[n] - prev, "to " st[n]
      if (n in ps && n in pe) printf "%-28s %7.1fs\n", "phase " n, pe[n] - ps[n]
      if (n in pe) prev = pe[n]
    }
    if (last != "") printf "%-28s %7.1fs\n", "power-off", qe - pe[last]
  }' "$status" >>"$out/timings.txt"
timing "total" "$t_run"
echo
echo "durations:"
sed 's/^/  /' "$out/timings.txt"

# Pass: QEMU ended by itself; phases 1..N (N >= 2) each started and ended through finish_phase,
# the last with poweroff; results has an ok line and no not-ok line.
fail=""
[ "$qrc" = 0 ] || fail="$fail; QEMU exited $qrc$([ "$qrc" = 124 ] && echo " (host timeout ${timeout}s: killed)")"
verdict=$(awk '
  function val(k,   i, kv) { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] } return "" }
  /^phase=/ && / start=/ { started[val("phase")] = 1; if (val("phase") > n) n = val("phase") }
  /^phase=/ && / end=/ { act[val("phase")] = val("action"); rc[val("phase")] = val("rc") }
  END {
    for (p = 1; p <= n; p++) {
      want = (p < n ? "reboot" : "poweroff")
      if (!(p in act)) { print "phase " p " never ended"; exit }
      if (act[p] != want || rc[p] != 0) { print "phase " p " ended with action=" act[p] " rc=" rc[p] " (want " want ")"; exit }
    }
    if (n < 2) { print "only " n + 0 " phase(s) ran (a reboot needs 2)"; exit }
    print "ok"
  }' "$status")
[ "$verdict" = ok ] || fail="$fail; $verdict"
grep -q '^not ok' "$results" && fail="$fail; $(grep -c '^not ok' "$results") check(s) not ok"
grep -q '^ok' "$results" || fail="$fail; no ok line in results.txt"

echo
if [ -z "$fail" ]; then
  [ "${RCD_VM_KEEP:-0}" = 1 ] || rm -rf "$work"
  echo "PASS: $out"
  exit 0
fi
echo "FAIL:${fail#;}"
for f in "$out"/journal-boot*.txt "$out/failures.txt"; do
  if [ -f "$f" ]; then echo "  read:       $f"; fi
done
echo "  serial log: $serial"
echo "  disks kept: $work (root.img holds the guest's persistent journal: /var/log/journal)"
echo "last 40 lines of the serial log:"
tail -n 40 "$serial" 2>/dev/null | sed 's/^/  /'
echo "FAIL: $out"
exit 1
