#!/usr/bin/env python3
# The kernel's own costs of sending a file, without any server around them: a blocking sender on core 0 and
# discarding readers (recv MSG_TRUNC) on core 1, 4 x the 1 GiB file-serve file (in the page cache) in all.
# Prints GB/s and the sender's CPU per GB (getrusage) for one way of sending:
#   [STREAMS=K] sendfile-probe.py sendfile | splice [PIPE_BYTES] | mmap
# sendfile: os.sendfile; splice: file -> pipe (F_SETPIPE_SZ PIPE_BYTES, default 1 MiB) -> socket; mmap: send from a
# mapping in 1 MiB calls (the copy the mmap path pays). STREAMS=1 (the default): one connection sends the file 4
# times; STREAMS=4: four connections at once, one thread each, send it once each (what file-serve's server does).
# Sessions 7 and 8 compared these (BENCHMARKS.md, file serving).
import fcntl, mmap, os, resource, socket, sys, threading, time

path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "zcr-file-serve-1073741824.bin")
if not os.path.exists(path):
    sys.exit(f"{path}: run Benchmarks/adhoc/concurrent-fileserve.py once first (it makes the file)")
SIZE = os.path.getsize(path)
mode = sys.argv[1] if len(sys.argv) > 1 else "sendfile"
pipe_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
F_SETPIPE_SZ = 1031
streams = int(os.environ.get("STREAMS", "1"))
assert streams in (1, 2, 4), "STREAMS: 1, 2 or 4"
times = 4 // streams  # sends of the file per connection
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(streams)
port = listener.getsockname()[1]
readers = []
for _ in range(streams):
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
        os._exit(0 if got == times * SIZE else 1)
    readers.append(reader)
os.sched_setaffinity(0, {0})
sockets = [listener.accept()[0] for _ in range(streams)]


def send_file(s):
    f = os.open(path, os.O_RDONLY)
    for _ in range(times):
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
    os.close(f)
    s.close()


r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
threads = [threading.Thread(target=send_file, args=(s,)) for s in sockets]
for t in threads:
    t.start()
for t in threads:
    t.join()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.time()
status = max(os.waitpid(r, 0)[1] for r in readers)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"{mode} {streams} stream{'s' if streams > 1 else ''}, {'pipe ' + str(pipe_bytes) + ' ' if mode == 'splice' else ''}{4 * SIZE / (t1 - t0) / 1e9:.2f} GB/s, "
      f"sender CPU {cpu / (4 * SIZE / 1e9):.3f} s/GB, reader got everything: {status == 0}")
