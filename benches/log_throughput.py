#!/usr/bin/env python3
"""Log throughput of rcd's shim against podman's conmon, side by side (issue 5).

Run through benches/logs.sh, which checks the prerequisites. Standard library only; root only.

Every container runs the same busybox rootfs and the same command: it says it is ready on a
FIFO, waits for the go (a line on another FIFO), then writes LINES lines of 100 bytes to
stdout as fast as `yes | head` can, then `END`, then tells the FIFO it is done and sleeps:

  rcd         rcd's shim, the unit's log without rotation (`[logs] max_size = "1G"`)
  rcd-rot     rcd's shim with the default rotation (10 MiB x 3 files: about ten rotations
              per 100 MB)
  rcd-journald  as rcd, with `[logs] driver = "journald"`: every line to the file and to a
              systemd-journald of the benchmark's own (started in a mount namespace with a
              tmpfs over /run, its rate limit off: RateLimitIntervalSec=0), which rcd reaches
              through /proc/PID/root
  podman      podman run -d with conmon's k8s-file log (CRI format, as rcd's), no size limit
  podman-rot  the same with `--log-opt max-size=10mb` (conmon starts the file over when full)

Measured per round, from the go (CLOCK_MONOTONIC, this process):
  logged      the moment the `END` record is in the log file (polled every 2 ms): the rate
              is LINES / logged
  produced    the moment the container's `head` had written its last line (it then writes
              `done` to a FIFO): shows whether the logger held the container back
  cpu         user + system time of the shim (rcd-shim) or conmon between the go and `END`,
              from /proc/PID/stat (fields 14 and 15)
  rss         the shim's or conmon's peak resident memory (VmHWM) at the end
  lines       the records in the log afterwards (without rotation), and for rcd the lines
              it counted as dropped (`rctl status`): every line is accounted for
  journal     (rcd-journald) the container's entries in the journal afterwards, the lines the
              shim counted as not given to journald, and journald's own CPU time
The producer alone (the same busybox `yes | head` into /dev/null, on the host) is the floor.

Rounds are interleaved (each round runs every scenario once, in an order rotated per round);
every container is removed before the next one starts; everything is cleaned up at the end.
"""

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402 - after the path it is found on
from benchlib import PODMAN_FLAGS, log, now, run  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MKROOTFS = os.path.join(REPO, "tests", "fixtures", "mkrootfs.sh")


# 99 bytes and the newline.
LINE = ("0123456789abcdefghijklmnopqrstuvwxyz" * 3)[:99]
WAIT = 60.0
SCENARIOS = ("rcd", "rcd-rot", "rcd-journald", "podman", "podman-rot")
JOURNALD = "/lib/systemd/systemd-journald"


def wait_until(cond, what, within=WAIT, every=0.01):
    benchlib.wait_until(cond, what, within, every)


def cpu_seconds(pid):
    """(user, system) CPU seconds of a process so far."""
    utime, stime, _, _ = benchlib.proc_cpu_ticks(pid)
    return utime / benchlib.CLK_TCK, stime / benchlib.CLK_TCK


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def ends_with_end(path):
    """True when the log file's last record is `END` (whatever writes it: CRI shape)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        tail = os.pread(fd, 64, max(0, size - 64))
        return tail.endswith(b" F END\n")
    finally:
        os.close(fd)


def count_records(paths):
    full = partial = 0
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p, "rb") as f:
            for line in f:
                parts = line.split(b" ", 3)
                if len(parts) >= 3 and parts[2] == b"F":
                    full += 1
                elif len(parts) >= 3 and parts[2] == b"P":
                    partial += 1
    return full, partial


class Fifo:
    """A FIFO in the shared directory, held open read-write by us (never EOF, never blocks a
    writer)."""

    def __init__(self, directory, name):
        self.path = os.path.join(directory, name)
        os.mkfifo(self.path, 0o666)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""

    def wait(self, tag, within=WAIT):
        """Arrival time of the line `tag`; other lines are skipped."""
        deadline = time.monotonic() + within
        poll = select.poll()
        poll.register(self.fd, select.POLLIN)
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.decode(errors="replace") == tag:
                    return now()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %r on %s" % (tag, self.path))
            if poll.poll(int(left * 1000) + 1):
                try:
                    self.buf += os.read(self.fd, 4096)
                except BlockingIOError:
                    pass

    def poll_line(self, tag):
        """Non-blocking: the arrival time of `tag` if it came (now), else None."""
        try:
            self.buf += os.read(self.fd, 4096)
        except BlockingIOError:
            pass
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.decode(errors="replace") == tag:
                return now()
        return None

    def write(self, text):
        os.write(self.fd, text.encode())


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin_dir
        self.work, self.tag = benchlib.work_dir(args, "rcd-logbench.")
        self.rootfs = os.path.join(self.work, "rootfs")
        self.ready = os.path.join(self.work, "ready")
        self.units = os.path.join(self.work, "units")
        self.staging = os.path.join(self.work, "staging")
        self.root = os.path.join(self.work, "rcd-root")
        self.socket = os.path.join(self.work, "rcd.sock")
        self.config = os.path.join(self.work, "rcd.toml")
        self.daemon = None
        self.journald = None
        self.podman_names = []
        self.units_up = []
        self.results = {}

    # ------------------------------------------------------------ setup

    def setup(self):
        log("work directory: %s" % self.work)
        for d in (self.ready, self.units, self.staging):
            os.makedirs(d)
        os.chmod(self.units, 0o755)
        os.chmod(self.ready, 0o777)
        log("building the busybox rootfs (tests/fixtures/mkrootfs.sh)")
        run(["sh", MKROOTFS, self.rootfs])
        self.go = Fifo(self.ready, "go.fifo")
        self.events = Fifo(self.ready, "events.fifo")
        if "rcd-journald" in self.args.scenarios:
            self.start_journald()
        with open(self.config, "w") as f:
            # No network is used; a bridge of this run's own keeps clear of any other.
            f.write('[network]\nbridge = "rcdlb%s"\nsubnet = "10.199.77.0/24"\n'
                    % self.tag[:6])
            if self.journald is not None:
                f.write('[logs]\njournal_socket = "%s"\n' % self.journal_socket())
        env = dict(os.environ)
        env.setdefault("RCD_LOG", "warn")
        self.daemon_log = open(os.path.join(self.work, "rcd.log"), "ab")
        self.daemon = subprocess.Popen(
            [os.path.join(self.bin, "rcd"), "--units-dir", self.units, "--root", self.root,
             "--socket", self.socket, "--shim", os.path.join(self.bin, "rcd-shim"),
             "--runtime", "runc", "--config", self.config],
            stdin=subprocess.DEVNULL, stdout=self.daemon_log, stderr=self.daemon_log, env=env)
        wait_until(lambda: self.rctl(["list"], check=False).returncode == 0, "rcd to answer",
                   within=10)
        log("rcd running (pid %d)" % self.daemon.pid)

    def start_journald(self):
        """A systemd-journald of the benchmark's own: volatile, without rate limit."""
        script = ("set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal "
                  "/run/systemd/journald.conf.d; "
                  "printf '[Journal]\\nStorage=volatile\\nRateLimitIntervalSec=0\\n' "
                  "> /run/systemd/journald.conf.d/bench.conf; "
                  "if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi; "
                  "exec " + JOURNALD)
        self.journald = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: os.path.exists(self.journal_socket()), "journald's socket",
                   within=10)
        log("systemd-journald running (pid %d)" % self.journald.pid)

    def journal_socket(self):
        return "/proc/%d/root/run/systemd/journal/socket" % self.journald.pid

    def journal_entries(self, name):
        out = run(["nsenter", "-t", str(self.journald.pid), "-m", "journalctl",
                   "--no-pager", "-o", "cat", "CONTAINER_NAME=" + name]).stdout
        return out.count(b"\n")

    def rctl(self, args, check=True):
        return run([os.path.join(self.bin, "rctl"), "--socket", self.socket] + args,
                   check=check)

    def status(self, name):
        for s in json.loads(self.rctl(["status", "--output", "json"]).stdout or b"[]"):
            if s.get("name") == name:
                return s
        return None

    def script(self, tag):
        n = self.args.lines
        return ("echo ready-{t} > /ready/events.fifo; read x < /ready/go.fifo; "
                "yes {line} | head -n {n}; echo done-{t} > /ready/events.fifo; echo END; "
                "exec sleep 3600").format(t=tag, line=LINE, n=n)

    # ------------------------------------------------------------ one round of each

    def measure(self, tag, pid, paths):
        """Waits for the container's ready, gives the go, times until END is logged."""
        self.events.wait("ready-" + tag)
        cpu0 = cpu_seconds(pid)
        t0 = now()
        self.go.write("go\n")
        produced = None
        deadline = time.monotonic() + WAIT
        while True:
            if produced is None:
                produced = self.events.poll_line("done-" + tag)
            if ends_with_end(paths[0]):
                t1 = now()
                break
            if time.monotonic() > deadline:
                raise TimeoutError("END not logged in %s (dropped?)" % paths[0])
            time.sleep(0.002)
        cpu1 = cpu_seconds(pid)
        if produced is None:
            produced = self.events.wait("done-" + tag)
        return {
            "logged_s": (t1 - t0) / 1e9,
            "produced_s": (produced - t0) / 1e9,
            "cpu_s": (cpu1[0] + cpu1[1]) - (cpu0[0] + cpu0[1]),
            "user_s": cpu1[0] - cpu0[0],
            "sys_s": cpu1[1] - cpu0[1],
            "rss_kib": peak_rss_kib(pid),
        }

    def shim_pid(self, container_id):
        for e in os.listdir("/proc"):
            if not e.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % e, "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"rcd-shim") and container_id.encode() in args:
                return int(e)
        raise RuntimeError("no shim for %s" % container_id)

    def sc_rcd(self, i, rotate, journald=False):
        name = "lb-%s%d" % ("r" if rotate else "j" if journald else "n", i)
        limits = "" if rotate else '\n[logs]\nmax_size = "1G"\nmax_files = 1\n'
        if journald:
            limits += 'driver = "journald"\n'
        text = ('[container]\nrootfs = {rootfs}\ncommand = ["sh", "-c", {script}]\n'
                'stop_timeout = "0s"\n\n[[mount]]\nsource = {ready}\ntarget = "/ready"\n'
                '\n[network]\nmode = "none"\n{limits}').format(
                    rootfs=json.dumps(self.rootfs), script=json.dumps(self.script(name)),
                    ready=json.dumps(self.ready), limits=limits)
        tmp = os.path.join(self.staging, name + ".toml")
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, os.path.join(self.units, name + ".toml"))
        self.units_up.append(name)
        st = {}

        def running():
            s = self.status(name)
            st["s"] = s
            return s is not None and s.get("state") == "running"
        wait_until(running, "unit %s running" % name)
        pid = self.shim_pid(st["s"]["container_id"])
        log_path = os.path.join(self.root, "logs", name + ".log")
        jcpu0 = cpu_seconds(self.journald.pid) if journald else None
        r = self.measure(name, pid, [log_path])
        # The shim writes its drop count at most five times a second.
        time.sleep(0.5)
        r["dropped"] = (self.status(name) or {}).get("logs_dropped", 0)
        if not rotate:
            r["records"], r["partial"] = count_records([log_path])
        if journald:
            # The shim's sender may still be at it: wait until the journal stops growing.
            last, seen = -1, self.journal_entries(name)
            while seen != last:
                time.sleep(1)
                last, seen = seen, self.journal_entries(name)
            jcpu1 = cpu_seconds(self.journald.pid)
            r["journal"] = seen
            r["journald_cpu_s"] = (jcpu1[0] + jcpu1[1]) - (jcpu0[0] + jcpu0[1])
            counts = os.path.join(self.root, "containers", st["s"]["container_id"],
                                  "log-dropped.json")
            try:
                with open(counts) as f:
                    r["journal_dropped"] = json.load(f).get("journal", 0)
            except OSError:
                r["journal_dropped"] = 0
        self.remove_unit(name)
        return r

    def remove_unit(self, name):
        os.unlink(os.path.join(self.units, name + ".toml"))
        self.units_up.remove(name)
        wait_until(lambda: self.status(name) is None, "rcd to remove %s" % name)
        self.rctl(["logs", "--prune"])

    def sc_podman(self, i, rotate):
        name = "rcdlb-%s-%s%d" % (self.tag, "r" if rotate else "n", i)
        opts = ["--log-opt", "max-size=10mb"] if rotate else []
        cmd = (["podman", "run", "-d", "--name", name, "--network", "none",
                "--log-driver", "k8s-file"] + opts + PODMAN_FLAGS +
               ["-v", "%s:/ready" % self.ready, "--rootfs", self.rootfs + ":O",
                "sh", "-c", self.script(name)])
        self.podman_names.append(name)
        run(cmd)
        fmt = "{{.State.ConmonPid}} {{.HostConfig.LogConfig.Path}}"
        out = run(["podman", "inspect", "--format", fmt, name]).stdout.decode().split()
        pid, path = int(out[0]), out[1]
        r = self.measure(name, pid, [path])
        r["dropped"] = 0
        if not rotate:
            r["records"], r["partial"] = count_records([path])
        run(["podman", "rm", "-f", "-t", "0", name])
        self.podman_names.remove(name)
        return r

    def floor(self):
        """The producer alone, on the host, into /dev/null."""
        bb = os.path.join(self.rootfs, "bin", "busybox")
        t0 = now()
        run([bb, "sh", "-c", "%s yes %s | %s head -n %d > /dev/null"
             % (bb, LINE, bb, self.args.lines)])
        return (now() - t0) / 1e9

    def run(self):
        keys = self.args.scenarios
        floors = []
        for i in range(self.args.rounds):
            order = keys[i % len(keys):] + keys[:i % len(keys)]
            for k in order:
                if k == "rcd":
                    r = self.sc_rcd(i, False)
                elif k == "rcd-rot":
                    r = self.sc_rcd(i, True)
                elif k == "rcd-journald":
                    r = self.sc_rcd(i, False, journald=True)
                elif k == "podman":
                    r = self.sc_podman(i, False)
                else:
                    r = self.sc_podman(i, True)
                self.results.setdefault(k, []).append(r)
                log("round %d %-10s %7.0f lines/s  logged %.3fs  produced %.3fs  cpu %.2fs "
                    "(user %.2f, sys %.2f)  rss %d KiB%s" % (
                        i, k, self.args.lines / r["logged_s"], r["logged_s"],
                        r["produced_s"], r["cpu_s"], r["user_s"], r["sys_s"], r["rss_kib"],
                        "  records %d (+%d partial) dropped %d" % (
                            r["records"], r["partial"], r["dropped"])
                        if "records" in r else "  dropped %d" % r["dropped"]) +
                    ("  journal %d entries, %d not sent, journald cpu %.2fs" % (
                        r["journal"], r["journal_dropped"], r["journald_cpu_s"])
                     if "journal" in r else ""))
            floors.append(self.floor())
        self.report(floors)

    def report(self, floors):
        n = self.args.lines
        print("lines per round: %d of 100 bytes (%.0f MB); rounds: %d; medians"
              % (n, n * 100 / 1e6, self.args.rounds))
        print("%-11s %12s %9s %10s %9s %6s %6s %12s %9s %s" % (
            "scenario", "lines/s", "logged s", "produced s", "cpu s", "user", "sys",
            "cpu us/line", "rss KiB", "records/dropped"))
        for k in self.args.scenarios:
            rs = self.results.get(k, [])
            if not rs:
                continue
            med = lambda key: statistics.median(r[key] for r in rs)
            acc = ", ".join("%s/%d" % (r.get("records", "-"), r["dropped"]) for r in rs)
            print("%-11s %12.0f %9.3f %10.3f %9.2f %6.2f %6.2f %12.3f %9d %s" % (
                k, n / med("logged_s"), med("logged_s"), med("produced_s"), med("cpu_s"),
                med("user_s"), med("sys_s"), med("cpu_s") / n * 1e6, med("rss_kib"), acc))
        js = self.results.get("rcd-journald", [])
        if js:
            print("rcd-journald: journal entries per round %s (median %d), not sent %s; "
                  "journald CPU median %.2f s" % (
                      ", ".join(str(r["journal"]) for r in js),
                      statistics.median(r["journal"] for r in js),
                      ", ".join(str(r["journal_dropped"]) for r in js),
                      statistics.median(r["journald_cpu_s"] for r in js)))
            base = self.results.get("rcd", [])
            if base:
                ratio = (statistics.median(r["logged_s"] for r in base) /
                         statistics.median(r["logged_s"] for r in js))
                print("rcd-journald / rcd lines/s: %.2f" % ratio)
        print("%-11s %12.0f %9.3f   (the producer alone, host, into /dev/null)" % (
            "floor", n / statistics.median(floors), statistics.median(floors)))
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump({"lines": n, "results": self.results, "floor_s": floors}, f,
                          indent=2)

    def cleanup(self):
        for name in list(self.podman_names):
            run(["podman", "rm", "-f", "-t", "0", name], check=False)
        for name in list(self.units_up):
            try:
                self.remove_unit(name)
            except Exception as e:  # noqa: BLE001 - best effort at the end
                log("cleanup of %s: %s" % (name, e))
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        if self.journald is not None:
            self.journald.kill()
            self.journald.wait()
        run(["ip", "link", "del", "rcdlb" + self.tag[:6]], check=False)
        if not self.args.keep:
            # rcd's containers are gone (units removed); its directories may hold mounts only
            # while a container runs.
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log("kept %s" % self.work)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--lines", type=int, default=1000000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--work-dir", default=os.environ.get("RCD_BENCH_DIR"))
    p.add_argument("--json")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error("unknown scenario %r (known: %s)" % (s, ", ".join(SCENARIOS)))
    b = Bench(args)
    try:
        b.setup()
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
