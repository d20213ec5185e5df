#!/usr/bin/env python3
"""The Docker Engine API (issue 17), timed with the real docker CLI against rcd and against
podman's compat API in the same run, on one busybox rootfs:

  1. `docker ps` with N running containers (median of the rounds), rcd and podman;
  2. `docker stats --no-stream` over the N, rcd;
  3. rcd's idle CPU over a window with nothing happening, with the Docker socket configured and
     without it (two daemons on the same units, one after the other).

Prints medians, min-max and the ratios; the commands are in docs/PERFORMANCE.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import socket
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import log, med, run, wait_until  # noqa: E402

MKROOTFS = os.path.join(REPO, "tests", "fixtures", "mkrootfs.sh")


def timed(cmd, rounds):
    out = []
    for _ in range(rounds):
        t = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out.append((time.monotonic() - t) * 1000)
        if p.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr.decode(errors="replace")))
    return out


def http_raw(sock_path, request):
    """One request on a fresh connection; the whole response, headers and body, as bytes."""
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock_path)
    c.sendall(request)
    out = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        out += d
    c.close()
    return out


class Canned:
    """The CLI's floor: a server that answers `docker ps`'s two requests at once with the bytes
    rcd sent for them, so timing `docker ps` against it is the client's own share."""

    def __init__(self, rcd_sock, path):
        def fetch(method, target):
            raw = http_raw(rcd_sock, b"%s %s HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
                           % (method, target))
            # Keep-alive for the CLI, which sends both requests on one connection.
            return raw.replace(b"\r\nconnection: close", b"")
        self.ping = fetch(b"HEAD", b"/_ping")
        self.list = fetch(b"GET", b"/v1.44/containers/json")
        self.path = path
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(c,), daemon=True).start()

    def answer(self, c):
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                c.sendall(self.ping if b"/_ping" in head.split(b"\r\n")[0] else self.list)
        c.close()

    def close(self):
        self.server.close()



class Rcd:
    def __init__(self, work, bin_dir, rootfs, count, docker):
        self.work, self.bin = work, bin_dir
        self.units = os.path.join(work, "units")
        self.root = os.path.join(work, "root")
        self.sock = os.path.join(work, "rcd.sock")
        self.dsock = os.path.join(work, "docker.sock")
        self.config = os.path.join(work, "rcd-%s.toml" % ("docker" if docker else "plain"))
        os.makedirs(self.units, exist_ok=True)
        with open(self.config, "w") as f:
            if docker:
                f.write('[api]\ndocker_socket = "%s"\n' % self.dsock)
        for i in range(count):
            with open(os.path.join(self.units, "u%03d.toml" % i), "w") as f:
                f.write('[container]\nrootfs = "%s"\ncommand = ["sleep", "100000"]\n'
                        '[network]\nmode = "none"\n' % rootfs)
        self.proc = None

    def start(self, count):
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "rcd"), "--units-dir", self.units, "--root", self.root,
             "--socket", self.sock, "--shim", os.path.join(self.bin, "rcd-shim"),
             "--config", self.config],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "rcd.log"), "a"))

        def all_running():
            p = subprocess.run([os.path.join(self.bin, "rctl"), "--socket", self.sock, "list",
                                "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if p.returncode != 0:
                return False
            units = json.loads(p.stdout)
            return sum(1 for u in units if u.get("state") == "running") >= count
        wait_until(all_running, "%d units running" % count, within=300, every=0.2)

    def cpu_ms(self):
        utime, stime, _, _ = benchlib.proc_cpu_ticks(self.proc.pid)
        return (utime + stime) * 1000 / os.sysconf("SC_CLK_TCK")

    def stop(self):
        benchlib.rcd_shutdown(self.bin, self.sock, self.proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--bin-dir", default=os.path.join(REPO, "target", "release"))
    ap.add_argument("--work-dir", default=os.environ.get("RCD_BENCH_DIR", "/var/tmp"))
    args = ap.parse_args()
    docker = shutil.which("docker")
    if not docker:
        sys.exit("docker_api.py: the docker CLI is missing (sh scripts/setup.sh installs one)")
    work = tempfile.mkdtemp(prefix="rcd-dockerapi-", dir=args.work_dir)
    rootfs = os.path.join(work, "rootfs")
    log("building the busybox rootfs")
    run(["sh", MKROOTFS, rootfs])
    n, rounds = args.count, args.rounds

    # rcd with the Docker socket.
    rcd = Rcd(work, args.bin_dir, rootfs, n, docker=True)
    rcd.start(n)
    dhost = ["docker", "-H", "unix://" + rcd.dsock]
    timed(dhost + ["ps", "-q"], 2)
    canned = Canned(rcd.dsock, os.path.join(work, "canned.sock"))
    chost = ["docker", "-H", "unix://" + canned.path]
    timed(chost + ["ps", "-q"], 2)
    # Interleaved, so that the machine's noise falls on both alike.
    ps_rcd, ps_floor = [], []
    for _ in range(rounds):
        ps_rcd += timed(dhost + ["ps"], 1)
        ps_floor += timed(chost + ["ps"], 1)
    canned.close()
    version = timed(["docker", "--version"], rounds)
    stats_rcd = timed(dhost + ["stats", "--no-stream"], max(3, rounds // 3))
    time.sleep(2)
    c0 = rcd.cpu_ms()
    time.sleep(args.idle_seconds)
    idle_docker = (rcd.cpu_ms() - c0) / args.idle_seconds
    rcd.stop()
    # The same units, the same daemon, without the Docker socket.
    plain = Rcd(work, args.bin_dir, rootfs, n, docker=False)
    plain.start(n)
    time.sleep(2)
    c0 = plain.cpu_ms()
    time.sleep(args.idle_seconds)
    idle_plain = (plain.cpu_ms() - c0) / args.idle_seconds
    plain.stop()

    # podman's compat API on the same rootfs.
    psock = os.path.join(work, "podman.sock")
    service = subprocess.Popen(["podman", "system", "service", "--time=0", "unix://" + psock],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    names = ["rcdbench-%d-%03d" % (os.getpid(), i) for i in range(n)]
    try:
        wait_until(lambda: os.path.exists(psock), "podman's socket", within=30)
        log("starting %d podman containers" % n)
        for name in names:
            # Limits within the machine's own (podman raises nofile by default, which a
            # sandbox without CAP_SYS_RESOURCE refuses), as benches/scale.py runs podman.
            run(["podman", "run", "-d", "--name", name, "--network", "none",
                 "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 "--rootfs", rootfs + ":O", "sleep", "100000"])
        phost = ["docker", "-H", "unix://" + psock]
        timed(phost + ["ps", "-q"], 2)
        ps_podman = timed(phost + ["ps"], rounds)
    finally:
        run(["podman", "rm", "-f", "-t", "0"] + names, check=False)
        service.terminate()
        service.wait()
    shutil.rmtree(work, ignore_errors=True)

    print("%d running containers, %d rounds; ms, median (min-max)" % (n, rounds))
    print("docker ps, rcd:                 %s" % med(ps_rcd))
    print("docker ps, podman compat API:   %s" % med(ps_podman))
    ratio = statistics.median(ps_rcd) / statistics.median(ps_podman)
    print("rcd/podman: %.2fx (target <= 0.2x: %s)" % (ratio, "met" if ratio <= 0.2 else "MISSED"))
    print("docker ps, a server answering at once with rcd's bytes (the CLI's floor): %s"
          % med(ps_floor))
    print("docker --version (no server at all): %s" % med(version))
    print("floor/podman: %.2fx; rcd's own share of docker ps: %.1f ms"
          % (statistics.median(ps_floor) / statistics.median(ps_podman),
             statistics.median(ps_rcd) - statistics.median(ps_floor)))
    s = statistics.median(stats_rcd)
    print("docker stats --no-stream, rcd: %s (target <= 1000: %s)"
          % (med(stats_rcd), "met" if s <= 1000 else "MISSED"))
    print("rcd idle CPU over %.0f s, ms per s: with the Docker socket %.2f, without %.2f"
          % (args.idle_seconds, idle_docker, idle_plain))


if __name__ == "__main__":
    main()
