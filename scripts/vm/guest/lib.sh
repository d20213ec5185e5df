# Helpers for the VM scenario's checks, on the test disk as /vm/lib.sh (POSIX sh). Source it:
#   . /vm/lib.sh
#
#   check NAME CMD [ARG...]       run CMD (a command or a shell function; stdout and stderr
#                                 captured) and append to /vm/out/results.txt
#                                   ok - NAME (0.12s)
#                                   not ok - NAME (3.40s): <its output, one line, cut at 400 chars>
#                                 (the full output of a failure goes to /vm/out/failures.txt).
#                                 Returns CMD's status, so `check ... || bail ...` stops a phase.
#   wait_until SECONDS DESC CMD [ARG...]
#                                 run CMD every second until it succeeds (0) or SECONDS pass
#                                 (1, printing DESC and CMD's last output): bounded polling, for
#                                 use inside check: `check "unit runs" wait_until 60 "..." f`
#   note TEXT                     append "# TEXT" to results.txt (context, not a check)
#   bail TEXT                     record "not ok - TEXT" and end the scenario with status 1 (the
#                                 runner then saves the journal and powers off)
#   finish_phase reboot|poweroff  end this phase: the runner records it, saves this boot's
#                                 journal to /vm/out/journal-bootN.txt, syncs, and reboots (the
#                                 next boot runs phase N+1) or powers off (QEMU exits)
#
# The runner exports VM_DIR (/vm), VM_OUT (/vm/out), VM_PHASE and VM_BOOT.
VM_DIR=${VM_DIR:-/vm}
VM_OUT=${VM_OUT:-$VM_DIR/out}
VM_PHASE=${VM_PHASE:-${1:-1}}
VM_RESULTS=$VM_OUT/results.txt
mkdir -p "$VM_OUT"

vm_ms() { echo $(($(date +%s%N) / 1000000)); }
vm_secs() { # MS -> "1.234s"
  printf '%d.%02ds' $(($1 / 1000)) $((($1 % 1000) / 10))
}

note() {
  echo "# $*" >>"$VM_RESULTS"
  echo "# $*"
  sync
}

check() {
  _name=$1
  shift
  _t0=$(vm_ms)
  _out=$("$@" 2>&1)
  _rc=$?
  _took=$(vm_secs $(($(vm_ms) - _t0)))
  if [ $_rc -eq 0 ]; then
    _line="ok - $_name ($_took)"
  else
    _one=$(printf '%s' "$_out" | tr '\n' '|' | sed 's/|/ | /g' | cut -c1-400)
    _line="not ok - $_name ($_took): exit $_rc: $_one"
    {
      echo "=== phase $VM_PHASE: not ok - $_name (exit $_rc, $_took): $*"
      printf '%s\n' "$_out"
    } >>"$VM_OUT/failures.txt"
  fi
  echo "$_line" >>"$VM_RESULTS"
  echo "$_line"
  sync
  return $_rc
}

wait_until() {
  _limit=$1
  _desc=$2
  shift 2
  _deadline=$(($(vm_ms) + _limit * 1000))
  while :; do
    if _wout=$("$@" 2>&1); then
      return 0
    fi
    [ "$(vm_ms)" -lt "$_deadline" ] || break
    sleep 1
  done
  echo "timed out after ${_limit}s waiting for: $_desc"
  printf '%s\n' "$_wout"
  return 1
}

bail() {
  echo "not ok - $*" >>"$VM_RESULTS"
  echo "not ok - $*"
  sync
  exit 1
}

finish_phase() {
  note "phase $VM_PHASE: finish_phase $1"
  /usr/local/libexec/rcd-vm-runner finish "$1"
  exit 0
}

note "phase $VM_PHASE (boot ${VM_BOOT:-?}, boot id $(cat /proc/sys/kernel/random/boot_id))"
