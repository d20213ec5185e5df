#!/bin/sh
# The VM smoke scenario: run by rcd-vm-runner as `sh /vm/scenario.sh PHASE`, once per boot, on
# a Debian 12 guest with systemd as PID 1 and cgroup v2. A small placeholder for the real rcd
# checks, but real: it installs the .deb, runs a container under the packaged service, reboots,
# and checks that rcd and the container come back by themselves.
# Phase 1 ends with a reboot, phase 2 with a power-off (finish_phase). Helpers: lib.sh.
# The functions below run through check and wait_until, which shellcheck cannot follow.
# shellcheck disable=SC2317
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /vm/lib.sh
set -u

deb=""
for f in /vm/rcd_*.deb; do [ -f "$f" ] && deb=$f; done

system_state_ok() {
  state=$(systemctl is-system-running)
  echo "$state"
  [ "$state" = running ] || [ "$state" = degraded ]
}
cgroup_v2() {
  fs=$(stat -fc %T /sys/fs/cgroup)
  echo "/sys/fs/cgroup is $fs"
  [ "$fs" = cgroup2fs ]
}
pid1_systemd() {
  comm=$(cat /proc/1/comm)
  echo "PID 1 is $comm ($(readlink /proc/1/exe))"
  [ "$comm" = systemd ]
}
rcd_active() {
  state=$(systemctl is-active rcd)
  echo "rcd is $state"
  [ "$state" = active ]
}
# `rctl list`: a line "smoke running PID ...".
unit_running() {
  rctl list 2>&1
  rctl list 2>/dev/null | awk -v u="$1" '$1 == u && $2 == "running" { found = 1 } END { exit !found }'
}
unit_gone() {
  rctl list 2>&1
  ! rctl list 2>/dev/null | awk -v u="$1" '$1 == u { found = 1 } END { exit !found }'
}
unit_logged() { # UNIT TEXT
  rctl logs "$1" 2>&1 | grep -F "$2"
}
unit_pid() {
  rctl list 2>/dev/null | awk -v u="$1" '$1 == u { print $3 }'
}
image_imported() {
  rctl image import /vm/fixtures/busybox-oci.tar --name busybox || return 1
  rctl image ls 2>&1
  rctl image ls 2>/dev/null | grep -q 'busybox.*vm'
}
# A reboot whose shutdown waited on leftover processes: systemd-shutdown sends SIGTERM to what
# no unit stopped, waits up to 90 s, then SIGKILLs. Measured as the gap between the previous
# boot's last journal entry (journald stops shortly before systemd-shutdown's kill) and this
# boot's kernel start; a clean reboot under TCG takes a few seconds.
prev_shutdown_quick() {
  last=$(journalctl -b -1 -n 1 -o short-unix --no-pager 2>&1 | awk '/^[0-9]/ { t = $1 } END { print t }')
  btime=$(awk '$1 == "btime" { print $2 }' /proc/stat)
  [ -n "$last" ] || { echo "no journal of the previous boot"; return 1; }
  gap=$(awk -v a="$last" -v b="$btime" 'BEGIN { printf "%d", b - a }')
  echo "the previous boot's journal ended ${gap}s before this boot's kernel started" \
    "(serial.log shows what systemd-shutdown waited for: 'Waiting for process')"
  [ "$gap" -lt 30 ]
}

case ${VM_PHASE} in
  1)
    check "systemctl is-system-running is running or degraded" system_state_ok
    check "/sys/fs/cgroup is cgroup2fs (cgroup v2)" cgroup_v2
    check "PID 1 is systemd" pid1_systemd
    [ -n "$deb" ] || bail "no /vm/rcd_*.deb on the test disk"
    check "dpkg -i $(basename "$deb")" dpkg -i "$deb" ||
      bail "the rcd package did not install: nothing more to check"
    check "rcd.service is active after install" rcd_active
    check "the API socket /run/rcd/rcd.sock exists" test -S /run/rcd/rcd.sock

    # A rootfs unit on the busybox root filesystem made on the host.
    mkdir -p /srv/rcd
    rm -rf /srv/rcd/busybox
    cp -a /vm/fixtures/busybox /srv/rcd/busybox
    # Written aside and renamed in, as an operator's tool should: rcd watches the directory.
    cat >/etc/rcd/smoke.toml.new <<'EOF'
[container]
rootfs = "/srv/rcd/busybox"
command = ["sh", "-c", "echo hi; exec sleep 1000000"]
[network]
mode = "none"
[restart]
policy = "always"
EOF
    mv /etc/rcd/smoke.toml.new /etc/rcd/units/smoke.toml
    check "unit smoke runs (rctl list)" wait_until 120 "smoke running in rctl list" unit_running smoke
    check "unit smoke logged hi" wait_until 30 "hi in rctl logs smoke" unit_logged smoke hi
    pid=$(unit_pid smoke)
    note "smoke's pid $pid, cgroup $(cat "/proc/$pid/cgroup" 2>/dev/null)"
    check "rctl image import of the busybox OCI layout (busybox:vm)" image_imported

    cat /proc/sys/kernel/random/boot_id >"$VM_OUT/boot-id-phase1"
    note "boot id $(cat "$VM_OUT/boot-id-phase1")"
    finish_phase reboot
    ;;
  2)
    boot_id_changed() {
      old=$(cat "$VM_OUT/boot-id-phase1")
      new=$(cat /proc/sys/kernel/random/boot_id)
      echo "phase 1 boot id $old, now $new"
      [ -n "$old" ] && [ "$old" != "$new" ]
    }
    check "the guest rebooted (the boot id changed)" boot_id_changed
    check "systemctl is-system-running is running or degraded" system_state_ok
    # Nobody starts rcd in phase 2: the package enabled it.
    check "rcd.service is enabled" systemctl is-enabled rcd
    check "rcd.service came up by itself after the reboot" wait_until 60 "rcd active" rcd_active
    check "the reboot did not wait on leftover processes (under 30 s)" prev_shutdown_quick
    check "unit smoke runs again after the reboot" wait_until 120 "smoke running in rctl list" unit_running smoke
    # Deleting the file stops and removes the container (and the power-off need not kill it).
    rm -f /etc/rcd/units/smoke.toml
    check "deleting smoke.toml removes the unit" wait_until 60 "smoke gone from rctl list" unit_gone smoke
    finish_phase poweroff
    ;;
  *)
    bail "no phase $VM_PHASE in this scenario"
    ;;
esac
