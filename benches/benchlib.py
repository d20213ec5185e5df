"""What the benchmark scripts share: logging, running commands, bounded waits, CPU time from
/proc, podman's flags on this kind of machine, and a main that always cleans up.
Standard library only."""

import os
import signal
import subprocess
import sys
import time

# podman needs these on this kind of machine (see docs/PERFORMANCE.md).
PODMAN_FLAGS = [
    "--runtime", "runc",
    "--ulimit", "nofile=1024:1024",
    "--ulimit", "nproc=1024:1024",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def now():
    return time.monotonic_ns()


def run(cmd, check=True, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("capture_output", True)
    p = subprocess.run(cmd, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                               p.stderr.decode(errors="replace").strip()))
    return p


def wait_until(cond, what, within=30.0, every=0.01):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise TimeoutError("timed out after %ss waiting for %s" % (within, what))


def proc_cpu_ticks(pid):
    """(utime, stime, cutime, cstime) of a process, in clock ticks (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 to 17 of the line; counted from the state (field 3) here.
    return tuple(int(x) for x in fields[11:15])


def run_cleaning_up(body, cleanup):
    """Runs `body()`, then `cleanup()` whatever happens; SIGTERM and SIGHUP clean up like
    Ctrl-C. Returns the exit code."""
    def interrupt(*_):
        raise KeyboardInterrupt()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    try:
        body()
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        cleanup()
