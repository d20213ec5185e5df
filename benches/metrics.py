#!/usr/bin/env python3
"""`/metrics` (issue 19): the time of a scrape of N running units over the daemon's socket,
and the daemon's CPU while nobody scrapes (nothing is sampled in the background).

Prints medians (min-max); the commands are in docs/PERFORMANCE.md.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import log, med, run, wait_until  # noqa: E402

MKROOTFS = os.path.join(REPO, "tests", "fixtures", "mkrootfs.sh")


def scrape(sock):
    """One GET /metrics on a fresh connection: (ms, body bytes)."""
    t = time.monotonic()
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: rcd\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        data += d
    c.close()
    ms = (time.monotonic() - t) * 1000
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.decode(errors="replace"))
    return ms, body


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--bin-dir", default=os.path.join(REPO, "target", "release"))
    ap.add_argument("--work-dir", default=os.environ.get("RCD_BENCH_DIR", "/var/tmp"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rcd-metrics-", dir=args.work_dir)
    bin_dir = args.bin_dir
    sock = os.path.join(work, "rcd.sock")
    proc = None
    try:
        rootfs = os.path.join(work, "rootfs")
        run(["sh", MKROOTFS, rootfs])
        units = os.path.join(work, "units")
        os.makedirs(units)
        for i in range(args.count):
            with open(os.path.join(units, "u%04d.toml" % i), "w") as f:
                f.write('[container]\nrootfs = "%s"\ncommand = ["sleep", "100000"]\n'
                        'stop_signal = "KILL"\n[network]\nmode = "none"\n' % rootfs)
        with open(os.path.join(work, "rcd.toml"), "w") as f:
            f.write("")
        proc = subprocess.Popen(
            [os.path.join(bin_dir, "rcd"), "--units-dir", units, "--root", os.path.join(work, "root"),
             "--socket", sock, "--shim", os.path.join(bin_dir, "rcd-shim"),
             "--config", os.path.join(work, "rcd.toml")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "rcd.log"), "a"))

        def running():
            p = subprocess.run([os.path.join(bin_dir, "rctl"), "--socket", sock, "list", "-o", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if p.returncode != 0:
                return False
            return sum(1 for u in json.loads(p.stdout) if u.get("state") == "running") >= args.count
        log("starting %d units" % args.count)
        wait_until(running, "%d units running" % args.count, within=1800, every=2)
        time.sleep(5)

        def idle_cpu():
            u0, s0, _, _ = benchlib.proc_cpu_ticks(proc.pid)
            time.sleep(args.idle_seconds)
            u1, s1, _, _ = benchlib.proc_cpu_ticks(proc.pid)
            return (u1 + s1 - u0 - s0) * 1000 / os.sysconf("SC_CLK_TCK") / args.idle_seconds
        # Before any scrape, and after: scrapes leave nothing running.
        idle_before = idle_cpu()
        scrape(sock)
        times, size = [], 0
        for _ in range(args.scrapes):
            ms, body = scrape(sock)
            times.append(ms)
            size = len(body)
            time.sleep(0.2)
        samples = body.count(b"\n") - body.count(b"\n#")
        time.sleep(2)
        idle_after = idle_cpu()
    finally:
        if proc:
            benchlib.rcd_shutdown(bin_dir, sock, proc)
        shutil.rmtree(work, ignore_errors=True)
    print("%d running units, %d scrapes over the socket; ms, median (min-max)" % (args.count, args.scrapes))
    print("scrape: %s (target <= 50: %s); %d bytes, %d samples"
          % (med(times), "met" if statistics.median(times) <= 50 else "MISSED", size, samples))
    print("daemon CPU with nobody scraping, over %.0f s: %.2f ms/s before any scrape, %.2f after "
          "(target: no extra: %s)" % (args.idle_seconds, idle_before, idle_after,
                                      "met" if idle_after <= idle_before + 1.0 else "MISSED"))


if __name__ == "__main__":
    main()
