// A plain external client: connects to HOST PORT, reads until EOF with reads of READ_BYTES, and prints the bytes,
// seconds, MB/s and 64-byte messages/s. Used to measure `zcr serve --mode blast` without our own code on the
// reading side. Build: cc -O2 -o reader reader.c
//   reader HOST PORT [READ_BYTES] [MESSAGE_BYTES] [copy|discard|verify251]
// copy (the default) reads into a buffer. discard receives with recv(fd, NULL, READ_BYTES, MSG_TRUNC): Linux TCP
// drops the bytes without copying them to user space (tcp(7)), so the reader costs far less than the sender and
// the server is what a run measures. verify251 copies and checks that byte i of the stream is i % 251 (file-serve's
// file), and prints "mismatch N" and exits 1 at the first byte that is not.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: reader HOST PORT [READ_BYTES] [MESSAGE_BYTES] [copy|discard|verify251]\n"); return 2; }
    size_t chunk = argc > 3 ? strtoul(argv[3], 0, 10) : 262144;
    size_t message = argc > 4 ? strtoul(argv[4], 0, 10) : 64;
    const char *mode = argc > 5 ? argv[5] : "copy";
    int discard = strcmp(mode, "discard") == 0, verify = strcmp(mode, "verify251") == 0;
    if (!discard && !verify && strcmp(mode, "copy") != 0) { fprintf(stderr, "reader: unknown mode %s\n", mode); return 2; }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    inet_pton(AF_INET, argv[1], &sin.sin_addr);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) { perror("connect"); return 1; }
    unsigned char *buf = malloc(chunk);
    double start = now();
    unsigned long long total = 0;
    unsigned expect = 0;  // verify251: the next byte's value, total % 251
    for (;;) {
        ssize_t n = discard ? recv(fd, NULL, chunk, MSG_TRUNC) : read(fd, buf, chunk);
        if (n <= 0) break;
        if (verify) {
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] != expect) { printf("mismatch %llu\n", total + i); return 1; }
                if (++expect == 251) expect = 0;
            }
        }
        total += n;
    }
    double dt = now() - start;
    printf("bytes %llu seconds %.3f MB/s %.1f messages/s %.0f\n", total, dt, total / dt / 1e6, total / (double)message / dt);
    return 0;
}
