// Helpers shared by the plain C programs of the benchmarks (clients for every scenario, and the loopback limit
// servers). Blocking or epoll code with no library of ours in it, so that both sides meet the same client.
// Build each program alone: cc -O2 -o NAME NAME.c
#ifndef ZCRB_COMMON_H
#define ZCRB_COMMON_H
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static inline void die(const char *what) {
    perror(what);
    exit(1);
}

static inline struct sockaddr_in address(const char *host, int port) {
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", host);
        exit(2);
    }
    return sin;
}

/// A listening socket on 127.0.0.1:port (0: any free port), SO_REUSEPORT so that several threads can share it.
static inline int listen_on(int port, int reuseport) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sin = address("127.0.0.1", port);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0) die("bind");
    if (listen(fd, 4096) != 0) die("listen");
    return fd;
}

static inline int local_port(int fd) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &len);
    return ntohs(sin.sin_port);
}

static inline int connect_blocking(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in sin = address(host, port);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static inline void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static inline void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        c += w;
        n -= (size_t)w;
    }
}

static inline void read_exact(int fd, void *p, size_t n) {
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read");
        c += r;
        n -= (size_t)r;
    }
}

/// Blocks until standard input reaches EOF (how the harness tells a program to stop).
static inline void wait_for_stdin_eof(void) {
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {}
}

#endif
