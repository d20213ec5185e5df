"""What the benchmark scripts share: logging, running commands, bounded waits, CPU time and
memory from /proc, mounts, the FIFO the containers signal on, podman's flags on this kind of
machine, and a main that always cleans up.
Standard library only."""

import ctypes
import hashlib
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
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


def work_dir(args, prefix):
    """A fresh work directory under --work-dir (default /var/tmp: a disk, as /var/lib/rcd is),
    readable by the containers' users; returns it and a short lowercase tag unique to it."""
    base = args.work_dir or "/var/tmp"
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix=prefix, dir=base)
    os.chmod(work, 0o755)
    return work, os.path.basename(work).split(".", 1)[1].lower()


def med(xs):
    """A sample as the benchmarks print it: "median (min-max)", whole milliseconds."""
    return "%.0f (%.0f-%.0f)" % (statistics.median(xs), min(xs), max(xs))


def rcd_shutdown(bin_dir, sock, proc):
    """Stops an rcd daemon with its containers (`rctl shutdown --stop-containers`), killing it
    if it has not ended within two minutes."""
    subprocess.run([os.path.join(bin_dir, "rctl"), "--socket", sock, "shutdown",
                    "--stop-containers"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()


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


def system_cpu_ticks():
    """(busy, nice) CPU time of the whole machine since boot, in clock ticks (/proc/stat):
    busy = user + system + irq + softirq (not nice: the machine's other, niced work stays out),
    nice = nice."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return user + system + irq + softirq, nice


def memory_kb(pid):
    """{Rss, Pss, Uss} of a process in kB, from /proc/PID/smaps_rollup (Uss: its private
    pages, Private_Clean + Private_Dirty)."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                out[parts[0][:-1]] = int(parts[1])
    return {"Rss": out["Rss"], "Pss": out["Pss"],
            "Uss": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)}


def pidfds(pids):
    """pidfds of the live processes among `pids` (those already gone are left out)."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass
    return fds


def wait_exited(fds, within=30.0):
    """Waits until every process behind `fds` has exited (pidfds poll readable on exit),
    closing them; the processes still alive at the deadline raise TimeoutError."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    left = set(fds)
    deadline = time.monotonic() + within
    try:
        while left:
            ms = int((deadline - time.monotonic()) * 1000)
            if ms <= 0:
                raise TimeoutError("%d processes still alive after %ss" % (len(left), within))
            for fd, _ in p.poll(min(ms, 1000)):
                left.discard(fd)
                p.unregister(fd)
    finally:
        for fd in fds:
            os.close(fd)


def make_bundle(bundles, rootfs, template, cid, script, cgroup_parent):
    """A runc bundle like rcd's, in `bundles`/`cid`: a fresh overlay over `rootfs` at
    rootfs/, and `template` (the config.json rcd generated for a unit of the same shape) with
    only the command, hostname, cgroup (under `cgroup_parent`) and `rcd.unit` annotation
    changed. Returns its path."""
    b = os.path.join(bundles, cid)
    upper, work, merged = (os.path.join(b, x) for x in ("upper", "work", "rootfs"))
    for d in (upper, work, merged):
        os.makedirs(d)
    mount_overlay(rootfs, upper, work, merged)
    spec = json.loads(json.dumps(template))
    spec["root"]["path"] = merged
    spec["process"]["args"] = ["sh", "-c", script]
    spec["hostname"] = cid
    spec["linux"]["cgroupsPath"] = "/%s/%s" % (cgroup_parent, cid)
    spec.setdefault("annotations", {})["rcd.unit"] = cid
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return b


_LIBC = ctypes.CDLL(None, use_errno=True)


def mount_overlay(lower, upper, work, merged):
    """mount(2) of an overlay, as rcd does it (no mount(8) process in between)."""
    data = "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, upper, work)
    if _LIBC.mount(b"overlay", merged.encode(), b"overlay", 0, data.encode()) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "mount overlay on %s: %s" % (merged, os.strerror(e)))


def drop_bundle(bundles, cid):
    """Unmounts and deletes bundle `cid` (after its container is deleted)."""
    b = os.path.join(bundles, cid)
    for m in reversed(mounts_under(b)):
        run(["umount", m], check=False)
    shutil.rmtree(b, ignore_errors=True)


def mounts_under(prefix):
    """The mount points at or under `prefix` (this process's view), in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split(" ")[4]
            mp = mp.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
                .replace("\\134", "\\")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return out


def check_subnet(subnet, what, bridge=None):
    """Refuses a subnet that overlaps a route the host already has (another bridge's), but
    for a route on `bridge` (ours, left by an earlier run)."""
    net = ipaddress.ip_network(subnet)
    out = run(["ip", "-4", "route", "show"]).stdout.decode()
    for line in out.splitlines():
        words = line.split()
        if not words or (bridge is not None and "dev %s " % bridge in line + " "):
            continue
        try:
            other = ipaddress.ip_network(words[0], strict=False)
        except ValueError:
            continue
        if other.prefixlen > 0 and net.overlaps(other):
            raise RuntimeError("%s subnet %s overlaps the host's route %r; pick another (see "
                               "the script's --help)" % (what, subnet, line))


DURATION = re.compile(r"^([0-9.]+)(ns|µs|us|ms|s)$")


def duration_ms(text):
    """Rust's Debug of a Duration (`12.3456ms`, `950.1µs`, `1.2s`) in ms."""
    m = DURATION.match(text)
    if not m:
        return None
    scale = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return float(m.group(1)) * scale


def _lines_with(path, needle):
    try:
        with open(path, errors="replace") as f:
            return [line for line in f if needle in line]
    except OSError:
        return []


NATIVE_ATTACH = re.compile(r"native attach.*container=(\S+).*wire_ms=([0-9.]+) "
                           r"total_ms=([0-9.]+)")


def native_attach_times(log_path):
    """[(container id, wire_ms, total_ms)] from an rcd log's native driver debug lines
    (`native attach container=ID ... wire_ms=W total_ms=T`, target rcd::network::bridge):
    wire is the lease and the netlink steps, total adds the nftables transaction."""
    out = []
    for line in _lines_with(log_path, "native attach"):
        m = NATIVE_ATTACH.search(line)
        if m:
            out.append((m.group(1), float(m.group(2)), float(m.group(3))))
    return out


def cni_plugin_times(log_path, command):
    """[(container id, plugin, ms)] of the CNI `command` (ADD, DEL) calls in an rcd log
    (`cni plugin network=N plugin=P command="ADD" container=ID elapsed=D`, target
    rcd::network::cni)."""
    line_re = re.compile(r'cni plugin .*plugin=(\S+) command="?%s"? container=(\S+) '
                         r'elapsed=(\S+)' % command)
    out = []
    for line in _lines_with(log_path, "cni plugin"):
        m = line_re.search(line)
        ms = m and duration_ms(m.group(3))
        if m and ms is not None:
            out.append((m.group(2), m.group(1), ms))
    return out


def rcd_root_tag(root):
    """The tag rcd derives from its --root (`config::root_tag`): in container ids, cgroup
    names, its nftables table (`inet rcd_TAG`) and its veths (`rvTAG...`)."""
    return hashlib.sha256(root.encode()).hexdigest()[:6]


def iptables_in_use():
    """The iptables binaries whose filter table exists on this host, as rcd's
    network/bridge/coexist.rs finds them (neither table is made by asking)."""
    out = []
    try:
        with open("/proc/net/ip_tables_names") as f:
            if "filter" in f.read().split():
                out.append("iptables-legacy")
    except OSError:
        pass
    if run(["nft", "list", "chain", "ip", "filter", "FORWARD"], check=False).returncode == 0:
        out.append("iptables-nft")
    return [b for b in out if shutil.which(b)]


def drop_bridge_network(bridge, root=None):
    """Takes down what a bridge network of one rcd daemon (`root`) left on the host: its
    native driver's veths (`rvTAG*`) and nftables table (`inet rcd_TAG`), the iptables
    FORWARD rules rcd (network/bridge/coexist.rs) or the CNI firewall plugin put there for
    `bridge`, and the bridge itself. What is not there is fine. Returns what it removed."""
    removed = []
    if root is not None:
        tag = rcd_root_tag(root)
        for name in os.listdir("/sys/class/net"):
            if name.startswith("rv" + tag):
                run(["ip", "link", "del", name], check=False)
                removed.append("veth " + name)
        table = "rcd_" + tag
        if run(["nft", "list", "table", "inet", table], check=False).returncode == 0:
            run(["nft", "delete", "table", "inet", table], check=False)
            removed.append("nft table inet " + table)
    for binary in iptables_in_use():
        for rule in (["-i", bridge, "-j", "ACCEPT"],
                     ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT",
                      "-j", "ACCEPT"]):
            for _ in range(10):  # bounded: one copy per daemon that ever ran on this bridge
                if run([binary, "-w", "-D", "FORWARD"] + rule, check=False).returncode != 0:
                    break
                removed.append("%s FORWARD %s" % (binary, " ".join(rule)))
    if os.path.exists(os.path.join("/sys/class/net", bridge)):
        run(["ip", "link", "del", bridge], check=False)
        removed.append("bridge " + bridge)
    return removed


class Fifo:
    """A FIFO in the shared directory, held open read-write by us (never EOF, never blocks a
    writer), read line by line with the time each line arrived."""

    def __init__(self, directory, name, mode=0o600):
        self.path = os.path.join(directory, name)
        os.mkfifo(self.path, mode)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN)
        self.buf = b""
        self.lines = []  # (line, arrival ns)

    def _fill(self, timeout_ms):
        """Reads what is there (waiting up to `timeout_ms` for something); False if nothing."""
        if not self.poll.poll(timeout_ms):
            return False
        t = now()
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.lines.append((line.decode(errors="replace"), t))
        return True

    def wait(self, tag, within=30.0):
        """Arrival time of the line `tag`; lines before it are dropped."""
        deadline = time.monotonic() + within
        while True:
            while self.lines:
                line, t = self.lines.pop(0)
                if line == tag:
                    return t
                log("  (unexpected line %r on %s)" % (line, os.path.basename(self.path)))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %r on %s within %ss" % (tag, self.path, within))
            self._fill(int(left * 1000) + 1)

    def collect(self, tags, within=30.0):
        """{tag: arrival ns} once every line of `tags` has arrived (in any order; other lines
        are dropped)."""
        want = set(tags)
        got = {}
        deadline = time.monotonic() + within
        while True:
            for line, t in self.lines:
                if line in want and line not in got:
                    got[line] = t
            self.lines = []
            if len(got) == len(want):
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%d of %d lines on %s within %ss" % (
                    len(got), len(want), self.path, within))
            self._fill(int(left * 1000) + 1)

    def drain(self):
        """Every line that has arrived so far, (line, arrival ns), without waiting."""
        for _ in range(10000):  # bounded: a pipe holds 64 KiB, one read takes up to that
            if not self._fill(0):
                break
        out, self.lines = self.lines, []
        return out

    def write(self, text):
        os.write(self.fd, text.encode())

    def close(self):
        os.close(self.fd)


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
