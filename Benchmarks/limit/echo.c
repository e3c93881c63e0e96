// The loopback limit for the many-connection shapes: an epoll echo server in C, one thread per SO_REUSEPORT
// listener (like the reactor pool), level-triggered, no allocation per connection beyond the kernel's. Also the
// neutral server of load-echo, which compares two load generators: it counts the bytes it echoes.
//   echo THREADS        listens on 127.0.0.1 (any port), prints "port N", echoes until standard input closes.
//                       A line "count" on standard input prints "count BYTES" (bytes echoed so far).
// Build: cc -O2 -pthread -o echo echo.c
#include "common.h"
#include <pthread.h>

#define MAX_THREADS 64
static int port;
static int listeners[MAX_THREADS];
// Bytes echoed, one counter per thread on its own cache line: written by its thread only (relaxed stores,
// plain moves on x86), read by the main thread.
static struct { _Alignas(64) unsigned long long bytes; } echoed[MAX_THREADS];

static void *serve(void *arg) {
    long t = (long)arg;
    int lfd = listeners[t];
    unsigned long long total = 0;
    set_nonblocking(lfd);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static __thread char buf[65536];
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                for (int k = 0; k < 64; k++) {
                    int c = accept4(lfd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0) {
                ssize_t off = 0;
                while (off < r) {  // small echoes always fit the send buffer; spin on the rare EAGAIN
                    ssize_t w = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
                    if (w > 0) off += w;
                    else if (w < 0 && errno != EAGAIN && errno != EINTR) break;
                }
                total += (unsigned long long)off;
                __atomic_store_n(&echoed[t].bytes, total, __ATOMIC_RELAXED);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(fd);  // closing removes it from the epoll set
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    listeners[0] = listen_on(0, 1);
    port = local_port(listeners[0]);
    for (int t = 1; t < threads; t++) listeners[t] = listen_on(port, 1);
    for (long t = 0; t < threads; t++) {
        pthread_t tid;
        pthread_create(&tid, 0, serve, (void *)t);
    }
    printf("port %d\n", port);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {  // until standard input closes
        if (strncmp(line, "count", 5) != 0) continue;
        unsigned long long sum = 0;
        for (int t = 0; t < threads; t++) sum += __atomic_load_n(&echoed[t].bytes, __ATOMIC_RELAXED);
        printf("count %llu\n", sum);
        fflush(stdout);
    }
    return 0;
}
