#!/usr/bin/env python3
"""Counts the FUSE requests one command causes on one mount (bench/fuse.sh).

Usage: fuse_trace.py [--json] MOUNTPOINT LABEL -- CMD [ARG...]

Runs CMD with the kernel's fuse:fuse_request_send and fuse:fuse_request_end
tracepoints (recent kernels only) enabled in a private tracefs instance,
filtered to MOUNTPOINT's FUSE connection, and with --json prints one JSON
line: the label, the wall
time of CMD, and per opcode the number of requests, the total and mean time
from send to end (the daemon's service time plus queueing) and the mean
reply payload (reply length minus the 16-byte header; for READ the bytes
returned per request); without --json the same as one line of text. CMD's
stdout and stderr go to /dev/null; its exit status must be 0.

Needs root and tracefs (/sys/kernel/tracing). The instance
("cairn-fuse-bench") is removed on exit; a stale one from a killed run is
removed first. Exit 3 when the kernel has no fuse tracepoints.
"""

import json
import os
import re
import subprocess
import sys
import time

TRACEFS = "/sys/kernel/tracing"
INSTANCE = os.path.join(TRACEFS, "instances", "cairn-fuse-bench")
EVENTS = ("fuse_request_send", "fuse_request_end")
LINE = re.compile(
    r"\s(\d+\.\d+): (fuse_request_send|fuse_request_end): connection (\d+) "
    r"req (\d+) (?:opcode \d+ \((\w+)\) len (\d+)|len (\d+) error (-?\d+))")


def connection_of(mountpoint):
    """The kernel dev_t (MKDEV: major << 20 | minor) of the mount."""
    mp = os.path.realpath(mountpoint)
    dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            # Later mounts on the same point hide earlier ones: keep the last.
            if fields[4].replace("\\040", " ") == mp:
                dev = fields[2]
    if dev is None:
        sys.exit(f"fuse_trace: {mp} is not a mount point")
    major, minor = (int(x) for x in dev.split(":"))
    return (major << 20) | minor


def write(path, value):
    with open(path, "w") as f:
        f.write(value)


def remove_instance():
    if os.path.isdir(INSTANCE):
        for ev in EVENTS:
            try:
                write(f"{INSTANCE}/events/fuse/{ev}/enable", "0")
            except OSError:
                pass
        os.rmdir(INSTANCE)


def main():
    args = sys.argv[1:]
    as_json = bool(args) and args[0] == "--json"
    if as_json:
        args = args[1:]
    if len(args) < 4 or args[2] != "--":
        sys.exit(__doc__)
    mountpoint, label, cmd = args[0], args[1], args[3:]
    if not os.path.isdir(f"{TRACEFS}/events/fuse"):
        print("fuse_trace: no fuse tracepoints in this kernel", file=sys.stderr)
        sys.exit(3)
    conn = connection_of(mountpoint)
    remove_instance()
    os.mkdir(INSTANCE)
    try:
        write(f"{INSTANCE}/buffer_size_kb", "65536")  # Per CPU.
        for ev in EVENTS:
            write(f"{INSTANCE}/events/fuse/{ev}/filter", f"connection == {conn}")
            write(f"{INSTANCE}/events/fuse/{ev}/enable", "1")
        write(f"{INSTANCE}/tracing_on", "1")
        t0 = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        write(f"{INSTANCE}/tracing_on", "0")
        overrun = 0
        for cpu in os.listdir(f"{INSTANCE}/per_cpu"):
            with open(f"{INSTANCE}/per_cpu/{cpu}/stats") as f:
                for line in f:
                    if line.startswith("overrun:"):
                        overrun += int(line.split()[1])
        with open(f"{INSTANCE}/trace") as f:
            text = f.read()
    finally:
        remove_instance()

    sent = {}  # unique -> (opcode, time)
    ops = {}
    for m in LINE.finditer(text):
        ts, ev, uniq = float(m.group(1)), m.group(2), int(m.group(4))
        if ev == "fuse_request_send":
            op = m.group(5).removeprefix("FUSE_")
            sent[uniq] = (op, ts)
            o = ops.setdefault(op, {"n": 0, "busy_s": 0.0, "reply_bytes": 0,
                                    "replies": 0, "errors": 0})
            o["n"] += 1
        else:
            s = sent.pop(uniq, None)
            if s is None:
                continue
            o = ops[s[0]]
            o["busy_s"] += ts - s[1]
            o["reply_bytes"] += max(int(m.group(7)) - 16, 0)  # Minus header.
            o["replies"] += 1
            if int(m.group(8)) != 0:
                o["errors"] += 1
    out = {"label": label, "wall_s": round(wall, 6), "overrun": overrun,
           "requests": sum(o["n"] for o in ops.values()), "ops": {}}
    for op, o in sorted(ops.items(), key=lambda kv: -kv[1]["n"]):
        r = max(o["replies"], 1)
        out["ops"][op] = {
            "n": o["n"],
            "total_ms": round(o["busy_s"] * 1e3, 2),
            "mean_us": round(o["busy_s"] / r * 1e6, 1),
            "mean_reply_bytes": round(o["reply_bytes"] / r),
            "errors": o["errors"],
        }
    if as_json:
        print(json.dumps(out))
        return
    parts = []
    for op, o in out["ops"].items():
        p = f"{op} {o['n']}x {o['mean_us']:.0f}us"
        if op == "READ":
            p += f" {o['mean_reply_bytes'] / 1024:.0f}KiB"
        if o["errors"]:
            p += f" ({o['errors']} err)"
        parts.append(p)
    lost = f" [{overrun} events lost]" if overrun else ""
    print(f"{label:<36} {wall:7.3f}s {out['requests']:6d} req: "
          + "  ".join(parts) + lost)


if __name__ == "__main__":
    main()
