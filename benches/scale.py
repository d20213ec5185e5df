#!/usr/bin/env python3
"""rcd at scale against runc (the floor) and podman (the peer), side by side (issue 7).

Run through benches/scale.sh, which checks and installs the prerequisites. Standard library
only (and hyperfine for `idle`); root only. Every container runs the same busybox rootfs (the
read-only lower layer of an overlay), with no network (rcd `[network] mode = "none"`, podman
`--network none`; both still give each container an empty network namespace) unless said
otherwise, and signals that it runs by writing a line to a FIFO in a host directory
bind-mounted at /ready, which this process holds open and timestamps (CLOCK_MONOTONIC) as
lines arrive.

  boot    (scenarios 1 and 2, in the same rounds) COUNT containers of `sleep 3600`:
          rcd     a new daemon (a new --root) started on a units directory holding COUNT unit
                  files -> the COUNT-th container's line; then all unit files deleted at once
                  (stop_timeout 0s) -> every container process and shim exited, no mount left
                  under the root's containers/, no instance directory, no pinned netns, and
                  `rctl list` empty
          runc    COUNT `runc run -d` on prepared bundles (rcd's own config.json), PARALLEL at
                  a time -> the COUNT-th line; then `runc kill ID KILL`, `runc delete --force
                  ID`, umount and removal of the bundle's writable layer, PARALLEL at a time ->
                  every container process exited
          runc-prep the same with each bundle made on the clock, as rcd makes its own:
                  directories, the overlay mount (mount(2)) and config.json, then `runc run -d`
          podman  COUNT `podman run -d`, PARALLEL at a time -> the COUNT-th line; then one
                  `podman rm -f -t 0 NAME...` -> it returned, every container process and
                  conmon exited, no mount of those containers left
          rcd-bridge as rcd, with units that have no [network] section (the default: bridge
                  mode on the default network) on a daemon whose default network has the
                  native driver, a bridge and subnet of this run's own (--subnet)
          rcd-cni as rcd-bridge, with `[network] driver = "cni"` in the daemon's config (the
                  CNI plugins) and a bridge and subnet of its own (--cni-subnet)
          For every rcd: the daemon's CPU time (own, and its reaped children's: nft,
          iptables, the CNI plugins) from its exec to the COUNT-th line and over the removal
          (/proc/PID/stat), and each network setup's time from its debug log (`native
          attach` total_ms, or the sum of the `cni plugin` ADD calls). After each bridge
          daemon, what its network left (bridge, nftables table `inet rcd_TAG`, the FORWARD
          rules for its bridge) is deleted: every round boots as after a reboot.
          Rounds rotate the order; one warm-up round is not counted; each round first reads
          the machine's other (non-nice) load over 3 s. With --base-bin-dir DIR (or
          $RCD_BASE_BIN_DIR), another build of rcd runs in the same rounds, as a twin of
          each rcd tool chosen: `rcd-base`, `rcd-bridge-base`, `rcd-cni-base`.
  idle    (scenarios 4 and 5) rcd with COUNT running units: each shim's PSS/RSS/USS
          (smaps_rollup), the daemon's RSS and PSS, its CPU time (utime+stime, and its reaped
          children's) over SECONDS idle, and hyperfine of `rctl status` and `rctl list`; then
          TOTAL-COUNT more units with `autostart = false` (loaded, not started): RSS, CPU over
          SECONDS idle, hyperfine again. Then podman with COUNT `podman run -d` containers:
          each conmon's PSS/RSS/USS, the conmons' CPU over SECONDS, hyperfine of `podman ps`
          and `podman ps -a`; then COUNT runc containers and hyperfine of `runc list` (the
          floor: no monitor process at all).
  storm   (scenario 6) COUNT rcd units `echo s > /ready/storm.fifo; exit 1` under `always`
          with the default backoff, dropped at once into the units directory of a running
          daemon; over WINDOWS consecutive windows of SECONDS: the daemon's CPU time, the
          machine's non-nice CPU time, the container starts (lines on the FIFO), and the wall
          time of `rctl status` run once a second. Then PODMAN_COUNT podman containers with
          `--restart always` of the same command, the same figures over the same windows (with
          `podman ps` timed once a second).

Scenario 3 (restart reaction) is benches/start.sh with scenarios b,b2,d,d-floor,d-podman.

rcd's runtime is `runc`, or $RCD_BENCH_RUNTIME (a wrapper that logs its arguments, say, to
count the runtime calls rcd makes).

Everything started is removed at the end, also on error, Ctrl-C or SIGTERM: unit files
deleted and the daemons stopped, runc containers deleted, podman containers removed, overlays
unmounted, the cgroups this run made removed, the bridge networks' leftovers deleted, the
work directory deleted. Every wait is bounded. Only rcd-bridge and rcd-cni touch the host's
network (their own bridges, subnets and rcd's own nftables tables); no traffic is sent.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MKROOTFS = os.path.join(REPO, "tests", "fixtures", "mkrootfs.sh")
sys.path.insert(0, HERE)
import benchlib  # noqa: E402 - after the path it is found on
from benchlib import PODMAN_FLAGS, Fifo, log, mounts_under, now, run  # noqa: E402

WAIT = 60.0  # seconds: bound on a single wait
FLEET_WAIT = 300.0  # seconds: bound on COUNT containers starting or going
SLEEPER = "echo %s > /ready/up.fifo; exec sleep 3600"
CRASHER = "echo %s > /ready/storm.fifo; exit 1"


def ms(ns):
    return ns / 1e6


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs, fmt="%.1f"):
    if not xs:
        return "-"
    return (fmt + " (" + fmt + "-" + fmt + ")") % (med(xs), min(xs), max(xs))


def cpu_ms(pid):
    """(own, children) CPU time of `pid` in ms: utime+stime, cutime+cstime."""
    u, s, cu, cs = benchlib.proc_cpu_ticks(pid)
    k = 1000.0 / benchlib.CLK_TCK
    return (u + s) * k, (cu + cs) * k


def rss_kb(pid):
    """VmRSS and VmHWM of `pid` in kB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def parallel(n, fn, items):
    """fn(item) for every item, n at a time; raises the first error."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, items))


class Rcd:
    """One rcd daemon with its own units directory, --root and socket (a new root: a first
    boot, nothing to re-adopt)."""

    def __init__(self, bench, label, bin_dir=None, network=None):
        """`network` None: units without a network (`mode = "none"`); else the daemon's
        default network, {"driver": "native" | "cni", "bridge": NAME, "subnet": CIDR}, and
        units with no [network] section (the default: bridge mode on that network)."""
        self.bench = bench
        self.label = label
        self.bin = bin_dir or bench.bin
        self.network = network
        w = bench.work
        self.units = os.path.join(w, "units-" + label)
        self.staging = os.path.join(w, "staging-" + label)
        self.root = os.path.join(w, "root-" + label)
        self.socket = os.path.join(w, "rcd-%s.sock" % label)
        self.log_path = os.path.join(w, "rcd-%s.log" % label)
        self.config = bench.config
        for d in (self.units, self.staging):
            os.makedirs(d)
            os.chmod(d, 0o755)
        if network is not None:
            nets = os.path.join(w, "networks-" + label)
            os.makedirs(nets)
            self.config = os.path.join(w, "rcd-%s.toml" % label)
            with open(self.config, "w") as f:
                f.write('[network]\ndriver = %s\nbridge = %s\nsubnet = %s\nconfig_dir = %s\n'
                        % tuple(json.dumps(x) for x in (network["driver"], network["bridge"],
                                                        network["subnet"], nets)))
        self.proc = None
        self.log = None

    def unit_text(self, script, restart=None, autostart=True):
        text = ('[container]\nrootfs = {rootfs}\ncommand = ["sh", "-c", {script}]\n'
                'stop_timeout = "0s"\n\n[[mount]]\nsource = {ready}\ntarget = "/ready"\n'
                .format(rootfs=json.dumps(self.bench.rootfs), script=json.dumps(script),
                        ready=json.dumps(self.bench.ready)))
        if self.network is None:
            text += '\n[network]\nmode = "none"\n'
        if restart:
            text += '\n[restart]\npolicy = "%s"\n' % restart
        if not autostart:
            text += "\n[install]\nautostart = false\n"
        return text

    def write(self, name, text, staged=False):
        """Writes unit `name` into the units directory, or beside it (staged) for a rename
        later."""
        path = os.path.join(self.staging if staged else self.units, name + ".toml")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)

    def move_in(self, names):
        for n in names:
            os.rename(os.path.join(self.staging, n + ".toml"),
                      os.path.join(self.units, n + ".toml"))

    def start(self):
        """Execs the daemon; returns the time just before."""
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        # The network setup's debug lines (one or a few per container) time each attach.
        env.setdefault("RCD_LOG", "warn,rcd::network::bridge=debug,rcd::network::cni=debug")
        cmd = [os.path.join(self.bin, "rcd"), "--units-dir", self.units,
               "--root", self.root, "--socket", self.socket,
               "--shim", os.path.join(self.bin, "rcd-shim"),
               "--runtime", os.environ.get("RCD_BENCH_RUNTIME", "runc"),
               "--config", self.config]
        self.bench.commands["rcd"] = " ".join(cmd)
        t0 = now()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=env)
        return t0

    def rctl(self, *args, check=True):
        return run([os.path.join(self.bin, "rctl"), "--socket", self.socket] + list(args),
                   check=check)

    def answering(self):
        return os.path.exists(self.socket) and self.rctl("list", check=False).returncode == 0

    def statuses(self):
        return json.loads(self.rctl("list", "--output", "json").stdout or b"[]")

    def tag(self):
        """The tag rcd derives from its root (`config::root_tag`), in container ids and
        cgroup names."""
        return benchlib.rcd_root_tag(self.root)

    def shim_pids(self):
        """Pids of this daemon's shims (`rcd-shim ... --id rcd-TAG-...`)."""
        prefix = ("rcd-%s-" % self.tag()).encode()
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"rcd-shim") and b"--id" in args:
                i = args.index(b"--id")
                if i + 1 < len(args) and args[i + 1].startswith(prefix):
                    out.append(int(d))
        return out

    def taken_down(self):
        """Nothing of a container left: no mount under containers/, no instance directory,
        no pinned netns, no veth of the native driver (`rvTAG...`), and no unit listed."""
        containers = os.path.join(self.root, "containers")
        netns = os.path.join(self.root, "netns")
        if mounts_under(containers):
            return False
        if os.path.isdir(containers) and os.listdir(containers):
            return False
        if os.path.isdir(netns) and os.listdir(netns):
            return False
        if self.network is not None:
            prefix = "rv" + self.tag()
            if any(x.startswith(prefix) for x in os.listdir("/sys/class/net")):
                return False
        return not self.statuses()

    def remove_all(self):
        for f in os.listdir(self.units):
            os.unlink(os.path.join(self.units, f))

    def stop(self):
        """Deletes every unit file, waits for the daemon to take them down, stops it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.remove_all()
            try:
                benchlib.wait_until(self.taken_down, "rcd %s to remove its units" % self.label,
                                    within=FLEET_WAIT, every=0.2)
            except Exception as e:  # noqa: BLE001 - best effort, the sweep follows
                log("rcd %s cleanup: %s" % (self.label, e))
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.network is not None:
            # What rcd keeps for its next start (bridge, nftables table, FORWARD rules): gone,
            # so that the next daemon boots as after a reboot.
            for what in benchlib.drop_bridge_network(self.network["bridge"], self.root):
                log("  rcd %s: deleted %s" % (self.label, what))
        if self.log:
            self.log.close()
            self.log = None


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin_dir
        self.work, self.tag = benchlib.work_dir(args, "rcd-scale.")
        self.rootfs = os.path.join(self.work, "rootfs")
        self.ready = os.path.join(self.work, "ready")
        self.config = os.path.join(self.work, "rcd.toml")
        self.runc_root = os.path.join(self.work, "runc-root")
        self.bundles = os.path.join(self.work, "bundles")
        self.cg_parent = "rcdscale-" + self.tag
        self.daemons = []
        self.podman_names = set()
        self.runc_ids = set()
        self.template = None
        self.fifos = {}
        self.commands = {}
        self.out = {}

    # ------------------------------------------------------------ setup

    def setup(self):
        log("work directory: %s" % self.work)
        for d in (self.ready, self.runc_root, self.bundles):
            os.makedirs(d)
        log("building the busybox rootfs (tests/fixtures/mkrootfs.sh)")
        run(["sh", MKROOTFS, self.rootfs])
        with open(self.config, "w") as f:
            f.write("# benches/scale.py: defaults\n")
        for name in ("up", "storm"):
            self.fifos[name] = Fifo(self.ready, name + ".fifo")

    def daemon(self, label, bin_dir=None, network=None):
        d = Rcd(self, label, bin_dir, network)
        self.daemons.append(d)
        return d

    def make_template(self):
        """rcd's own config.json for a sleeper unit: the runc bundles' config."""
        d = self.daemon("probe")
        d.write("probe", d.unit_text(SLEEPER % "probe"))
        d.start()
        self.fifos["up"].wait("probe", within=WAIT)
        found = glob.glob(os.path.join(d.root, "containers", "*", "bundle", "config.json"))
        if not found:
            raise RuntimeError("no bundle config.json under %s" % d.root)
        with open(found[0]) as f:
            self.template = json.load(f)
        d.stop()
        log("runc bundles use rcd's own config.json")

    # ------------------------------------------------------------ runc

    def runc(self, *args):
        return ["runc", "--root", self.runc_root] + list(args)

    def runc_fleet(self, names, script):
        """Prepared bundles (not timed) for `names`; returns {name: (cid, bundle)}."""
        out = {}
        for n in names:
            cid = "rcds-%s-%s" % (self.tag, n)
            out[n] = (cid, benchlib.make_bundle(self.bundles, self.rootfs, self.template, cid,
                                                script % n, self.cg_parent))
        return out

    def runc_run(self, item):
        cid, bundle = item
        self.runc_ids.add(cid)
        with open(os.path.join(bundle, "stderr"), "w+b") as err:
            p = subprocess.run(self.runc("run", "-d", "--bundle", bundle, cid),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            if p.returncode != 0:
                err.seek(0)
                raise RuntimeError("runc run %s: %s" % (cid, err.read().decode(errors="replace")))

    def runc_remove(self, cid):
        run(self.runc("kill", cid, "KILL"), check=False)
        run(self.runc("delete", "--force", cid))
        benchlib.drop_bundle(self.bundles, cid)
        self.runc_ids.discard(cid)

    def runc_pids(self, cids):
        out = []
        for cid in cids:
            st = json.loads(run(self.runc("state", cid)).stdout)
            out.append(st["pid"])
        return out

    # ------------------------------------------------------------ podman

    def podman_run(self, args):
        name, script, extra = args
        self.podman_names.add(name)
        run(["podman", "run", "-d", "--name", name] + extra + PODMAN_FLAGS +
            ["--network", "none", "-v", "%s:/ready" % self.ready,
             "--rootfs", self.rootfs + ":O", "sh", "-c", script])

    def podman_cmd_text(self, extra):
        return " ".join(["podman", "run", "-d", "--name", "NAME"] + extra + PODMAN_FLAGS +
                        ["--network", "none", "-v", "READY:/ready", "--rootfs", "ROOTFS:O",
                         "sh", "-c", "'...'"])

    def podman_inspect(self, names, fmt):
        p = run(["podman", "inspect", "--format", fmt] + list(names))
        return p.stdout.decode().split("\n")[:len(names)]

    def podman_rm(self, names, check=False):
        names = sorted(names)
        if names:
            run(["podman", "rm", "-f", "-t", "0"] + names, check=check)
        self.podman_names -= set(names)

    # ------------------------------------------------------------ boot and removal

    def boot_rcd(self, r, n, bin_dir=None, label="boot", network=None):
        names = ["b%03d" % i for i in range(n)]
        d = self.daemon("%s%d" % (label, r), bin_dir, network)
        for name in names:
            d.write(name, d.unit_text(SLEEPER % ("r%d-%s" % (r, name))))
        c0 = benchlib.system_cpu_ticks()[0]
        t0 = d.start()
        got = self.fifos["up"].collect(["r%d-%s" % (r, x) for x in names], within=FLEET_WAIT)
        t1 = max(got.values())
        cpu = (benchlib.system_cpu_ticks()[0] - c0) * 1000.0 / benchlib.CLK_TCK
        # The daemon's own CPU and its reaped children's (nft, iptables, CNI plugins, the
        # shims' intermediate processes) from its exec to the last container's line.
        dcpu_boot = cpu_ms(d.proc.pid)
        benchlib.wait_until(lambda: sum(1 for s in d.statuses() if s["state"] == "running") == n,
                            "rctl to list %d running" % n, within=WAIT, every=0.05)
        t_listed = now()
        time.sleep(self.args.settle)
        pids = [s["pid"] for s in d.statuses() if s.get("pid")] + d.shim_pids()
        fds = benchlib.pidfds(pids)
        dcpu0 = cpu_ms(d.proc.pid)
        t2 = now()
        d.remove_all()
        benchlib.wait_exited(fds, within=FLEET_WAIT)
        benchlib.wait_until(d.taken_down, "rcd to take every container down", within=FLEET_WAIT,
                            every=0.01)
        t3 = now()
        dcpu1 = cpu_ms(d.proc.pid)
        d.stop()
        out = {"boot": ms(t1 - t0), "boot-listed": ms(t_listed - t0), "remove": ms(t3 - t2),
               "procs": len(pids), "boot-cpu": cpu,
               "daemon-cpu-boot": dcpu_boot[0], "daemon-children-cpu-boot": dcpu_boot[1],
               "daemon-cpu-remove": dcpu1[0] - dcpu0[0],
               "daemon-children-cpu-remove": dcpu1[1] - dcpu0[1]}
        attach = benchlib.native_attach_times(d.log_path)
        if attach:
            out["attach-total-ms"] = [x[2] for x in attach]
            out["attach-wire-ms"] = [x[1] for x in attach]
        cni = {}
        for cid, _, t in benchlib.cni_plugin_times(d.log_path, "ADD"):
            cni[cid] = cni.get(cid, 0.0) + t
        if cni:
            out["cni-add-ms"] = sorted(cni.values())
        with open(d.log_path, errors="replace") as f:
            warnings = [line.strip() for line in f if " WARN " in line or " ERROR " in line]
        if warnings:
            out["warnings"] = warnings[:20]
            log("  rcd %s: %d warnings or errors in its log, first: %s"
                % (d.label, len(warnings), warnings[0]))
        shutil.rmtree(d.root, ignore_errors=True)
        return out

    def boot_runc(self, r, n):
        names = ["r%d-c%03d" % (r, i) for i in range(n)]
        fleet = self.runc_fleet(names, SLEEPER)
        c0 = benchlib.system_cpu_ticks()[0]
        t0 = now()
        parallel(self.args.parallel, self.runc_run, [fleet[x] for x in names])
        got = self.fifos["up"].collect(names, within=FLEET_WAIT)
        t1 = max(got.values())
        cpu = (benchlib.system_cpu_ticks()[0] - c0) * 1000.0 / benchlib.CLK_TCK
        time.sleep(self.args.settle)
        cids = [fleet[x][0] for x in names]
        fds = benchlib.pidfds(self.runc_pids(cids))
        t2 = now()
        parallel(self.args.parallel, self.runc_remove, cids)
        benchlib.wait_exited(fds, within=FLEET_WAIT)
        t3 = now()
        return {"boot": ms(t1 - t0), "remove": ms(t3 - t2), "procs": len(cids), "boot-cpu": cpu}

    def boot_runc_prep(self, r, n):
        """As boot_runc, with the bundles made on the clock too: directories, the overlay
        mount (mount(2)), config.json, then `runc run -d`, PARALLEL at a time."""
        names = ["r%d-f%03d" % (r, i) for i in range(n)]
        c0 = benchlib.system_cpu_ticks()[0]
        t0 = now()

        def prep_and_run(name):
            cid = "rcds-%s-%s" % (self.tag, name)
            bundle = benchlib.make_bundle(self.bundles, self.rootfs, self.template, cid,
                                          SLEEPER % name, self.cg_parent)
            self.runc_run((cid, bundle))
            return cid
        cids = parallel(self.args.parallel, prep_and_run, names)
        got = self.fifos["up"].collect(names, within=FLEET_WAIT)
        t1 = max(got.values())
        cpu = (benchlib.system_cpu_ticks()[0] - c0) * 1000.0 / benchlib.CLK_TCK
        time.sleep(self.args.settle)
        fds = benchlib.pidfds(self.runc_pids(cids))
        t2 = now()
        parallel(self.args.parallel, self.runc_remove, cids)
        benchlib.wait_exited(fds, within=FLEET_WAIT)
        t3 = now()
        return {"boot": ms(t1 - t0), "remove": ms(t3 - t2), "procs": len(cids), "boot-cpu": cpu}

    def boot_podman(self, r, n):
        names = ["rcds-%s-r%d-p%03d" % (self.tag, r, i) for i in range(n)]
        tags = ["r%d-p%03d" % (r, i) for i in range(n)]
        c0 = benchlib.system_cpu_ticks()[0]
        t0 = now()
        parallel(self.args.parallel, self.podman_run,
                 [(name, SLEEPER % tag, []) for name, tag in zip(names, tags)])
        t_cmds = now()
        got = self.fifos["up"].collect(tags, within=FLEET_WAIT)
        t1 = max(got.values())
        cpu = (benchlib.system_cpu_ticks()[0] - c0) * 1000.0 / benchlib.CLK_TCK
        time.sleep(self.args.settle)
        pids, ids = [], []
        for line in self.podman_inspect(names, "{{.State.Pid}} {{.State.ConmonPid}} {{.Id}}"):
            pid, conmon, cid = line.split()
            pids += [int(pid), int(conmon)]
            ids.append(cid)
        fds = benchlib.pidfds(pids)
        t2 = now()
        self.podman_rm(names, check=True)
        benchlib.wait_exited(fds, within=FLEET_WAIT)

        def unmounted():
            with open("/proc/self/mountinfo") as f:
                text = f.read()
            return not any(i in text for i in ids)
        benchlib.wait_until(unmounted, "podman to unmount", within=WAIT, every=0.01)
        t3 = now()
        return {"boot": ms(max(t1, t_cmds) - t0), "remove": ms(t3 - t2), "procs": len(pids),
                "boot-cpu": cpu}

    @staticmethod
    def machine_load(seconds):
        """The machine's non-nice CPU over `seconds` while this benchmark runs nothing, in
        cores: the other work on a shared machine."""
        s0 = benchlib.system_cpu_ticks()
        time.sleep(seconds)
        s1 = benchlib.system_cpu_ticks()
        return (s1[0] - s0[0]) / benchlib.CLK_TCK / seconds

    def net(self, driver):
        """The default network of the bridge tools' daemons: a bridge and subnet of this run's
        own per driver (the same for every round; taken down after each daemon)."""
        bridge = ("rcdsn" if driver == "native" else "rcdsc") + self.tag[:6]
        subnet = self.args.subnet if driver == "native" else self.args.cni_subnet
        return {"driver": driver, "bridge": bridge, "subnet": subnet}

    def scenario_boot(self):
        n = self.args.count
        for tool, driver in (("rcd-bridge", "native"), ("rcd-cni", "cni")):
            if tool in self.args.tools:
                net = self.net(driver)
                benchlib.check_subnet(net["subnet"], tool, net["bridge"])
                log("%s: default network (%s driver) on bridge %s, %s"
                    % (tool, driver, net["bridge"], net["subnet"]))
        self.make_template()

        def rcd_tool(label, driver=None, bin_dir=None):
            network = self.net(driver) if driver else None
            return lambda r, n: self.boot_rcd(r, n, bin_dir, label, network)
        tools = [("rcd", rcd_tool("boot")),
                 ("rcd-bridge", rcd_tool("bridge", "native")),
                 ("rcd-cni", rcd_tool("cni", "cni")),
                 ("runc", self.boot_runc), ("runc-prep", self.boot_runc_prep),
                 ("podman", self.boot_podman)]
        tools = [t for t in tools if t[0] in self.args.tools]
        if self.args.base_bin_dir:
            # Another build of rcd in the same rounds: before and after under the same noise,
            # a twin `TOOL-base` (`rcd-base` for rcd) beside each rcd tool chosen.
            base = self.args.base_bin_dir
            twins = {"rcd": ("rcd-base", rcd_tool("base", None, base)),
                     "rcd-bridge": ("rcd-bridge-base", rcd_tool("bridgebase", "native", base)),
                     "rcd-cni": ("rcd-cni-base", rcd_tool("cnibase", "cni", base))}
            chosen = [t[0] for t in tools if t[0] in twins] or ["rcd"]
            for name in chosen:
                at = next((i for i, t in enumerate(tools) if t[0] == name), 0)
                tools.insert(at + 1, twins[name])
        res = {t[0]: [] for t in tools}
        res["load"] = []
        total = self.args.warmup + self.args.rounds
        for r in range(total):
            k = r % len(tools)
            load = self.machine_load(3)
            if r >= self.args.warmup:
                res["load"].append(load)
            line = ["others' load %.2f cores" % load]
            for name, fn in tools[k:] + tools[:k]:
                # The kernel takes the namespaces of the last tool's containers apart in the
                # background (cleanup_net); --gap keeps that out of the next tool's clock.
                time.sleep(self.args.gap)
                x = fn(r, n)
                if r >= self.args.warmup:
                    res[name].append(x)
                line.append("%s boot %.0f ms, remove %.0f ms" % (name, x["boot"], x["remove"]))
            log("%s %d/%d: %s" % ("warm-up" if r < self.args.warmup else "round",
                                  r + 1 if r < self.args.warmup else r + 1 - self.args.warmup,
                                  self.args.warmup if r < self.args.warmup else self.args.rounds,
                                  "; ".join(line)))
        self.out["boot"] = res
        self.report_boot(res, n)

    def report_boot(self, res, n):
        p = print
        rcds = [t for t in ("rcd", "rcd-bridge", "rcd-cni", "rcd-base", "rcd-bridge-base",
                            "rcd-cni-base") if t in res]
        everyone = rcds + [t for t in ("runc", "runc-prep", "podman") if t in res]
        p()
        p("%d containers, %d rounds (+%d warm-up), order rotated; ms, wall clock"
          % (n, self.args.rounds, self.args.warmup))
        p("%-15s %-28s %-28s" % ("", "start all: median (min-max)",
                                 "remove all: median (min-max)"))
        for tool in everyone:
            p("%-15s %-28s %-28s" % (tool, spread([x["boot"] for x in res[tool]], "%.0f"),
                                     spread([x["remove"] for x in res[tool]], "%.0f")))
        for tool in rcds:
            p("%s: socket answering and all %d listed running: %s ms after the exec"
              % (tool, n, spread([x["boot-listed"] for x in res[tool]], "%.0f")))
        p("the machine's non-nice CPU while the %d start (all processes, the other work "
          "included): %s" % (n, ", ".join(
              "%s %s ms" % (t, spread([x["boot-cpu"] for x in res[t]], "%.0f"))
              for t in everyone)))
        p("the daemon's CPU (utime+stime), ms: own + reaped children (nft, iptables, CNI "
          "plugins, the shims' intermediate processes)")
        for tool in rcds:
            rows = res[tool]
            p("  %-15s boot: own %s, children %s; removal: own %s, children %s"
              % (tool, spread([x["daemon-cpu-boot"] for x in rows], "%.0f"),
                 spread([x["daemon-children-cpu-boot"] for x in rows], "%.0f"),
                 spread([x["daemon-cpu-remove"] for x in rows], "%.0f"),
                 spread([x["daemon-children-cpu-remove"] for x in rows], "%.0f")))
        p("the network's share, paired per round against rcd with `mode = \"none\"` (median "
          "of the per-round differences; per container: / %d)" % n)
        for tool in ("rcd-bridge", "rcd-cni", "rcd-bridge-base", "rcd-cni-base"):
            none = "rcd-base" if tool.endswith("-base") else "rcd"
            if tool not in res or none not in res:
                continue
            pairs = list(zip(res[tool], res[none]))

            def diff(key, pairs=pairs):
                return med([x[key] - y[key] for x, y in pairs])

            def cpu(phase, pairs=pairs):
                return med([(x["daemon-cpu-" + phase] + x["daemon-children-cpu-" + phase])
                            - (y["daemon-cpu-" + phase] + y["daemon-children-cpu-" + phase])
                            for x, y in pairs])
            p("  %-15s against %s: boot %+.0f ms, removal %+.0f ms; daemon CPU (own + "
              "children) for the %d network setups %+.0f ms (%.1f ms each), for the %d "
              "teardowns %+.0f ms (%.1f ms each)"
              % (tool, none, diff("boot"), diff("remove"), n, cpu("boot"), cpu("boot") / n,
                 n, cpu("remove"), cpu("remove") / n))
        for tool in ("rcd-bridge", "rcd-cni", "rcd-bridge-base", "rcd-cni-base"):
            rows = res.get(tool, [])
            attach = [x["attach-total-ms"] for x in rows if "attach-total-ms" in x]
            if attach:
                wire = [x["attach-wire-ms"] for x in rows if "attach-wire-ms" in x]
                p("  %-15s native attach from its log, per round: median %s ms per setup "
                  "(lease + netlink %s), sum over the %d %s ms, max %s ms"
                  % (tool, spread([med(a) for a in attach]), spread([med(w) for w in wire]), n,
                     spread([sum(a) for a in attach], "%.0f"),
                     spread([max(a) for a in attach])))
            cni = [x["cni-add-ms"] for x in rows if "cni-add-ms" in x]
            if cni:
                p("  %-15s CNI ADD from its log, per round: median %s ms per setup, sum over "
                  "the %d %s ms" % (tool, spread([med(c) for c in cni]), n,
                                    spread([sum(c) for c in cni], "%.0f")))
        p("the machine's other work before each round (non-nice CPU over 3 s idle): %s cores"
          % spread(res["load"], "%.2f"))
        m = {t: (med([x["boot"] for x in v]), med([x["remove"] for x in v]))
             for t, v in res.items() if t != "load"}
        for tool, remove_target in (("rcd", 3000), ("rcd-bridge", 2000)):
            if tool not in m:
                continue
            b, rm = m[tool]
            p("targets, %s: cold boot %.0f ms < 3000: %s; removal %.0f ms < %d: %s"
              % (tool, b, "met" if b < 3000 else "MISSED", rm, remove_target,
                 "met" if rm < remove_target else "MISSED"))
        for mine in rcds:
            for other in everyone:
                if other != mine and (mine == "rcd" or other in ("rcd", "runc")
                                      or other == mine + "-base"):
                    p("%s/%s: boot %.2fx, removal %.2fx"
                      % (mine, other, m[mine][0] / m[other][0], m[mine][1] / m[other][1]))
        p("commands: %s" % self.commands.get("rcd", "").replace(self.work, "WORK"))
        p("          runc --root R run -d --bundle B ID  (%d at a time); runc kill ID KILL; "
          "runc delete --force ID; umount; rm -r B" % self.args.parallel)
        p("          runc-prep: mkdir B/{upper,work,rootfs}; mount(2) overlay; write "
          "B/config.json; runc --root R run -d --bundle B ID  (%d at a time)" % self.args.parallel)
        p("          %s  (%d at a time); podman rm -f -t 0 NAME..."
          % (self.podman_cmd_text([]), self.args.parallel))

    # ------------------------------------------------------------ idle: memory, CPU, status

    def hyperfine(self, label, cmds):
        """Median, min, max (ms) of each command over RUNS runs (hyperfine -N)."""
        path = os.path.join(self.work, "hyperfine-%s.json" % label)
        argv = ["hyperfine", "-N", "--style", "basic", "--warmup", "10",
                "--runs", str(self.args.runs), "--export-json", path] + cmds
        log("  " + " ".join(argv))
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr)
        if p.returncode != 0:
            raise RuntimeError("hyperfine: exit %d" % p.returncode)
        with open(path) as f:
            data = json.load(f)
        out = {}
        for c, r in zip(cmds, data["results"]):
            out[c] = {"median": r["median"] * 1000, "min": r["min"] * 1000,
                      "max": r["max"] * 1000, "runs": len(r["times"])}
        return out

    def idle_window(self, pids):
        """CPU (own, children) of each pid over SECONDS; the benchmark sleeps meanwhile."""
        before = {p: cpu_ms(p) for p in pids}
        time.sleep(self.args.seconds)
        after = {p: cpu_ms(p) for p in pids}
        return {p: (after[p][0] - before[p][0], after[p][1] - before[p][1]) for p in pids}

    @staticmethod
    def memory_of(pids):
        m = [benchlib.memory_kb(p) for p in pids]
        return {k: [x[k] for x in m] for k in ("Pss", "Rss", "Uss")}

    def scenario_idle(self):
        n, total, s = self.args.count, self.args.total, self.args.seconds
        res = {}
        if "runc" in self.args.tools:
            self.make_template()
        d = self.daemon("idle")
        names = ["i%04d" % i for i in range(n)]
        for name in names:
            d.write(name, d.unit_text(SLEEPER % name))
        d.start()
        self.fifos["up"].collect(names, within=FLEET_WAIT)
        log("rcd: %d running; settling %ss" % (n, self.args.settle * 5))
        time.sleep(self.args.settle * 5)
        shims = d.shim_pids()
        if len(shims) != n:
            raise RuntimeError("found %d shims, expected %d" % (len(shims), n))
        res["shim"] = self.memory_of(shims)
        res["daemon-%d" % n] = dict(rss_kb(d.proc.pid), **benchlib.memory_kb(d.proc.pid))
        log("rcd: %ss idle with %d units" % (s, n))
        w = self.idle_window([d.proc.pid] + shims)
        res["daemon-cpu-%d" % n] = w[d.proc.pid]
        res["shims-cpu-%d" % n] = sum(w[p][0] for p in shims)
        res["hyperfine-%d" % n] = self.hyperfine("rcd-%d" % n, [
            "%s/rctl --socket %s status" % (self.bin, d.socket),
            "%s/rctl --socket %s list" % (self.bin, d.socket)])
        # The rest: loaded, not started.
        more = ["j%04d" % i for i in range(n, total)]
        for name in more:
            d.write(name, d.unit_text(SLEEPER % name, autostart=False), staged=True)
        d.move_in(more)
        benchlib.wait_until(lambda: len(d.statuses()) == total, "rcd to load %d units" % total,
                            within=WAIT, every=0.5)
        states = {}
        for st in d.statuses():
            states[st["state"]] = states.get(st["state"], 0) + 1
        res["states-%d" % total] = states
        time.sleep(self.args.settle * 5)
        res["daemon-%d" % total] = dict(rss_kb(d.proc.pid), **benchlib.memory_kb(d.proc.pid))
        log("rcd: %ss idle with %d units (%s)" % (s, total, states))
        w = self.idle_window([d.proc.pid] + shims)
        res["daemon-cpu-%d" % total] = w[d.proc.pid]
        res["shims-cpu-%d" % total] = sum(w[p][0] for p in shims)
        res["hyperfine-%d" % total] = self.hyperfine("rcd-%d" % total, [
            "%s/rctl --socket %s status" % (self.bin, d.socket),
            "%s/rctl --socket %s list" % (self.bin, d.socket),
            "%s/rctl --socket %s status i0000" % (self.bin, d.socket)])
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)

        if "podman" in self.args.tools:
            pnames = ["rcds-%s-i%03d" % (self.tag, i) for i in range(n)]
            tags = ["pi%03d" % i for i in range(n)]
            log("podman: %d containers" % n)
            parallel(self.args.parallel, self.podman_run,
                     [(name, SLEEPER % tag, []) for name, tag in zip(pnames, tags)])
            self.fifos["up"].collect(tags, within=FLEET_WAIT)
            time.sleep(self.args.settle * 5)
            conmons = [int(x) for x in self.podman_inspect(pnames, "{{.State.ConmonPid}}")]
            res["conmon"] = self.memory_of(conmons)
            log("podman: %ss idle" % s)
            w = self.idle_window(conmons)
            res["conmons-cpu"] = sum(w[p][0] for p in conmons)
            res["hyperfine-podman"] = self.hyperfine("podman", ["podman ps", "podman ps -a"])
            self.podman_rm(pnames)
        if "runc" in self.args.tools:
            log("runc: %d containers" % n)
            rnames = ["ri%03d" % i for i in range(n)]
            fleet = self.runc_fleet(rnames, SLEEPER)
            parallel(self.args.parallel, self.runc_run, [fleet[x] for x in rnames])
            self.fifos["up"].collect(rnames, within=FLEET_WAIT)
            res["hyperfine-runc"] = self.hyperfine("runc", [
                "runc --root %s list" % self.runc_root])
            parallel(self.args.parallel, self.runc_remove, [fleet[x][0] for x in rnames])
        self.out["idle"] = res
        self.report_idle(res, n, total, s)

    def report_idle(self, res, n, total, s):
        p = print
        p()
        p("per-container monitor, %d containers each: median (min-max) kB" % n)
        for who in ("shim", "conmon"):
            if who in res:
                m = res[who]
                p("  %-7s PSS %-22s RSS %-22s USS %s" % (
                    "rcd-shim" if who == "shim" else who, spread(m["Pss"], "%.0f"),
                    spread(m["Rss"], "%.0f"), spread(m["Uss"], "%.0f")))
        if "shim" in res and "conmon" in res:
            a, b = med(res["shim"]["Pss"]), med(res["conmon"]["Pss"])
            p("  shim/conmon PSS = %.2fx; target: shim under conmon: %s"
              % (a / b, "met" if a < b else "MISSED"))
        p("rcd daemon (pid 1 of its own tree; the runc floor has no monitor process):")
        for k in (n, total):
            m = res["daemon-%d" % k]
            cpu = res["daemon-cpu-%d" % k]
            p("  %4d units: RSS %d kB (peak %d), PSS %d kB; CPU over %ds idle: %.0f ms own, "
              "%.0f ms reaped children = %.3f%% of one core; shims' CPU %.0f ms in all"
              % (k, m["VmRSS"], m["VmHWM"], m["Pss"], s, cpu[0], cpu[1],
                 100 * (cpu[0] + cpu[1]) / (s * 1000), res["shims-cpu-%d" % k]))
        p("  %d units: %s" % (total, res.get("states-%d" % total)))
        if "conmons-cpu" in res:
            p("  podman: the %d conmons' CPU over %ds idle: %.0f ms in all"
              % (n, s, res["conmons-cpu"]))
        p("listing, hyperfine -N, %d runs after 10 warm-up: median (min-max) ms"
          % self.args.runs)
        for key in ("hyperfine-%d" % n, "hyperfine-%d" % total, "hyperfine-podman",
                    "hyperfine-runc"):
            for cmd, r in res.get(key, {}).items():
                short = cmd.replace(self.bin + "/", "").replace(self.work, "WORK")
                p("  %-5s %-48s %.1f (%.1f-%.1f)" % (key.split("-")[1], short, r["median"],
                                                     r["min"], r["max"]))
        big = res.get("hyperfine-%d" % total, {})
        for cmd, r in big.items():
            verdict = "met" if r["median"] < 20 else "MISSED"
            p("  target < 20 ms with %d units: %s %.1f ms: %s"
              % (total, cmd.split()[-1] if "status i" not in cmd else "status ONE",
                 r["median"], verdict))

    # ------------------------------------------------------------ crash-loop storm

    def storm_windows(self, pid, probe, control, counted):
        """WINDOWS windows of SECONDS: CPU of `pid` (None: none), the machine's non-nice CPU,
        lines on the storm FIFO, and `probe`'s wall time once a second, each followed by
        `control`'s (the same binary, not asking the daemon: what the loaded machine alone
        costs a command)."""
        fifo = self.fifos["storm"]
        windows = []
        for _ in range(self.args.windows):
            lines = 0
            lat = []
            ctl = []
            c0 = cpu_ms(pid) if pid else (0.0, 0.0)
            s0 = benchlib.system_cpu_ticks()
            t0 = time.monotonic()
            end = t0 + self.args.seconds
            while time.monotonic() < end:
                a = now()
                p = subprocess.run(probe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                b = now()
                if p.returncode == 0:
                    lat.append(ms(b - a))
                c = now()
                subprocess.run(control, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                ctl.append(ms(now() - c))
                lines += len(fifo.drain())
                time.sleep(max(0.0, min(1.0 - (b - a) / 1e9, end - time.monotonic())))
            lines += len(fifo.drain())
            elapsed = time.monotonic() - t0
            c1 = cpu_ms(pid) if pid else (0.0, 0.0)
            s1 = benchlib.system_cpu_ticks()
            k = 1000.0 / benchlib.CLK_TCK
            w = {"seconds": elapsed, "starts": lines, "probe_ms": lat, "control_ms": ctl,
                 "cpu_own_ms": c1[0] - c0[0], "cpu_children_ms": c1[1] - c0[1],
                 "machine_busy_ms": (s1[0] - s0[0]) * k, "machine_nice_ms": (s1[1] - s0[1]) * k}
            w.update(counted())
            windows.append(w)
            log("  window: %d starts, daemon CPU %.0f ms, machine %.0f ms busy, probe %s ms"
                % (lines, w["cpu_own_ms"], w["machine_busy_ms"], spread(lat)))
        return windows

    def scenario_storm(self):
        n, s = self.args.count, self.args.seconds
        res = {}
        # The machine's own load first, for scale (nothing of ours runs).
        res["machine_idle_busy_ms_per_s"] = self.machine_load(10) * 1000.0
        d = self.daemon("storm")
        d.start()
        benchlib.wait_until(d.answering, "rcd to answer", within=WAIT)
        names = ["s%03d" % i for i in range(n)]
        for name in names:
            d.write(name, d.unit_text(CRASHER % name, restart="always"), staged=True)
        self.fifos["storm"].drain()
        log("rcd: %d crashing units, %d windows of %ds" % (n, self.args.windows, s))
        d.move_in(names)

        def rcd_counted():
            st = d.statuses()
            return {"restarts_total": sum(x["restarts"] for x in st),
                    "states": {k: sum(1 for x in st if x["state"] == k)
                               for k in sorted({x["state"] for x in st})}}
        res["rcd"] = self.storm_windows(
            d.proc.pid, [os.path.join(self.bin, "rctl"), "--socket", d.socket, "status"],
            [os.path.join(self.bin, "rctl"), "--version"], rcd_counted)
        log("rcd: removing the storm")
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)
        self.fifos["storm"].drain()
        if "podman" in self.args.tools:
            pn = self.args.podman_count
            pnames = ["rcds-%s-s%03d" % (self.tag, i) for i in range(pn)]
            log("podman: %d crashing containers (--restart always)" % pn)
            parallel(self.args.parallel, self.podman_run,
                     [(name, CRASHER % name, ["--restart", "always"]) for name in pnames])

            def podman_counted():
                counts = self.podman_inspect(pnames, "{{.RestartCount}}")
                return {"restarts_total": sum(int(c) for c in counts if c.strip().isdigit())}
            res["podman"] = self.storm_windows(None, ["podman", "ps"], ["podman", "--version"],
                                               podman_counted)
            log("podman: removing the storm")
            self.podman_rm(pnames)
            left = [x for x in run(["podman", "ps", "-a", "--format", "{{.Names}}"]).stdout
                    .decode().split() if x in set(pnames)]
            for _ in range(5):  # a restart racing the removal: bounded retries
                if not left:
                    break
                time.sleep(1)
                self.podman_rm(left)
                left = [x for x in run(["podman", "ps", "-a", "--format", "{{.Names}}"]).stdout
                        .decode().split() if x in set(pnames)]
        self.out["storm"] = res
        self.report_storm(res, n, s)

    def report_storm(self, res, n, s):
        p = print
        p()
        p("crash-loop storm: windows of %ds; the machine's own non-nice load before: %.0f ms "
          "per s" % (s, res["machine_idle_busy_ms_per_s"]))
        for who, label in (("rcd", "rcd, %d units" % n),
                           ("podman", "podman, %d containers" % self.args.podman_count)):
            for i, w in enumerate(res.get(who, [])):
                secs = w["seconds"]
                cpu = (w["cpu_own_ms"] / (secs * 10.0)) if who == "rcd" else None
                p("  %-20s window %d: %4d starts (%.1f per container per minute); "
                  "%s machine busy %.0f%% of one core; `%s` %s ms"
                  % (label, i + 1, w["starts"],
                     w["starts"] / (n if who == "rcd" else self.args.podman_count)
                     * 60.0 / secs,
                     ("daemon CPU %.2f%% of one core (own %.0f ms, children %.0f ms);"
                      % (cpu, w["cpu_own_ms"], w["cpu_children_ms"])) if cpu is not None
                     else "",
                     100 * w["machine_busy_ms"] / (secs * 1000),
                     "rctl status" if who == "rcd" else "podman ps",
                     spread(w["probe_ms"])))
                p("  %-20s           `%s` (the same binary, no daemon asked) %s ms; "
                  "restarts counted: %d%s"
                  % ("", "rctl --version" if who == "rcd" else "podman --version",
                     spread(w["control_ms"]), w.get("restarts_total", 0),
                     "; states at the end: %s" % w["states"] if "states" in w else ""))
        for i, w in enumerate(res.get("rcd", [])):
            cpu = w["cpu_own_ms"] / (w["seconds"] * 10.0)
            worst = max(w["probe_ms"]) if w["probe_ms"] else float("nan")
            p("  targets, window %d: daemon CPU %.2f%% < 10%%: %s; rctl status median %.1f ms, "
              "max %.1f ms < 50: %s" % (i + 1, cpu, "met" if cpu < 10 else "MISSED",
                                        med(w["probe_ms"]), worst,
                                        "met" if worst < 50 else "MISSED"))

    # ------------------------------------------------------------ teardown

    def teardown(self):
        log("cleaning up")
        for d in self.daemons:
            d.stop()
        for root in [self.runc_root] + [os.path.join(d.root, "runc") for d in self.daemons]:
            if os.path.isdir(root):
                p = run(["runc", "--root", root, "list", "-q"], check=False)
                for cid in p.stdout.decode().split():
                    log("  leftover runc container %s" % cid)
                    run(["runc", "--root", root, "delete", "-f", cid], check=False)
        if self.podman_names:
            self.podman_rm(self.podman_names)
        for m in reversed(mounts_under(self.work)):
            run(["umount", "-l", m], check=False)
        tags = {"rcd-" + d.tag() for d in self.daemons}
        for ctrl in os.listdir("/sys/fs/cgroup"):
            base = os.path.join("/sys/fs/cgroup", ctrl)
            if not os.path.isdir(base):
                continue
            for d in os.listdir(base):
                if d == self.cg_parent or d in tags:
                    try:
                        os.rmdir(os.path.join(base, d))
                    except OSError:
                        pass
        for f in self.fifos.values():
            f.close()
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(self.out, f, indent=1)
        if self.args.keep:
            log("kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def main(self):
        self.setup()
        getattr(self, "scenario_" + self.args.scenario)()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", choices=("boot", "idle", "storm"))
    ap.add_argument("--bin-dir", required=True, help="directory with rcd, rctl, rcd-shim")
    ap.add_argument("--count", type=int, default=100, help="containers (default 100)")
    ap.add_argument("--total", type=int, default=1000,
                    help="idle: units loaded in the second half (default 1000)")
    ap.add_argument("--rounds", type=int, default=5, help="boot: rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="boot: warm-up rounds (default 1)")
    ap.add_argument("--parallel", type=int, default=4,
                    help="runc and podman commands at a time (default 4)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds between all up and the removal (idle: five times this)")
    ap.add_argument("--gap", type=float, default=0.0,
                    help="boot: seconds of pause before each tool's turn (default 0)")
    ap.add_argument("--seconds", type=int, default=60, help="idle, storm: window (default 60)")
    ap.add_argument("--windows", type=int, default=2, help="storm: windows (default 2)")
    ap.add_argument("--podman-count", type=int, default=10,
                    help="storm: crashing podman containers (default 10)")
    ap.add_argument("--runs", type=int, default=100, help="idle: hyperfine runs (default 100)")
    ap.add_argument("--base-bin-dir", default=os.environ.get("RCD_BASE_BIN_DIR"),
                    help="boot: also another build of rcd in the same rounds, as a twin "
                    "TOOL-base of each rcd tool (rcd-base for rcd)")
    ap.add_argument("--tools", default="rcd,runc,runc-prep,podman",
                    help="which of rcd,rcd-bridge,rcd-cni,runc,runc-prep,podman to run (rcd "
                    "always runs in idle and storm; rcd-bridge and rcd-cni only in boot)")
    ap.add_argument("--subnet", default=os.environ.get("RCD_SCALE_SUBNET", "10.97.1.0/24"),
                    help="boot: rcd-bridge's default network (native driver, its own bridge)")
    ap.add_argument("--cni-subnet",
                    default=os.environ.get("RCD_SCALE_CNI_SUBNET", "10.99.1.0/24"),
                    help="boot: rcd-cni's default network (CNI driver, its own bridge)")
    ap.add_argument("--work-dir", default=os.environ.get("RCD_BENCH_DIR"),
                    help="where the temporary directory goes (default /var/tmp)")
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for name in ("count", "rounds", "parallel", "seconds", "windows", "podman_count", "runs"):
        if not 1 <= getattr(args, name) <= 10000:
            ap.error("--%s must be in 1..10000" % name.replace("_", "-"))
    if args.total < args.count:
        ap.error("--total must be at least --count")
    bench = Bench(args)
    return benchlib.run_cleaning_up(bench.main, bench.teardown)


if __name__ == "__main__":
    sys.exit(main())
