// A plain external client: connects to HOST PORT, reads until EOF with reads of READ_BYTES, and prints the bytes,
// seconds, MB/s and 64-byte messages/s. Used to measure `zcr serve --mode blast` without our own code on the
// reading side. Build: cc -O2 -o reader reader.c
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: reader HOST PORT [READ_BYTES] [MESSAGE_BYTES]\n"); return 2; }
    size_t chunk = argc > 3 ? strtoul(argv[3], 0, 10) : 262144;
    size_t message = argc > 4 ? strtoul(argv[4], 0, 10) : 64;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    inet_pton(AF_INET, argv[1], &sin.sin_addr);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) { perror("connect"); return 1; }
    char *buf = malloc(chunk);
    double start = now();
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, chunk);
        if (n <= 0) break;
        total += n;
    }
    double dt = now() - start;
    printf("bytes %llu seconds %.3f MB/s %.1f messages/s %.0f\n", total, dt, total / dt / 1e6, total / (double)message / dt);
    return 0;
}
