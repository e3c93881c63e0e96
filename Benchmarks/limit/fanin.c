// The fan-out client: opens N connections, prints "connected", then reads (256 KiB at a time, epoll) until every
// connection has received BYTES_PER_CONN bytes. Prints one JSON line: bytes, seconds (first byte to last), errors.
//   fanin HOST PORT N BYTES_PER_CONN
// Build: cc -O2 -o fanin fanin.c
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: fanin HOST PORT N BYTES_PER_CONN\n"); return 2; }
    int n = atoi(argv[3]);
    long long want = atoll(argv[4]);
    int *fds = calloc(n, sizeof *fds);
    int maxfd = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = connect_blocking(argv[1], atoi(argv[2]));
        if (fds[i] > maxfd) maxfd = fds[i];
    }
    long long *got = calloc(maxfd + 1, sizeof *got);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        set_nonblocking(fds[i]);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    printf("connected\n");
    fflush(stdout);
    static char buf[262144];
    struct epoll_event events[1024];
    int done = 0, errors = 0;
    long long total = 0;
    double first = 0, last = 0;
    while (done + errors < n) {
        int k = epoll_wait(ep, events, 1024, 30000);
        if (k == 0) { fprintf(stderr, "fanin: no data for 30 s\n"); break; }
        for (int i = 0; i < k; i++) {
            int fd = events[i].data.fd;
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0); continue; }
            if (first == 0) first = now_s();
            total += r;
            got[fd] += r;
            if (got[fd] == want) { done++; last = now_s(); epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0); }
        }
    }
    printf("{\"bytes\": %lld, \"seconds\": %.4f, \"errors\": %d}\n", total, last - first, errors + (n - done - errors));
    return done == n ? 0 : 1;
}
