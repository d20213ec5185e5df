#!/bin/sh
# rcd-vm-runner: the guest side of the VM harness, baked into the image as
# /usr/local/libexec/rcd-vm-runner and started by rcd-vm.service on every boot.
#
#   rcd-vm-runner                  (the service) mount /dev/vdb at /vm, wait for the boot to
#                                  finish, run `/vm/scenario.sh PHASE`, and power off if the
#                                  scenario neither rebooted nor powered off
#   rcd-vm-runner finish ACTION    (the scenario, through lib.sh's finish_phase) end the current
#                                  phase: record it, save this boot's journal, then ACTION
#                                  (reboot: the next boot runs phase N+1; poweroff: QEMU exits)
#
# Files on the test disk:
#   /vm/phase            the phase the next scenario run gets (absent: 1)
#   /vm/boot             how many boots the runner has seen
#   /vm/config           phase_timeout=SECONDS, written by the host (run.sh)
#   /vm/out/status.txt   one key=value line per event, read by run.sh:
#       boot=N start=EPOCH uptime=S boot_id=ID
#       boot=N system=running|degraded|... at=EPOCH uptime=S failed_units=a,b
#       phase=N start=EPOCH
#       phase=N end=EPOCH rc=RC action=reboot|poweroff|none|timeout
#   /vm/out/journal-bootN.txt   the journal of boot N (rewritten in full, shutdown included, by
#                               the next boot when there is one)
#   /vm/out/journal-bootN-rcd.json   rcd.service's part of it as JSON, with rcd's fields
# The runner is self-contained (it must still power off when the scenario or lib.sh is broken).
set -u
vm=/vm
out=$vm/out
max_boots=9

now() { date +%s.%3N; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "rcd-vm: $*"; }
record() { echo "$*" >>"$out/status.txt"; sync; }
dump_journal() { # BOOT [journalctl -b argument]
  journalctl -b "${2:-0}" -o short-precise --no-pager >"$out/journal-boot$1.txt" 2>&1
  # rcd logs through journald's native protocol: the unit a line is about is a field
  # (RCD_UNIT), which only the JSON output shows.
  journalctl -b "${2:-0}" -u rcd.service -o json --no-pager >"$out/journal-boot$1-rcd.json" 2>&1
  sync
}
# The last resort when systemctl cannot shut down: the kernel's own poweroff.
force_poweroff() {
  sync
  systemctl poweroff --force --force || echo o >/proc/sysrq-trigger
}

if [ "${1:-}" = finish ]; then
  action=${2:-}
  case $action in reboot | poweroff) ;; *) say "finish: reboot or poweroff, not '$action'"; exit 2 ;; esac
  phase=$(cat "$vm/phase" 2>/dev/null || echo 1)
  boot=$(cat "$vm/boot" 2>/dev/null || echo 1)
  record "phase=$phase end=$(now) rc=0 action=$action"
  [ "$action" = reboot ] && echo $((phase + 1)) >"$vm/phase"
  dump_journal "$boot"
  say "phase $phase done: $action"
  # Queues the shutdown job and returns; systemd then stops this service and the scenario.
  systemctl "$action"
  exit 0
fi

# The test disk: udev has normally created /dev/vdb long before multi-user.target.
i=0
while [ ! -b /dev/vdb ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
mkdir -p "$vm"
if ! mountpoint -q "$vm" && ! mount -t ext4 /dev/vdb "$vm"; then
  say "cannot mount /dev/vdb at $vm: powering off"
  force_poweroff
  exit 1
fi
mkdir -p "$out"
boot=$(($(cat "$vm/boot" 2>/dev/null || echo 0) + 1))
echo "$boot" >"$vm/boot"
phase=$(cat "$vm/phase" 2>/dev/null || echo 1)
record "boot=$boot start=$(now) uptime=$(uptime_s) boot_id=$(cat /proc/sys/kernel/random/boot_id)"
say "boot $boot, phase $phase"
if [ "$boot" -gt "$max_boots" ]; then
  say "boot $boot: more than $max_boots boots, a reboot loop: powering off"
  record "phase=$phase end=$(now) rc=1 action=none"
  dump_journal "$boot"
  systemctl poweroff || force_poweroff
  exit 1
fi
# The previous boot's journal again, now complete (its shutdown included; the journal is
# persistent on the root disk).
[ "$boot" -gt 1 ] && dump_journal $((boot - 1)) -1

phase_timeout=$(sed -n 's/^phase_timeout=\([0-9][0-9]*\)$/\1/p' "$vm/config" 2>/dev/null)
phase_timeout=${phase_timeout:-600}

# Wait until the boot's jobs are done: `running`, or `degraded` when some unit failed (which the
# scenario may judge; the failed units are recorded here).
state=$(timeout 300 systemctl is-system-running --wait 2>/dev/null)
failed=$(systemctl list-units --failed --plain --no-legend 2>/dev/null | awk '{ print $1 }' | paste -sd, -)
record "boot=$boot system=${state:-unknown} at=$(now) uptime=$(uptime_s) failed_units=${failed:-}"
say "system ${state:-unknown}${failed:+ (failed: $failed)}"

if [ ! -f "$vm/scenario.sh" ]; then
  say "no $vm/scenario.sh: powering off"
  record "phase=$phase end=$(now) rc=127 action=none"
  dump_journal "$boot"
  systemctl poweroff || force_poweroff
  exit 1
fi

record "phase=$phase start=$(now)"
say "running $vm/scenario.sh $phase (at most ${phase_timeout}s)"
export VM_DIR="$vm" VM_OUT="$out" VM_PHASE="$phase" VM_BOOT="$boot"
# The scenario's output goes to the journal and the console (this service's stdout) and to a
# file on the test disk. Its status comes back through a file: a pipeline's is tee's.
rm -f "$vm/.rc"
{
  timeout -k 10 "$phase_timeout" sh "$vm/scenario.sh" "$phase" 2>&1
  echo $? >"$vm/.rc"
} | tee -a "$out/scenario-phase$phase.log"
rc=$(cat "$vm/.rc" 2>/dev/null || echo 1)

if grep -q "^phase=$phase end=" "$out/status.txt"; then
  # finish_phase queued a reboot or poweroff: systemd stops this service shortly.
  say "scenario phase $phase exited $rc after finishing; waiting for the shutdown"
  sleep 120
  say "no shutdown two minutes after phase $phase finished: powering off"
  force_poweroff
  exit 1
fi

case $rc in
  124 | 137) action=timeout; say "scenario phase $phase timed out after ${phase_timeout}s" ;;
  *) action=none; say "scenario phase $phase exited $rc without finish_phase" ;;
esac
record "phase=$phase end=$(now) rc=$rc action=$action"
say "powering off"
dump_journal "$boot"
systemctl poweroff || force_poweroff
