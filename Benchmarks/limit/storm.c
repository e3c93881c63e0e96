// The connection-storm client, the same for every server: TOTAL connections, at most CONCURRENCY in flight; each
// connects (non-blocking), sends one byte, reads its echo and closes. Prints one JSON line: connections (completed),
// errors, seconds.
//   storm HOST PORT TOTAL CONCURRENCY
// Build: cc -O2 -o storm storm.c
#include "common.h"

enum { CONNECTING = 1, WAITING = 2 };

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: storm HOST PORT TOTAL CONCURRENCY\n"); return 2; }
    struct sockaddr_in sin = address(argv[1], atoi(argv[2]));
    long total = atol(argv[3]);
    int concurrency = atoi(argv[4]);
    static char state[1 << 20];
    int ep = epoll_create1(0);
    long launched = 0, completed = 0, errors = 0;
    int inflight = 0;
    double start = now_s();
    struct epoll_event events[1024];
    char byte = 'x';
    while (completed + errors < total) {
        while (inflight < concurrency && launched < total) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (fd < 0 || fd >= (int)sizeof state) die("socket");
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            launched++;
            int rc = connect(fd, (struct sockaddr *)&sin, sizeof sin);
            if (rc != 0 && errno != EINPROGRESS) { errors++; close(fd); continue; }
            state[fd] = CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            inflight++;
        }
        int n = epoll_wait(ep, events, 1024, 1000);
        if (now_s() - start > 120) { fprintf(stderr, "storm: timed out\n"); break; }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (state[fd] == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0 || send(fd, &byte, 1, MSG_NOSIGNAL) != 1) {
                    errors++;
                } else {
                    state[fd] = WAITING;
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                    continue;
                }
            } else {
                char in;
                ssize_t r = read(fd, &in, 1);
                if (r < 0 && errno == EAGAIN) continue;
                if (r == 1) completed++; else errors++;
            }
            state[fd] = 0;
            close(fd);
            inflight--;
        }
    }
    printf("{\"connections\": %ld, \"errors\": %ld, \"seconds\": %.4f}\n", completed, errors, now_s() - start);
    return errors ? 1 : 0;
}
