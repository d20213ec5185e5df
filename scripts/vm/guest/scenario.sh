#!/bin/sh
# What rcd must show on the hosts operators run (issue 13): a Debian 12 guest with systemd 252
# as PID 1 and the unified cgroup (v2) tree, and a real reboot between the two phases. Run by
# rcd-vm-runner as `sh /vm/scenario.sh PHASE`, once per boot; helpers in lib.sh.
#   phase 1: the .deb installed (1); units run: an imported image on the bridge with a published
#            port, a rootfs unit (2); cgroup v2 limits, stats, OOM, systemd's view (3); live
#            restore through `systemctl restart` and `kill -9`, a stop without live restore (4);
#            the journal, the journald log driver (5); the watchdog (6); one unit per row of the boot table; reboot.
#   phase 2: after the boot: rcd started by itself, every unit as the boot table says, start
#            order, restart counts, nothing stale from the previous boot (7); a purge (8).
# A failed check never stops the run: everything is recorded, then the phase ends.
# The functions below run through check and wait_until, which shellcheck cannot follow.
# shellcheck disable=SC2317
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /vm/lib.sh
set -u

U=/etc/rcd/units
CARRY=$VM_OUT/carry # values carried across the reboot
RUNC_ROOT=/var/lib/rcd/runc
IMAGE=busybox:vm

# --- helpers -------------------------------------------------------------------------------

# Writes unit NAME from stdin as an editor saves: a temporary file renamed over.
put_unit() {
  cat >"$U/.$1.tmp" && mv "$U/.$1.tmp" "$U/$1.toml"
}
# FIELD of unit NAME's status, from `rctl status -o json` (null: empty; false stays false).
field() {
  rctl status -o json "$1" 2>/dev/null | jq -r ".[0].$2 | if . == null then \"\" else tostring end"
}
is_state() {
  s=$(field "$1" state)
  echo "$1 is ${s:-unknown}"
  [ "$s" = "$2" ]
}
# "unit pid restarts" of every running unit, sorted: what live restore must keep.
snapshot() {
  rctl list -o json | jq -r '.[] | select(.state == "running") | "\(.name) \(.pid) \(.restarts)"' |
    sort
}
snapshot_is() { # the expected snapshot
  now=$(snapshot)
  same "$1" "$now"
}
main_pid() { systemctl show -p MainPID --value rcd; }
new_daemon_since() { # OLD_PID: a different, active main process
  p=$(main_pid)
  echo "MainPID $p (was $1), $(systemctl is-active rcd)"
  [ "$p" != 0 ] && [ "$p" != "$1" ] && systemctl is-active -q rcd
}
cgroup_of() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }
shim_count() {
  n=0
  for c in /proc/[0-9]*/comm; do
    [ "$(cat "$c" 2>/dev/null)" = rcd-shim ] && n=$((n + 1))
  done
  echo "$n"
}
running_ids() { rctl list -o json | jq -r '.[] | select(.state == "running") | .container_id' | sort; }
runc_ids() { runc --root "$RUNC_ROOT" list --format json 2>/dev/null | jq -r '(. // [])[].id' | sort; }
scope_ids() {
  systemctl list-units --type=scope --all --plain --no-legend 'rcd-*' | awk '{print $1}' |
    sed 's/\.scope$//' | sort
}
overlay_ids() {
  awk '$3 == "overlay" && $2 ~ "^/var/lib/rcd/containers/" {print $2}' /proc/self/mounts |
    sed 's|^/var/lib/rcd/containers/||; s|/.*||' | sort
}
same() { # EXPECTED GOT
  printf 'expected:\n%s\ngot:\n%s\n' "$1" "$2"
  [ "$1" = "$2" ]
}
# (busybox 1.35's wget crashes with -T: timeout bounds it instead.)
web_answers() {
  timeout 10 busybox wget -q -O - http://127.0.0.1:8080/ | tee /dev/stderr | grep -qx hello-from-web
}
# The default network as the kernel and the state hold it: veths on rcd0, elements of rcd's
# nftables maps (its table is named for the root's tag), address leases.
rcd_table() {
  echo "rcd_$(printf %s /var/lib/rcd | sha256sum | cut -c1-6)"
}
network_is() { # VETHS ELEMENTS: one veth and one lease per bridged container
  v=$(ip -o link show master rcd0 | grep -c .)
  e=$(nft -j list table inet "$(rcd_table)" | jq '[.nftables[] | .map.elem? // empty | .[]] | length')
  l=0
  for f in /var/lib/rcd/net/rcd/leases/[0-9]*; do [ -e "$f" ] && l=$((l + 1)); done
  echo "veths $v, map elements $e, leases $l"
  [ "$v" = "$1" ] && [ "$e" = "$2" ] && [ "$l" = "$1" ]
}
all_running() {
  for u in "$@"; do is_state "$u" running || return 1; done
}

# A busybox unit that runs until stopped, with POLICY; KILL stops it at once.
policy_unit() { # POLICY [EXTRA]
  cat <<EOF
[container]
rootfs = "/srv/rcd/busybox"
command = ["sh", "-c", "echo up; exec sleep 1000000"]
stop_signal = "KILL"

[network]
mode = "none"

[restart]
policy = "$1"
${2:-}
EOF
}

# --- 1: the package --------------------------------------------------------------------------

deb_installs() { dpkg -i /vm/rcd_*.deb; }
installed_files() {
  for f in /usr/bin/rcd /usr/bin/rctl /usr/bin/rcd-shim /usr/lib/systemd/system/rcd.service \
    /usr/lib/systemd/system/rcd.slice /usr/lib/tmpfiles.d/rcd.conf /usr/lib/sysusers.d/rcd.conf \
    /etc/rcd/rcd.toml /usr/share/man/man8/rcd.8.gz /usr/share/man/man1/rctl.1.gz \
    /usr/share/bash-completion/completions/rctl; do
    [ -e "$f" ] || { echo "$f missing"; return 1; }
  done
}
units_verify() {
  out=$(systemd-analyze verify rcd.service rcd.slice 2>&1)
  echo "$out"
  [ -z "$out" ]
}
ready_then_active() {
  # Type=notify: `systemctl restart` returns once READY=1 came, and the API answers then.
  [ "$(systemctl show -p Type --value rcd)" = notify ] || return 1
  for _ in 1 2 3; do
    systemctl restart rcd && rctl list >/dev/null || return 1
  done
  journalctl -b -u rcd --no-pager -o cat | grep "READY=1 sent"
}
same_mount_ns() {
  d=$(readlink "/proc/$(main_pid)/ns/mnt")
  h=$(readlink /proc/1/ns/mnt)
  echo "rcd $d, PID 1 $h"
  [ "$d" = "$h" ]
}
status_line() { systemctl status rcd --no-pager | grep -E 'Status: "[0-9]+ units'; }
socket_mode() {
  m=$(stat -c '%a %U %G' /run/rcd/rcd.sock)
  echo "$m"
  [ "$m" = "660 root rcd" ]
}
outsider_refused() {
  out=$(setpriv --reuid 65534 --regid 65534 --clear-groups rctl list 2>&1) && return 1
  echo "$out"
  echo "$out" | grep -q "ermission denied"
}
member_answered() {
  gid=$(getent group rcd | cut -d: -f3)
  setpriv --reuid 65534 --regid 65534 --groups="$gid" rctl list
}

# --- 2: units ------------------------------------------------------------------------------

image_imported() {
  rctl image import /vm/fixtures/busybox-oci.tar --name busybox &&
    rctl image ls | tee /dev/stderr | grep -q "docker.io/library/busybox:vm"
}
write_web_and_app() {
  put_unit web <<EOF
[unit]
description = "busybox httpd from an imported image, published on 8080"

[container]
image = "$IMAGE"
command = ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"]
stop_signal = "KILL"

[network]
ports = ["8080:80"]

[restart]
policy = "always"
EOF
  put_unit app <<'EOF'
[unit]
description = "a rootfs unit on the bridge that needs web"
after = ["web"]
requires = ["web"]

[container]
rootfs = "/srv/rcd/busybox"
command = ["sh", "-c", "echo app up; exec sleep 1000000"]
stop_signal = "KILL"

[restart]
policy = "unless-stopped"
EOF
}
by_name() {
  timeout 10 rctl exec app -- wget -q -O - http://web/ | tee /dev/stderr | grep -qx hello-from-web
}

# --- 3: cgroup v2 ----------------------------------------------------------------------------

write_lim() {
  put_unit lim <<'EOF'
[container]
rootfs = "/srv/rcd/busybox"
command = ["sh", "-c", "exec sleep 1000000"]
stop_signal = "KILL"

[network]
mode = "none"

[resources]
memory = "64M"
cpus = 0.5
pids = 100

[restart]
policy = "always"
EOF
}
file_is() { # FILE EXPECTED
  got=$(cat "$1")
  echo "$1: $got"
  [ "$got" = "$2" ]
}
stats_v2() {
  rctl stats lim -o json | tee /dev/stderr | jq -e '.[0] | .memory_limit == 67108864 and
    .memory_bytes > 0 and .pids >= 1 and .cpu_usec != null' >/dev/null
}
# /metrics on the socket, from cgroup v2: the limit, the high-water mark (memory.peak), CPU.
metrics_v2() {
  m=$(curl -sf --unix-socket /run/rcd/rcd.sock http://rcd/metrics)
  echo "$m" | grep 'unit="lim"'
  echo "$m" | grep -qx 'rcd_container_memory_limit_bytes{unit="lim"} 67108864' &&
    echo "$m" | grep -q '^rcd_container_memory_max_bytes{unit="lim"} [1-9]' &&
    echo "$m" | grep -q '^rcd_container_cpu_seconds_total{unit="lim"} ' &&
    echo "$m" | grep -q '^rcd_unit_start_duration_seconds_count{unit="lim"} 1$'
}
scope_known() { # ID
  systemctl status --no-pager "$1.scope" || true
  systemctl is-active -q "$1.scope" && [ "$(systemctl show -p Slice --value "$1.scope")" = rcd.slice ]
}
cgls_slice() { systemd-cgls --no-pager /rcd.slice | tee /dev/stderr | grep -q "$1.scope"; }
cgls_service() {
  out=$(systemd-cgls --no-pager -u rcd.service)
  echo "$out"
  echo "$out" | grep -q rcd-shim && ! echo "$out" | grep -q "sleep 1000000"
}
scope_props() { # ID
  systemctl show -p KillSignal -p TimeoutStopUSec -p Before -p Conflicts "$1.scope"
  [ "$(systemctl show -p KillSignal --value "$1.scope")" = 9 ] &&
    systemctl show -p Before --value "$1.scope" | grep -qw rcd.service &&
    systemctl show -p Before --value "$1.scope" | grep -qw shutdown.target &&
    systemctl show -p Conflicts --value "$1.scope" | grep -qw shutdown.target
}
write_oom() {
  put_unit oom <<'EOF'
[container]
rootfs = "/srv/rcd/busybox"
command = ["sh", "-c", "echo filling; exec dd if=/dev/zero of=/dev/null bs=64M count=1"]

[network]
mode = "none"

[resources]
memory = "16M"

[restart]
policy = "on-failure"
max_retries = 2
delay = "500ms"
EOF
}
oom_shown() {
  rctl status oom | tee /dev/stderr | grep -q "137 (oom)" &&
    rctl status -o json oom |
    jq -e '.[0] | .exit_code == 137 and .exit_reason == "oom" and .restarts == 2' >/dev/null
}
not_moved() { # PID CGROUP
  now=$(cgroup_of "$1")
  echo "pid $1 in $now"
  [ "$now" = "$2" ] && [ "$(cat "/sys/fs/cgroup$2/memory.max")" = 67108864 ]
}

# --- 4, 5, 6 -------------------------------------------------------------------------------

restart_keeps() { # SNAPSHOT
  systemctl restart rcd || return 1
  wait_until 30 "the same containers" snapshot_is "$1"
}
journal_fields() {
  journalctl -b -u rcd RCD_UNIT=web --no-pager -o cat | tee /dev/stderr | grep -q . &&
    [ "$(journalctl -b -u rcd RCD_UNIT=web -o json | jq -r .RCD_UNIT | sort -u)" = web ]
}
write_jlog() {
  put_unit jlog <<'EOF'
[container]
rootfs = "/srv/rcd/busybox"
command = ["sh", "-c", "echo jlog-out; echo jlog-err >&2; exec sleep 1000000"]
stop_signal = "KILL"

[network]
mode = "none"

[logs]
driver = "journald"
EOF
}
# The container's own lines, by its unit, each with its stream's priority; in the file too.
jlog_in_journal() {
  journalctl -b RCD_UNIT=jlog CONTAINER_NAME=jlog -o json --no-pager |
    jq -r '"\(.PRIORITY) \(.MESSAGE) \(._SYSTEMD_UNIT)"' | sort | tee /dev/stderr >"$VM_OUT/jlog"
  grep -qx "3 jlog-err rcd.service" "$VM_OUT/jlog" && grep -qx "6 jlog-out rcd.service" "$VM_OUT/jlog"
}
jlog_in_file() {
  out=$(rctl logs jlog)
  echo "$out"
  echo "$out" | grep -qx jlog-out && echo "$out" | grep -qx jlog-err
}
jlog_gone() { [ -z "$(field jlog state)" ]; }
watchdog_said() { journalctl -b -u rcd --no-pager | grep -i "watchdog timeout"; }
reloaded_live_restore() {
  journalctl -b -u rcd --no-pager -o cat | grep "config reloaded: applied .*live_restore"
}
nothing_runs() {
  scopes=$(systemctl list-units --type=scope --state=active --plain --no-legend 'rcd-*')
  echo "scopes: $scopes; shims: $(shim_count); runc: $(runc_ids)"
  [ -z "$scopes" ] && [ "$(shim_count)" = 0 ] && [ -z "$(runc_ids)" ]
}
stopped_dependents_first() { # SINCE
  order=$(rctl events --since "$1" --until 0s -o json |
    jq -rs '[.[] | select(.action == "stopped") | .unit] | join(" ")')
  echo "stopped, in order: $order"
  echo " $order " | grep -q " app \(.* \)\?web "
}

# --- 7 -------------------------------------------------------------------------------------

started_in_order() { # FIRST THEN
  a=$(field "$1" started_at)
  b=$(field "$2" started_at)
  echo "$1 started $a, $2 started $b"
  [ -n "$a" ] && [ -n "$b" ] && [ "$a" \< "$b" ]
}
held_stopped() {
  s=$(rctl status -o json "$1" | jq -r '.[0] | "\(.state) \(.held)"')
  echo "$1: $s"
  [ "$s" = "stopped true" ]
}
field_is() { # UNIT FIELD VALUE
  got=$(field "$1" "$2")
  echo "$1.$2 = $got"
  [ "$got" = "$3" ]
}
# The previous shutdown did not wait on leftover processes: systemd-shutdown sends SIGTERM to
# what no unit stopped, waits up to 90 s, then SIGKILLs. Measured as the gap between the
# previous boot's last journal entry and this boot's kernel start; a clean reboot under TCG
# takes a few seconds.
prev_shutdown_quick() {
  last=$(journalctl -b -1 -n 1 -o short-unix --no-pager 2>&1 | awk '/^[0-9]/ { t = $1 } END { print t }')
  btime=$(awk '$1 == "btime" { print $2 }' /proc/stat)
  [ -n "$last" ] || { echo "no journal of the previous boot"; return 1; }
  gap=$(awk -v a="$last" -v b="$btime" 'BEGIN { printf "%d", b - a }')
  echo "the previous boot's journal ended ${gap}s before this boot's kernel started" \
    "(serial.log shows what systemd-shutdown waited for: 'Waiting for process')"
  [ "$gap" -lt 30 ]
}
containers_stopped_by_systemd() {
  # At shutdown each scope is stopped after rcd.service, with the unit's stop signal.
  journalctl -b -1 --no-pager -o short-monotonic | grep -E "rcd(\.service|-.*\.scope)" |
    grep -E "Stopped|Deactivated|stopped" | tail -20
  journalctl -b -1 --no-pager -o cat | grep -q "rcd stopping; containers keep running"
}

# --- 8 -------------------------------------------------------------------------------------

purge() { DEBIAN_FRONTEND=noninteractive apt-get purge -y rcd; }
purge_stopped_all() {
  echo "shims $(shim_count); scopes: $(scope_ids)"
  [ "$(shim_count)" = 0 ] && [ -z "$(scope_ids)" ] && ! pgrep -x sleep
}
purge_no_unit() {
  systemctl list-unit-files --no-legend rcd.service rcd.slice
  [ -z "$(systemctl list-unit-files --no-legend rcd.service rcd.slice)" ]
}
purge_no_state() {
  for p in /var/lib/rcd /run/rcd /usr/bin/rcd /usr/bin/rctl /usr/bin/rcd-shim; do
    [ ! -e "$p" ] || { echo "$p left"; return 1; }
  done
  ! grep " /var/lib/rcd" /proc/self/mounts
}

# --- the phases ----------------------------------------------------------------------------

phase1() {
  check "the guest: PID 1 is systemd" test "$(cat /proc/1/comm)" = systemd
  check "the guest: /sys/fs/cgroup is cgroup2fs" test "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs
  check "the guest: systemd 252" sh -c 'systemctl --version | head -1 | grep "^systemd 252"'

  note "1. the package"
  check "dpkg -i installs the package" deb_installs ||
    bail "the rcd package did not install: nothing more to check"
  check "installed: binaries, units, config, man pages, completions" installed_files
  check "systemd-analyze verify rcd.service rcd.slice (the real systemd)" units_verify
  check "rcd is enabled by the package" test "$(systemctl is-enabled rcd)" = enabled
  check "rcd is active after the install" systemctl is-active -q rcd
  check "Type=notify: active once READY=1 came, the API answers at once (3 restarts)" ready_then_active
  check "systemctl status shows the STATUS= line" status_line
  check "the daemon shares the host's mount namespace (its mounts are the host's)" same_mount_ns
  check "group rcd exists" getent group rcd
  check "socket /run/rcd/rcd.sock is 0660 root:rcd" socket_mode
  check "the socket refuses a user outside group rcd" outsider_refused
  check "the socket answers a user in group rcd" member_answered

  note "2. units: an imported image on the bridge with a published port, a rootfs unit"
  mkdir -p /srv/rcd && rm -rf /srv/rcd/busybox && cp -a /vm/fixtures/busybox /srv/rcd/busybox
  check "rctl image import of an OCI archive, named by its tag" image_imported
  write_web_and_app
  check "the image unit runs" wait_until 120 "web running" is_state web running
  check "the rootfs unit runs" wait_until 120 "app running" is_state app running
  check "the published port answers on the guest's 127.0.0.1" wait_until 30 "web answers" web_answers
  check "units reach each other by name over the bridge" wait_until 30 "app reaches web" by_name
  check "the native bridge: a veth and a lease each, one map element (web's port)" network_is 2 1

  note "3. cgroup v2"
  write_lim
  check "the limited unit runs" wait_until 120 "lim running" is_state lim running
  lim_pid=$(field lim pid)
  lim_id=$(field lim container_id)
  lim_cg=$(cgroup_of "$lim_pid")
  note "lim: pid $lim_pid, container $lim_id, cgroup $lim_cg"
  check "its cgroup is a scope of its own in rcd.slice" test "$lim_cg" = "/rcd.slice/$lim_id.scope"
  check "memory = 64M is memory.max" file_is "/sys/fs/cgroup$lim_cg/memory.max" 67108864
  check "cpus = 0.5 is cpu.max" file_is "/sys/fs/cgroup$lim_cg/cpu.max" "50000 100000"
  check "pids = 100 is pids.max" file_is "/sys/fs/cgroup$lim_cg/pids.max" 100
  check "rctl stats shows the v2 figures" stats_v2
  check "/metrics shows the v2 figures: limit, high-water mark, CPU, start latency" metrics_v2
  check "systemd knows the scope: active, in rcd.slice" scope_known "$lim_id"
  check "systemd-cgls shows the containers under rcd.slice" cgls_slice "$lim_id"
  check "systemd-cgls shows only shims (no container) in rcd.service" cgls_service
  check "the scope: the unit's stop signal, ordered before rcd.service and shutdown" scope_props "$lim_id"
  write_oom
  check "an OOM-killed unit is restarted by its policy until it gives up" \
    wait_until 180 "oom failed" is_state oom failed
  check "its exit is 137 (oom), read from memory.events, and it restarted twice" oom_shown
  rm -f "$U/oom.toml"

  note "4. live restore under systemd"
  before=$(snapshot)
  note "running: $(echo "$before" | tr '\n' ';')"
  systemctl daemon-reload
  check "systemctl restart rcd: every container keeps its pid, no restart counted" \
    restart_keeps "$before"
  check "systemd did not move or change the container: same cgroup, same memory.max" \
    not_moved "$lim_pid" "$lim_cg"
  old=$(main_pid)
  kill -9 "$old"
  check "kill -9 of the daemon: systemd restarts it" wait_until 60 "a new rcd" new_daemon_since "$old"
  check "after kill -9 every container kept its pid, no restart counted" \
    wait_until 30 "the same containers" snapshot_is "$before"

  note "5. the journal"
  check "journalctl -u rcd RCD_UNIT=web finds the unit's lines" journal_fields
  write_jlog
  check "a unit with [logs] driver = \"journald\" runs" wait_until 120 "jlog running" is_state jlog running
  check "journalctl RCD_UNIT=jlog finds the container's own lines, priority by stream" \
    wait_until 30 "jlog's lines in the journal" jlog_in_journal
  check "rctl logs still reads them from the file (dual logging)" jlog_in_file
  rm -f "$U/jlog.toml"
  check "the journald unit removed" wait_until 60 "jlog gone" jlog_gone

  note "6. the watchdog"
  mkdir -p /etc/systemd/system/rcd.service.d
  printf '[Service]\nWatchdogSec=6s\n' >/etc/systemd/system/rcd.service.d/watchdog.conf
  systemctl daemon-reload
  systemctl restart rcd
  before=$(snapshot)
  old=$(main_pid)
  kill -STOP "$old"
  check "a SIGSTOPped daemon is restarted by systemd's watchdog" \
    wait_until 120 "a new rcd" new_daemon_since "$old"
  check "systemd says why: watchdog timeout" watchdog_said
  check "after the watchdog restart every container kept its pid" \
    wait_until 30 "the same containers" snapshot_is "$before"
  rm -rf /etc/systemd/system/rcd.service.d
  systemctl daemon-reload
  systemctl restart rcd

  note "4. systemctl stop with live_restore = false"
  cp /etc/rcd/rcd.toml "$CARRY.rcd.toml"
  printf '\n[daemon]\nlive_restore = false\n' >>/etc/rcd/rcd.toml
  systemctl reload rcd
  check "systemctl reload applies live_restore = false" \
    wait_until 30 "the reload logged" reloaded_live_restore
  t0=$(date +%s)
  sleep 1
  check "systemctl stop rcd" systemctl stop rcd
  check "... stopped every container: no scope, no shim, nothing in runc" nothing_runs
  cp "$CARRY.rcd.toml" /etc/rcd/rcd.toml
  systemctl start rcd
  check "... app (which requires web) was stopped before web" stopped_dependents_first "$t0"
  check "... and the next start runs them again (they were not held)" \
    wait_until 120 "web, app, lim running" all_running web app lim

  note "7. one unit per row of the boot table"
  policy_unit always | put_unit always
  policy_unit always | put_unit always-held
  policy_unit unless-stopped | put_unit unless
  policy_unit unless-stopped | put_unit unless-held
  policy_unit no | put_unit no-auto
  policy_unit no '[install]
autostart = false' | put_unit no-off
  policy_unit on-failure | put_unit onfail
  # Fails its first run (exit 3), runs from the second: one restart, counted and kept.
  put_unit flaky <<'EOF'
[container]
rootfs = "/srv/rcd/busybox"
command = ["sh", "-c", "if [ -e /ran ]; then echo second; exec sleep 1000000; fi; touch /ran; exit 3"]
stop_signal = "KILL"

[network]
mode = "none"

[restart]
policy = "always"
EOF
  for u in always always-held unless unless-held no-auto onfail flaky; do
    check "before the reboot: $u runs" wait_until 120 "$u running" is_state "$u" running
  done
  check "before the reboot: no-off (autostart = false) is pending" \
    wait_until 30 "no-off pending" is_state no-off pending
  check "rctl stop always-held" rctl stop always-held
  check "rctl stop unless-held" rctl stop unless-held
  check "flaky was restarted once" field_is flaky restarts 1
  cat /proc/sys/kernel/random/boot_id >"$CARRY.boot_id"
  rctl list >"$VM_OUT/rctl-list-before-reboot.txt" 2>&1
  finish_phase reboot
}

phase2() {
  check "a new boot" test "$(cat /proc/sys/kernel/random/boot_id)" != "$(cat "$CARRY.boot_id")"
  check "the reboot did not wait on leftover processes (under 30 s)" prev_shutdown_quick
  check "at shutdown rcd stopped first (live restore), then systemd stopped the scopes" \
    containers_stopped_by_systemd
  check "rcd is enabled" test "$(systemctl is-enabled rcd)" = enabled
  check "rcd started by itself at boot" wait_until 120 "rcd active" systemctl is-active -q rcd

  note "7. the boot table"
  for u in web app lim always always-held unless no-auto onfail flaky; do
    check "after the boot: $u runs" wait_until 180 "$u running" is_state "$u" running
  done
  check "after the boot: always-held (policy always) is no longer held" field_is always-held held false
  check "after the boot: unless-held stays stopped and held" held_stopped unless-held
  check "after the boot: no-off (autostart = false) is not started" is_state no-off pending
  check "after the boot: flaky's restart count is kept (1)" field_is flaky restarts 1
  check "after the boot: the boot start is not counted as a restart" field_is always restarts 0
  check "after the boot: web started before app (after/requires)" started_in_order web app
  check "after the boot: the published port answers again" wait_until 60 "web answers" web_answers
  check "after the boot: the bridge's state is the running containers' only" network_is 2 1
  rctl list >"$VM_OUT/rctl-list-after-reboot.txt" 2>&1
  want=$(running_ids)
  check "no stale runtime state: runc knows exactly the running containers" same "$want" "$(runc_ids)"
  check "no stale scopes: systemd has exactly their scopes" same "$want" "$(scope_ids)"
  check "no stale mounts: exactly their overlays are mounted" same "$want" "$(overlay_ids)"
  check "no stale shims: one per running container" same "$(echo "$want" | grep -c .)" "$(shim_count)"

  note "8. purge"
  check "apt-get purge rcd" purge
  check "purge: every container was stopped at removal (no shim, scope or container process)" \
    purge_stopped_all
  check "purge: no systemd unit left" purge_no_unit
  check "purge: rcd.service is not active" sh -c '! systemctl is-active -q rcd'
  check "purge: no group rcd" sh -c '! getent group rcd'
  check "purge: no state, socket or binaries; nothing mounted under /var/lib/rcd" purge_no_state
  check "purge: the default bridge is gone" sh -c '! ip link show rcd0'
  check "purge: rcd's nftables table is gone" sh -c "! nft list table inet $(rcd_table)"
  check "purge: the operator's unit files are kept" test -e "$U/web.toml"
  finish_phase poweroff
}

case $VM_PHASE in
  1) phase1 ;;
  2) phase2 ;;
  *) bail "no phase $VM_PHASE in this scenario" ;;
esac
