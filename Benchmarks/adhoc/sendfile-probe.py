#!/usr/bin/env python3
# The kernel's own costs of sending a file, without any server around them: one connection, a blocking sender on
# core 0 and a discarding reader (recv MSG_TRUNC) on core 1, 4 x the 1 GiB file-serve file (in the page cache).
# Prints GB/s and the sender's CPU per GB (getrusage) for one way of sending:
#   sendfile-probe.py sendfile | splice [PIPE_BYTES] | mmap
# sendfile: os.sendfile; splice: file -> pipe (F_SETPIPE_SZ PIPE_BYTES, default 1 MiB) -> socket; mmap: send from a
# mapping in 1 MiB calls (the copy the mmap path pays). Session 7 compared these (BENCHMARKS.md, file serving).
import fcntl, mmap, os, resource, socket, sys, time

path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "zcr-file-serve-1073741824.bin")
if not os.path.exists(path):
    sys.exit(f"{path}: run Benchmarks/adhoc/concurrent-fileserve.py once first (it makes the file)")
SIZE = os.path.getsize(path)
mode = sys.argv[1] if len(sys.argv) > 1 else "sendfile"
pipe_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
F_SETPIPE_SZ = 1031
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]
reader = os.fork()
if reader == 0:
    os.sched_setaffinity(0, {1})
    c = socket.create_connection(("127.0.0.1", port))
    got = 0
    while True:
        n = len(c.recv(1 << 18, socket.MSG_TRUNC))
        if n == 0:
            break
        got += n
    os._exit(0 if got == 4 * SIZE else 1)
os.sched_setaffinity(0, {0})
s, _ = listener.accept()
f = os.open(path, os.O_RDONLY)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
for _ in range(4):
    off = 0
    if mode == "sendfile":
        while off < SIZE:
            off += os.sendfile(s.fileno(), f, off, SIZE - off)
    elif mode == "splice":
        pr, pw = os.pipe()
        fcntl.fcntl(pw, F_SETPIPE_SZ, pipe_bytes)
        while off < SIZE:
            n = os.splice(f, pw, pipe_bytes, offset_src=off)
            off += n
            while n > 0:
                n -= os.splice(pr, s.fileno(), n, flags=os.SPLICE_F_MORE if off < SIZE else 0)
        os.close(pr)
        os.close(pw)
    else:
        m = mmap.mmap(f, SIZE, prot=mmap.PROT_READ)
        view = memoryview(m)
        while off < SIZE:
            off += s.send(view[off:off + (1 << 20)])
        view.release()
        m.close()
s.close()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.time()
_, status = os.waitpid(reader, 0)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"{mode} {'pipe ' + str(pipe_bytes) + ' ' if mode == 'splice' else ''}{4 * SIZE / (t1 - t0) / 1e9:.2f} GB/s, "
      f"sender CPU {cpu / (4 * SIZE / 1e9):.3f} s/GB, reader got everything: {status == 0}")
