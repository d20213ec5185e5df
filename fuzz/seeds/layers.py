#!/usr/bin/env python3
"""Writes the layer_unpack seed corpus: tiny layers, hostile ones included.

Run from anywhere: python3 fuzz/seeds/layers.py. The output is committed; rerun it only to
change the seeds. The first byte of a seed picks the harness's form (see
fuzz_targets/layer_unpack.rs): a tar starts with its first name, 0xfe asks the harness to
gzip the rest, 0xff makes the rest a generated structure.
"""

import gzip
import io
import os
import random
import tarfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "layer_unpack")
MTIME = 1_600_000_000


def member(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, pax=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        info.pax_headers = pax
    return info, data


def layer(members, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
        end = tar.offset
    # The end-of-archive marker without tarfile's padding to a 10 KiB record: small seeds.
    return buf.getvalue()[:end] + bytes(1024)


D, F, S, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

SEEDS = {
    "plain": [member("etc/", D, mode=0o755), member("etc/hostname", data=b"box\n")],
    "root_entry": [member("./", D, mode=0o755), member("./bin/sh", data=b"#!", mode=0o755)],
    "links": [
        member("bin/", D),
        member("bin/busybox", data=b"ELF", mode=0o755),
        member("bin/sh", S, link="busybox"),
        member("bin/ls", H, link="bin/busybox"),
    ],
    "fifo": [member("run/ctl", tarfile.FIFOTYPE, mode=0o600)],
    "whiteouts": [
        member("etc/", D),
        member("etc/.wh.passwd"),
        member("var/.wh..wh..opq"),
        member(".wh..wh.plnk/1"),
    ],
    "dotdot": [member("../escape", data=b"x"), member("a/../../b", data=b"x")],
    "absolute": [member("/etc/passwd", data=b"root:x:0:0::/:/bin/sh\n")],
    "symlink_then_file": [
        member("out", S, link="../outside"),
        member("out/sentinel", data=b"overwritten"),
    ],
    "abs_symlink_then_dir": [
        member("up", S, link="/case/outside/dir"),
        member("up/new/", D),
    ],
    "hardlink_out": [member("l", S, link="/case/outside"), member("h", H, link="l/sentinel")],
    "replace_dir": [member("d/", D), member("d/f", data=b"1"), member("d", data=b"2")],
    "devices": [member("dev/null", tarfile.CHRTYPE), member("dev/sda", tarfile.BLKTYPE)],
    "pax_xattrs": [
        member(
            "f",
            data=b"x",
            pax={
                "SCHILY.xattr.user.a": "b",
                "SCHILY.xattr.trusted.overlay.opaque": "y",
                "mtime": "1600000000.5",
            },
        )
    ],
    "long_name": [member("d/" + "n" * 150, data=b"long"), member("s" * 120, S, link="t" * 130)],
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, members in SEEDS.items():
        fmt = tarfile.PAX_FORMAT if name.startswith("pax") else tarfile.GNU_FORMAT
        data = layer(members, fmt)
        with open(os.path.join(OUT, name + ".tar"), "wb") as f:
            f.write(data)
    plain = layer(SEEDS["links"])
    with open(os.path.join(OUT, "links.tar.gz"), "wb") as f:
        f.write(gzip.compress(plain, mtime=0))
    with open(os.path.join(OUT, "harness_gzip"), "wb") as f:
        f.write(b"\xfe" + layer(SEEDS["symlink_then_file"]))
    # Generated layers: any bytes make some structure; a fixed seed keeps them stable.
    rng = random.Random(7)
    for i in range(4):
        with open(os.path.join(OUT, f"structured{i}"), "wb") as f:
            f.write(b"\xff" + bytes(rng.randrange(256) for _ in range(256)))


if __name__ == "__main__":
    main()
