// The loopback limit for the one-connection sending shapes: a blocking C server with no event loop.
//   writer blast TOTAL_BYTES             one buffer of TOTAL_BYTES, sent with write() until done
//   writer slices TOTAL_BYTES SLICE      SLICE-byte slices cut from one 64 KiB buffer, 1024 iovecs per writev
// Listens on 127.0.0.1 (any port), prints "port N", accepts one connection, sends, closes, prints "done".
// Build: cc -O2 -o writer writer.c
#include "common.h"
#include <sys/uio.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: writer blast|slices TOTAL_BYTES [SLICE_BYTES]\n");
        return 2;
    }
    int slices = strcmp(argv[1], "slices") == 0;
    size_t total = strtoull(argv[2], 0, 10);
    size_t slice = argc > 3 ? strtoull(argv[3], 0, 10) : 64;
    size_t region = slices ? 1024 * slice : total;
    char *buf = malloc(region);
    for (size_t i = 0; i < region; i++) buf[i] = (char)(i % 251);  // also faults every page in before timing
    int lfd = listen_on(0, 0);
    printf("port %d\n", local_port(lfd));
    fflush(stdout);
    int fd = accept(lfd, 0, 0);
    if (fd < 0) die("accept");
    if (!slices) {
        write_all(fd, buf, total);
    } else {
        struct iovec iov[1024];
        size_t sent = 0;
        while (sent < total) {
            size_t n = 0, bytes = 0;
            for (; n < 1024 && sent + bytes < total; n++) {
                iov[n].iov_base = buf + n * slice;
                iov[n].iov_len = slice;
                bytes += slice;
            }
            struct iovec *v = iov;
            size_t left = bytes;
            while (left > 0) {  // blocking sockets rarely write short; advance the iovecs if they do
                ssize_t w = writev(fd, v, (int)n);
                if (w < 0) {
                    if (errno == EINTR) continue;
                    die("writev");
                }
                left -= (size_t)w;
                while (w > 0 && (size_t)w >= v->iov_len) { w -= (ssize_t)v->iov_len; v++; n--; }
                if (w > 0) { v->iov_base = (char *)v->iov_base + w; v->iov_len -= (size_t)w; }
            }
            sent += bytes;
        }
    }
    close(fd);
    printf("done\n");
    return 0;
}
