#!/usr/bin/env python3
# file-serve's three servers measured at the same time (by hand, and by tools/bench --concurrent), so the shared
# machine's noise (the hypervisor stole 9-46% of a core during single runs in session 6) falls on all of them
# alike. Every server is pinned to core 0 with one loop (SideBySide serve file-serve SIDE), every reader to core 1:
# four limit/reader.c per server, discarding (recv MSG_TRUNC), each reading the whole 1 GiB file once. Prints each
# server's CPU per GB sent (/proc utime + stime) and the ratios. GB/s is not printed: the servers share one core,
# so their rates depend on one another; the CPU each spends per GB does not.
#   [READERS=N] concurrent-fileserve.py [ROUNDS]   (needs tools/bench's build: Benchmarks/.build/release, .build/limit)
# READERS: readers per server, each reading the whole file (default 4).
import os, re, subprocess, sys

readers_per_server = int(os.environ.get("READERS", "4"))
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
B = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build")
SIZE = 1 << 30
sides = ["ours", "ours-mmap", "nio"]


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def start(side):
    s = subprocess.Popen(["taskset", "-c", "0", B + "/release/SideBySide", "serve", "file-serve", side, f"bytes={SIZE}",
                          "loops=1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while True:
        line = s.stdout.readline()
        if not line:
            sys.exit(f"{side}: server exited")
        m = re.search(r"port (\d+)", line)
        if m:
            return s, m.group(1)


# The file SideBySide's file-serve makes (byte i = i % 251), made here too if a run has not, and read once so it
# is in the page cache.
path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"zcr-file-serve-{SIZE}.bin")
if not os.path.exists(path) or os.path.getsize(path) != SIZE:
    block = bytes(i % 251 for i in range(251 * 4096))
    with open(path, "wb") as f:
        left = SIZE
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
with open(path, "rb") as f:
    while f.read(1 << 24):
        pass

results = {s: [] for s in sides}
for r in range(rounds):
    order = sides[r % 3:] + sides[:r % 3]
    srv = {s: start(s) for s in order}
    c0 = {s: cpu(srv[s][0].pid) for s in order}
    readers = {s: [subprocess.Popen(["taskset", "-c", "1", B + "/limit/reader", "127.0.0.1", srv[s][1], "262144", "64",
                                     "discard"], stdout=subprocess.PIPE, text=True) for _ in range(readers_per_server)] for s in order}
    for s in order:
        for p in readers[s]:
            out = p.stdout.read()
            p.wait()
            m = re.search(r"bytes (\d+)", out)
            got = int(m.group(1)) if m else 0
            if got != SIZE:
                sys.exit(f"{s}: a reader got {got} of {SIZE} bytes: {out}")
    c1 = {s: cpu(srv[s][0].pid) for s in order}
    for s in order:
        srv[s][0].stdin.close()
        srv[s][0].wait()
        results[s].append((c1[s] - c0[s]) / (readers_per_server * SIZE / 1e9))
    print(f"round {r + 1}: " + "  ".join(f"{s} {results[s][-1]:.3f} s/GB" for s in sides), flush=True)
med = {s: sorted(v)[len(v) // 2] for s, v in results.items()}
print("median server CPU per GB: " + "  ".join(f"{s} {med[s]:.3f}" for s in sides))
print(f"sendfile/mmap {med['ours'] / med['ours-mmap']:.3f}x CPU per GB, sendfile/NIO {med['ours'] / med['nio']:.3f}x")
