#!/usr/bin/env python3
# Hand measurements of issue 11 (not run by tools/bench): `ZCR serve --mode blast --slice-bytes 64 --threads 1`
# (1 GiB in 64-byte slices) on core 0, read by limit/reader.c (256 KiB reads) on core 1; prints GB/s, slices/s and
# the server's CPU per slice. Used to compare two builds of zcr alternately:  pinned-blast.py PATH-TO-ZCR
import subprocess, sys, os, re
zcr = sys.argv[1]; B = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build")
srv = subprocess.Popen(["taskset", "-c", "0", zcr, "serve", "--mode", "blast", "--slice-bytes", "64", "--threads", "1", "--port", "0"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
port = None
while port is None:
    line = srv.stdout.readline()
    if not line: sys.exit("server exited")
    m = re.search(r"listening on \S+:(\d+)", line)
    if m: port = m.group(1)
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
c0 = cpu(srv.pid)
out = subprocess.run(["taskset", "-c", "1", B + "/limit/reader", "127.0.0.1", port, "262144"], capture_output=True, text=True, timeout=120).stdout.split()
c1 = cpu(srv.pid)
srv.kill(); srv.wait()
b, s = float(out[1]), float(out[3])
print(f"{os.path.basename(zcr)}: {b/s/1e9:.3f} GB/s, {b/64/s/1e6:.2f} M slices/s, server CPU {(c1-c0)*1e9/(b/64):.1f} ns/slice ({c1-c0:.2f} s)", flush=True)
