#!/usr/bin/env python3
"""The cost of one health-check probe: rcd against `runc exec` (the floor) and podman's
`podman healthcheck run` (the peer), on one busybox rootfs, in one run.

Run through benches/health.sh, which checks the prerequisites. Standard library only; root only.

  rcd     a unit running `sleep 3600` with `[health] cmd = ["true"]`, probed by the daemon
          every INTERVAL. Time per probe: the daemon's own measure (`took_ms` of each result,
          from spawning `runc exec` to its exit). CPU per probe: the daemon's CPU time, its
          reaped children's included (each probe is a `runc exec` child), over a window,
          divided by the probes in it, minus the same window's CPU with a unit that has no
          check (what polling `rctl status` for the results costs).
  runc    `runc exec CONTAINER true` on rcd's container, run from here one after another:
          wall time and children's CPU time (getrusage) per exec.
  podman  `podman healthcheck run NAME` on a container of the same rootfs with `--health-cmd
          true` (and no timer of its own), one after another: wall time and children's CPU
          time per run. podman's exec goes through conmon, which podman does not wait for as a
          child: its CPU is not in this figure, so podman's CPU is understated.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MKROOTFS = os.path.join(REPO, "tests", "fixtures", "mkrootfs.sh")
sys.path.insert(0, HERE)
import benchlib  # noqa: E402 - after the path it is found on
from benchlib import PODMAN_FLAGS, log, run  # noqa: E402


def cpu_ms(pid):
    """utime + stime + cutime + cstime of `pid` (its reaped children's included), in ms."""
    return sum(benchlib.proc_cpu_ticks(pid)) * 1000.0 / benchlib.CLK_TCK


def children_cpu_ms():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000.0


def wait_until(cond, what, within=30.0):
    benchlib.wait_until(cond, what, within, every=0.05)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return "%.1f (%.1f-%.1f)" % (med(xs), min(xs), max(xs)) if xs else "-"


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin_dir
        base = args.work_dir or "/var/tmp"
        self.work = tempfile.mkdtemp(prefix="rcd-health.", dir=base)
        os.chmod(self.work, 0o755)
        self.rootfs = os.path.join(self.work, "rootfs")
        self.units = os.path.join(self.work, "units")
        self.root = os.path.join(self.work, "root")
        self.socket = os.path.join(self.work, "rcd.sock")
        self.config = os.path.join(self.work, "rcd.toml")
        self.podman_name = "rcd-health-" + os.path.basename(self.work).split(".", 1)[1].lower()
        self.daemon = None
        self.daemon_log = None
        self.podman = False

    def rctl(self, *args):
        return run([os.path.join(self.bin, "rctl"), "--socket", self.socket] + list(args))

    def status(self, name):
        return json.loads(self.rctl("status", name, "--output", "json").stdout)[0]

    def setup(self):
        os.makedirs(self.units)
        os.chmod(self.units, 0o755)
        run(["sh", MKROOTFS, self.rootfs])
        with open(self.config, "w") as f:
            f.write('[network]\nconfig_dir = %s\n' % json.dumps(os.path.join(self.work, "nets")))
        self.daemon_log = open(os.path.join(self.work, "rcd.log"), "ab")
        env = dict(os.environ, RCD_LOG=os.environ.get("RCD_LOG", "warn"))
        self.daemon = subprocess.Popen(
            [os.path.join(self.bin, "rcd"), "--units-dir", self.units, "--root", self.root,
             "--socket", self.socket, "--shim", os.path.join(self.bin, "rcd-shim"),
             "--runtime", "runc", "--config", self.config],
            stdin=subprocess.DEVNULL, stdout=self.daemon_log, stderr=self.daemon_log, env=env)
        wait_until(lambda: run([os.path.join(self.bin, "rctl"), "--socket", self.socket,
                                "list"], check=False).returncode == 0, "rcd to answer")

    def unit(self, name, health):
        text = ('[container]\nrootfs = %s\ncommand = ["sleep", "3600"]\nstop_signal = "KILL"\n'
                '[network]\nmode = "none"\n' % json.dumps(self.rootfs))
        if health:
            text += '[health]\ncmd = ["true"]\ninterval = %s\n' % json.dumps(
                "%dms" % self.args.interval_ms)
        tmp = os.path.join(self.work, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.units, name + ".toml"))
        wait_until(lambda: self.status(name)["state"] == "running", name + " running")

    def window(self, name, seconds):
        """Polls `name`'s results for `seconds`: the probes seen (start_ms -> took_ms) and
        the daemon's CPU ms over the window."""
        seen = {}
        c0 = cpu_ms(self.daemon.pid)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            h = self.status(name).get("health") or {}
            for c in h.get("log", []):
                seen[c["start_ms"]] = c["took_ms"]
            time.sleep(0.5)
        return seen, cpu_ms(self.daemon.pid) - c0

    def measure_rcd(self):
        secs = self.args.seconds
        self.unit("idle", health=False)
        _, base_cpu = self.window("idle", secs)
        self.unit("probe", health=True)
        wait_until(lambda: (self.status("probe").get("health") or {}).get("status") == "healthy",
                   "probe healthy")
        seen, cpu = self.window("probe", secs)
        probes = len(seen)
        return {
            "took_ms": list(seen.values()),
            "probes": probes,
            "cpu_ms_window": cpu,
            "baseline_cpu_ms_window": base_cpu,
            "cpu_ms_per_probe": (cpu - base_cpu) / probes if probes else float("nan"),
        }

    def measure_runc(self):
        cid = self.status("probe")["container_id"]
        walls, cpus = [], []
        for _ in range(self.args.iterations):
            c0, t0 = children_cpu_ms(), time.monotonic()
            run(["runc", "--root", os.path.join(self.root, "runc"), "exec", cid, "true"])
            walls.append((time.monotonic() - t0) * 1000)
            cpus.append(children_cpu_ms() - c0)
        return {"wall_ms": walls, "cpu_ms": cpus}

    def measure_podman(self):
        # `--rootfs` is a switch and the rootfs is the first argument: podman reads no options
        # after it (they would become the container's command), so every option goes before.
        self.podman = True  # teardown removes it also when it was created but failed to start
        run(["podman", "run", "-d", "--name", self.podman_name, "--network", "none",
             "--health-cmd", "true", "--health-interval", "disable"]
            + PODMAN_FLAGS + ["--rootfs", self.rootfs + ":O", "sleep", "3600"])
        run(["podman", "healthcheck", "run", self.podman_name])  # warm up
        walls, cpus = [], []
        for _ in range(self.args.iterations):
            c0, t0 = children_cpu_ms(), time.monotonic()
            run(["podman", "healthcheck", "run", self.podman_name])
            walls.append((time.monotonic() - t0) * 1000)
            cpus.append(children_cpu_ms() - c0)
        return {"wall_ms": walls, "cpu_ms": cpus}

    def teardown(self):
        if self.podman:
            run(["podman", "rm", "-f", "-t", "0", self.podman_name], check=False)
        if self.daemon is not None and self.daemon.poll() is None:
            for f in os.listdir(self.units):
                os.unlink(os.path.join(self.units, f))
            try:
                wait_until(lambda: not json.loads(
                    self.rctl("status", "--output", "json").stdout or b"[]"),
                    "rcd to remove the units")
            except Exception as e:  # noqa: BLE001 - best effort
                log("cleanup: %s" % e)
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(timeout=20)
        if self.daemon_log:
            self.daemon_log.close()
        p = run(["findmnt", "-rn", "-o", "TARGET"], check=False)
        for m in reversed([m for m in p.stdout.decode().split("\n") if m.startswith(self.work)]):
            run(["umount", "-l", m], check=False)
        if self.args.keep:
            log("kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def main(self):
        self.setup()
        log("rcd: probing every %d ms for %d s (and %d s without a check)"
            % (self.args.interval_ms, self.args.seconds, self.args.seconds))
        r = self.measure_rcd()
        log("runc exec: %d runs" % self.args.iterations)
        f = self.measure_runc()
        log("podman healthcheck run: %d runs" % self.args.iterations)
        try:
            p = self.measure_podman()
        except RuntimeError as e:
            # Said plainly in the output: a machine where podman cannot start a container.
            log("podman could not run here: %s" % e)
            p = {"wall_ms": [], "cpu_ms": [], "error": str(e)}
        print("per probe, median (min-max)        wall ms            CPU ms")
        print("rcd (daemon's probe, %3d probes)   %-18s %.1f  (window %.0f ms - baseline %.0f ms)"
              % (r["probes"], spread(r["took_ms"]), r["cpu_ms_per_probe"], r["cpu_ms_window"],
                 r["baseline_cpu_ms_window"]))
        print("runc exec (floor)                  %-18s %s" % (spread(f["wall_ms"]),
                                                              spread(f["cpu_ms"])))
        print("podman healthcheck run             %-18s %s" % (spread(p["wall_ms"]),
                                                              spread(p["cpu_ms"])))
        print("ratios: rcd/runc wall %.2fx, rcd/runc CPU %.2fx"
              % (med(r["took_ms"]) / med(f["wall_ms"]), r["cpu_ms_per_probe"] / med(f["cpu_ms"])))
        if p["wall_ms"]:
            print("        rcd/podman wall %.2fx, rcd/podman CPU %.2fx"
                  % (med(r["took_ms"]) / med(p["wall_ms"]),
                     r["cpu_ms_per_probe"] / med(p["cpu_ms"])))
        else:
            print("podman: not measured, it could not start a container here: %s"
                  % p["error"].splitlines()[-1][:300])
        if self.args.json:
            with open(self.args.json, "w") as fh:
                json.dump({"rcd": r, "runc": f, "podman": p}, fh, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=20, help="rcd's measuring window")
    ap.add_argument("--interval-ms", type=int, default=250)
    ap.add_argument("--work-dir", default=os.environ.get("RCD_BENCH_DIR"))
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    bench = Bench(args)
    return benchlib.run_cleaning_up(bench.main, bench.teardown)

if __name__ == "__main__":
    sys.exit(main())
