#!/usr/bin/env python3
# Two echo servers measured at the same time (by hand, and by tools/bench --concurrent), so the shared machine's
# noise falls on both alike. Both servers are pinned to core 0 and both clients (limit/pingpong.c, 1,000 connections
# of 64-byte ping-pong each) to core 1; each server's CPU per request comes from /proc (utime, stime). Rounds
# alternate which side starts first. Prints each side's req/s and CPU per request, and the B/A ratio of CPU per
# request: the way to compare two builds of zcr, or zcr against the C server, when separate runs differ by 20%.
#   concurrent-pingpong.py A B [SECONDS [ROUNDS]]
# A and B: limit (limit/echo 1) or a zcr binary (zcr serve --mode echo --threads 1; ZARGS="--api async" adds
# arguments). CONNS=N changes the connections per client. Needs Benchmarks/.build/limit.
import json, os, re, subprocess, sys

A, B = sys.argv[1], sys.argv[2]
secs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
LIMIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "limit")
conns = os.environ.get("CONNS", "1000")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    t = os.sysconf("SC_CLK_TCK")
    return int(f[11]) / t, int(f[12]) / t


def start(side):
    if side == "limit":
        cmd = [LIMIT + "/echo", "1"]
    else:
        cmd = [side, "serve", "--mode", "echo", "--threads", "1", "--port", "0"] + os.environ.get("ZARGS", "").split()
    s = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    while True:
        line = s.stdout.readline()
        if not line:
            sys.exit(f"{side}: server exited")
        m = re.search(r"listening on \S+:(\d+)", line) or re.search(r"port\D*(\d+)", line)
        if m:
            return s, m.group(1)


ratios = []
for r in range(rounds):
    order = [A, B] if r % 2 == 0 else [B, A]
    srv = {z: start(z) for z in order}
    cli = {z: subprocess.Popen(["taskset", "-c", "1", LIMIT + "/pingpong", "127.0.0.1", srv[z][1], conns, str(secs), "64"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for z in order}
    for z in order:
        assert cli[z].stdout.readline().startswith("warm")
    c0 = {z: cpu(srv[z][0].pid) for z in order}
    for z in order:
        cli[z].stdin.write("go\n")
        cli[z].stdin.flush()
    res = {z: json.loads(cli[z].stdout.readline()) for z in order}
    c1 = {z: cpu(srv[z][0].pid) for z in order}
    per = {}
    for z in order:
        n = res[z]["requests"]
        u = (c1[z][0] - c0[z][0]) * 1e6 / n
        s = (c1[z][1] - c0[z][1]) * 1e6 / n
        per[z] = u + s
        print(f"  {os.path.basename(z):12s} {n / res[z]['seconds'] / 1e3:6.1f} k req/s  CPU {u + s:5.2f} us/req "
              f"(user {u:4.2f} sys {s:4.2f})  errors {res[z]['errors']}")
        cli[z].wait()
        srv[z][0].kill()
        srv[z][0].wait()
    ratios.append(per[B] / per[A])
    print(f"round {r + 1}: B/A CPU per request {ratios[-1]:.3f}", flush=True)
ratios.sort()
print(f"median B/A {ratios[len(ratios) // 2]:.3f}")
