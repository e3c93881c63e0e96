#!/usr/bin/env python3
# Hand measurements of issue 11 (not run by tools/bench): one pinned 1,000-connection 64-byte ping-pong, the server
# on core 0, limit/pingpong.c on core 1; prints req/s and the server's CPU (utime+stime, /proc) per request.
#   pinned-pingpong.py SIDE SECONDS [perf|strace|none]
# SIDE: ours (SideBySide serve ping-pong-1k ours, one loop) | limit (limit/echo 1) | zcr:PATH (PATH serve --mode echo
# --threads 1, e.g. two builds of zcr alternated). perf records the server with -e cpu-clock -g for SECONDS-3 s
# (/tmp/perf-pp-SIDE.data); strace -c -f attaches for 3 s (/tmp/strace-pp-SIDE.txt). Needs Benchmarks/.build/limit.
import subprocess, sys, json, time, os, re
side, secs = sys.argv[1], int(sys.argv[2]); tool = sys.argv[3] if len(sys.argv) > 3 else "none"
B = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build")
if side == "limit": cmd = [B + "/limit/echo", "1"]
elif side.startswith("zcr:"): cmd = [side[4:], "serve", "--mode", "echo", "--threads", "1", "--port", "0"]
else: cmd = [B + "/release/SideBySide", "serve", "ping-pong-1k", side, "loops=1", "connections=1000", "message=64", f"seconds={secs}"]
srv = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = None
while port is None:
    line = srv.stdout.readline()
    if not line: sys.exit("server exited")
    m = re.search(r"port\D*(\d+)", line) or re.search(r"listening on \S+:(\d+)", line)
    if m: port = m.group(1)
cli = subprocess.Popen(["taskset", "-c", "1", B + "/limit/pingpong", "127.0.0.1", port, "1000", str(secs), "64"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert cli.stdout.readline().startswith("warm")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
c0 = cpu(srv.pid)
cli.stdin.write("go\n"); cli.stdin.flush()
tag = re.sub(r"[:/]", "_", side)
t = None
if tool != "none":
    time.sleep(1)
    if tool == "perf":
        t = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-g", "-p", str(srv.pid), "-o", f"/tmp/perf-pp-{tag}.data", "--", "sleep", str(max(secs - 3, 1))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        t = subprocess.Popen(["timeout", "-s", "INT", "3", "strace", "-c", "-f", "-p", str(srv.pid), "-o", f"/tmp/strace-pp-{tag}.txt"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
res = json.loads(cli.stdout.readline())
c1 = cpu(srv.pid)
cli.wait(timeout=30)
if t: t.wait(timeout=60)
srv.kill(); srv.wait()
r = res["requests"]
print(f"{side}: {r/res['seconds']/1e3:.1f} k req/s, server CPU {(c1-c0)*1e6/r:.2f} us/req, p99 {res['p99_us']/1000:.2f} ms, errors {res['errors']}", flush=True)
