#!/usr/bin/env python3
"""Image updates (issue 18), timed against a real registry (docker-registry) on 127.0.0.1:

  1. A check cycle over N units that follow their tags, nothing changed: how long from
     `rctl update --now` until every unit's look has its answer, how many requests the
     registry saw (its access log), and what the daemon wrote (block-layer bytes from
     /proc/PID/io, and every file under the state root but container logs, by size and mtime).
  2. A rollback to a stored digest: a new image that turns unhealthy is tried and rolled back;
     from the `update-failed` event to the `start` event of the container on the old digest,
     against an operator's `rctl restart` of the same unit (from the request to its `start`
     event: a stop and a start).

Prints medians (min-max); the commands are in docs/PERFORMANCE.md.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import log, med, run, wait_until  # noqa: E402

MKROOTFS = os.path.join(REPO, "tests", "fixtures", "mkrootfs.sh")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout: busybox's rootfs as one layer, `/app/run` as another."""

    def __init__(self, path, base_tar_gz, base_diff):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.base = (self.blob(base_tar_gz), len(base_tar_gz), base_diff)
        self.manifests = []

    def blob(self, data):
        d = sha(data)
        with open(os.path.join(self.path, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return d

    def add(self, ref, script):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
            d = tarfile.TarInfo("app")
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            t.addfile(d)
            body = ("#!/bin/sh\n%s\n" % script).encode()
            f = tarfile.TarInfo("app/run")
            f.mode, f.size = 0o755, len(body)
            t.addfile(f, io.BytesIO(body))
        tar = raw.getvalue()
        gz = gzip.compress(tar, mtime=0)
        layers = [self.base, (self.blob(gz), len(gz), sha(tar))]
        config = json.dumps({
            "architecture": ARCH, "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["/app/run"]},
            "rootfs": {"type": "layers", "diff_ids": [l[2] for l in layers]},
        }).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.blob(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": d, "size": s} for d, s, _ in layers],
        }).encode()
        self.manifests.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": self.blob(manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": ref},
        })
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.manifests}, f)


class Registry:
    def __init__(self, work):
        self.dir = os.path.join(work, "registry")
        os.makedirs(self.dir, exist_ok=True)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: info\n  formatter: text\n"
                    "storage:\n  filesystem:\n    rootdirectory: %s/storage\n"
                    "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                    "http:\n  addr: 127.0.0.1:%d\n  secret: rcd-bench\n" % (self.dir, self.port))
        self.log_path = os.path.join(self.dir, "log")
        env = dict(os.environ)
        env.pop("REGISTRY_HTTP_ADDR", None)
        self.proc = subprocess.Popen(["docker-registry", "serve", config], env=env,
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        wait_until(self.up, "docker-registry", within=30, every=0.1)
        self.policy = os.path.join(self.dir, "policy.json")
        with open(self.policy, "w") as f:
            f.write('{"default":[{"type":"insecureAcceptAnything"}]}')

    def up(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                c.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                return b" 200 " in c.recv(100)
        except OSError:
            return False

    def push(self, layout, ref, repo_tag):
        run(["skopeo", "--policy", self.policy, "copy", "-q", "--dest-tls-verify=false",
             "oci:%s:%s" % (layout.path, ref), "docker://127.0.0.1:%d/%s" % (self.port, repo_tag)])
        return "127.0.0.1:%d/%s" % (self.port, repo_tag)

    def requests(self):
        """The registry's access log lines so far: (method) for each request."""
        out = []
        with open(self.log_path, errors="replace") as f:
            for line in f:
                if "response completed" in line and "http.request.method=" in line:
                    out.append(line.split("http.request.method=")[1].split()[0].strip('"'))
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Rcd:
    def __init__(self, work, bin_dir):
        os.makedirs(work, exist_ok=True)
        with open(os.path.join(work, "rcd.toml"), "w") as f:
            f.write("")
        self.work, self.bin = work, bin_dir
        self.units = os.path.join(work, "units")
        self.root = os.path.join(work, "root")
        self.sock = os.path.join(work, "rcd.sock")
        os.makedirs(self.units, exist_ok=True)
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "rcd"), "--units-dir", self.units, "--root", self.root,
             "--socket", self.sock, "--shim", os.path.join(bin_dir, "rcd-shim"),
             "--config", os.path.join(work, "rcd.toml")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Its log through a pipe, as journald takes it under systemd: the file is written by
        # this script, so the daemon's own block writes are its state's alone.
        self.log_copier = threading.Thread(target=self.copy_log, daemon=True)
        self.log_copier.start()

    def copy_log(self):
        with open(os.path.join(self.work, "rcd.log"), "ab") as f:
            for line in self.proc.stderr:
                f.write(line)

    def rctl(self, *args):
        p = subprocess.run([os.path.join(self.bin, "rctl"), "--socket", self.sock] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError("rctl %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
        return p.stdout

    def statuses(self):
        try:
            return json.loads(self.rctl("list", "-o", "json"))
        except RuntimeError:
            return []  # not up yet

    def status(self, unit):
        try:
            v = json.loads(self.rctl("status", unit, "-o", "json"))
        except RuntimeError:
            return {}  # not up yet
        return v[0] if isinstance(v, list) else v

    def write_bytes(self):
        with open("/proc/%d/io" % self.proc.pid) as f:
            return {k: int(v) for k, v in (l.split(":") for l in f)}

    def events(self, since="10m"):
        out = self.rctl("events", "--since", since, "--until", "0s", "-o", "json")
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def stop(self):
        benchlib.rcd_shutdown(self.bin, self.sock, self.proc)


def tree(root):
    """Every file under `root` but container logs: path -> (size, mtime_ns)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if os.path.relpath(dirpath, root).split(os.sep)[0] == "logs":
            continue
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def ms(rfc):
    """RFC 3339 (rcd's, UTC with Z) to ms since the epoch."""
    import datetime
    t = datetime.datetime.strptime(rfc.replace("Z", "+0000")[:23] + rfc.replace("Z", "+0000")[-5:],
                                   "%Y-%m-%dT%H:%M:%S.%f%z") if "." in rfc else \
        datetime.datetime.strptime(rfc.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S%z")
    return int(t.timestamp() * 1000)



def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--rollbacks", type=int, default=5)
    ap.add_argument("--bin-dir", default=os.path.join(REPO, "target", "release"))
    ap.add_argument("--work-dir", default=os.environ.get("RCD_BENCH_DIR", "/var/tmp"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rcd-update-", dir=args.work_dir)
    reg = rcd = None
    try:
        log("building the busybox layer")
        rootfs = os.path.join(work, "rootfs")
        run(["sh", MKROOTFS, rootfs])
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
            t.add(rootfs, arcname=".")
        base_tar = raw.getvalue()
        layout = Layout(os.path.join(work, "layout"), gzip.compress(base_tar, mtime=0, compresslevel=1),
                        sha(base_tar))
        good = "touch /tmp/ok; exec sleep 100000"
        layout.add("v1", "echo v1; " + good)
        reg = Registry(work)
        log("pushing %d tags" % args.count)
        images = [reg.push(layout, "v1", "app:t%03d" % i) for i in range(args.count)]
        unit_text = '[container]\nimage = "%s"\nstop_signal = "KILL"\n[network]\nmode = "none"\n%s'
        first = os.path.join(work, "cycles")
        os.makedirs(os.path.join(first, "units"), exist_ok=True)
        for i, image in enumerate(images):
            with open(os.path.join(first, "units", "u%03d.toml" % i), "w") as f:
                f.write(unit_text % (image, '[update]\npolicy = "registry"\ncheck = "24h"\n'))
        rcd = Rcd(first, args.bin_dir)
        wait_until(lambda: sum(1 for u in rcd.statuses() if u.get("state") == "running") >= args.count,
                   "%d units running" % args.count, within=300, every=0.5)
        # The daemon's first looks (at its start) are done before the cycles are timed.
        wait_until(lambda: all((rcd.status("u%03d" % i).get("update") or {}).get("checked")
                               for i in range(args.count)), "the first looks", within=120, every=0.5)
        time.sleep(2)

        # 1. Check cycles, nothing changed.
        cycles, heads, others, wrote = [], [], [], []
        for _ in range(args.cycles):
            before_files, before_io = tree(rcd.root), rcd.write_bytes()
            before_reqs = len(reg.requests())
            t0 = int(time.time() * 1000)
            rcd.rctl("update", "--now")

            def answered():
                checked = [(rcd.status("u%03d" % i).get("update") or {}).get("checked")
                           for i in range(args.count)]
                return all(c and ms(c) >= t0 for c in checked) and checked
            wait_until(answered, "every look answered", within=60, every=0.2)
            last = max(ms(c) for c in answered())
            cycles.append(last - t0)
            time.sleep(1)  # the registry's log lines of the last requests
            reqs = reg.requests()[before_reqs:]
            heads.append(sum(1 for m in reqs if m == "HEAD"))
            others.append(sum(1 for m in reqs if m != "HEAD"))
            after_files, after_io = tree(rcd.root), rcd.write_bytes()
            changed = [p for p in set(before_files) | set(after_files)
                       if before_files.get(p) != after_files.get(p)]
            wrote.append((after_io["write_bytes"] - before_io["write_bytes"], len(changed)))
            time.sleep(1)

        rcd.stop()
        # 2. Rollbacks of one unit with a health check and a gate, against restarts of it; a
        #    daemon of its own, so that nothing else runs.
        unit = "u000"
        second = os.path.join(work, "rollbacks")
        os.makedirs(os.path.join(second, "units"), exist_ok=True)
        with open(os.path.join(second, "units", unit + ".toml"), "w") as f:
            f.write(unit_text % (images[0], '[health]\ncmd = ["test", "-f", "/tmp/ok"]\n'
                                 'interval = "200ms"\nretries = 1\n[update]\npolicy = "registry"\n'
                                 'check = "24h"\ngate = "running:30s"\n'))
        rcd = Rcd(second, args.bin_dir)
        wait_until(lambda: rcd.status(unit).get("state") == "running"
                   and (rcd.status(unit).get("health") or {}).get("status") == "healthy",
                   "u000 healthy", within=60, every=0.2)
        rollbacks, restarts = [], []
        for k in range(args.rollbacks):
            # Restart: from the request to the new container's start event.
            t0 = int(time.time() * 1000)
            rcd.rctl("restart", unit)
            wait_until(lambda: any(e["unit"] == unit and e["action"] == "start" and e["time_ms"] >= t0
                                   for e in rcd.events("1m")), "restarted", within=60, every=0.1)
            start = min(e["time_ms"] for e in rcd.events("1m")
                        if e["unit"] == unit and e["action"] == "start" and e["time_ms"] >= t0)
            restarts.append(start - t0)
            wait_until(lambda: (rcd.status(unit).get("health") or {}).get("status") == "healthy",
                       "healthy again", within=60, every=0.1)
            # A bad image: healthy for 0.5 s, then not.
            layout.add("bad%d" % k, "echo bad%d; touch /tmp/ok; sleep 0.5; rm /tmp/ok; exec sleep 100000" % k)
            reg.push(layout, "bad%d" % k, "app:t000")
            t1 = int(time.time() * 1000)
            rcd.rctl("update", "--now", unit)

            def rolled_back():
                evs = [e for e in rcd.events("5m") if e["unit"] == unit and e["time_ms"] >= t1]
                failed = [e["time_ms"] for e in evs if e["action"] == "update-failed"]
                if not failed:
                    return None
                starts = [e["time_ms"] for e in evs if e["action"] == "start" and e["time_ms"] >= failed[0]]
                return starts and (failed[0], starts[0])
            wait_until(rolled_back, "rolled back", within=120, every=0.1)
            failed_at, started_at = rolled_back()
            rollbacks.append(started_at - failed_at)
            wait_until(lambda: (rcd.status(unit).get("health") or {}).get("status") == "healthy",
                       "healthy on the old digest", within=60, every=0.1)
    finally:
        if rcd:
            rcd.stop()
        if reg:
            reg.stop()
        if os.environ.get("RCD_BENCH_KEEP"):
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print("%d units following their tags, %d cycles; ms, median (min-max)" % (args.count, args.cycles))
    c = statistics.median(cycles)
    print("check cycle, nothing changed: %s (target <= 1000: %s)" % (med(cycles), "met" if c <= 1000 else "MISSED"))
    print("registry requests a cycle: HEAD %s, other %s (target <= %d: %s)"
          % (heads, others, args.count,
             "met" if all(h + o <= args.count for h, o in zip(heads, others)) else "MISSED"))
    print("daemon writes a cycle (block bytes, files changed under the root but container logs; "
          "its own log goes through a pipe): %s (target none: %s)"
          % (wrote, "met" if all(b == 0 and n == 0 for b, n in wrote) else "MISSED"))
    r, s = statistics.median(rollbacks), statistics.median(restarts)
    print("rollback, update-failed to the old digest's start: %s" % med(rollbacks))
    print("rctl restart, request to start (a stop and a start): %s" % med(restarts))
    print("rollback - restart: %.0f ms (target <= 100: %s)" % (r - s, "met" if r - s <= 100 else "MISSED"))


if __name__ == "__main__":
    main()
