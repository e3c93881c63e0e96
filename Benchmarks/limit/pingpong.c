// The ping-pong client, the same for every server: CONNS connections, each sends MSG bytes and waits for their
// echo before sending again, for SECONDS. One epoll thread; latencies in a two-tier histogram (1 us buckets up
// to 100 ms, then 1 ms buckets up to 100 s).
//   pingpong HOST PORT CONNS SECONDS [MSG]
// Connects, does one warm-up round trip per connection, prints "warm", waits for a line on standard input,
// runs, then prints one JSON line: requests, seconds, p50_us, p99_us, p999_us, max_us, errors.
// Build: cc -O2 -o pingpong pingpong.c
#include "common.h"

#define FINE 100000
#define COARSE 100000
static long long fine[FINE], coarse[COARSE];

static void record(long long us) {
    if (us < FINE) fine[us]++;
    else coarse[us / 1000 < COARSE ? us / 1000 : COARSE - 1]++;
}

static long long percentile(long long total, double p) {
    long long want = (long long)(p * total + 0.5), seen = 0;
    if (want < 1) want = 1;
    for (long long i = 0; i < FINE; i++) if ((seen += fine[i]) >= want) return i;
    for (long long i = FINE / 1000; i < COARSE; i++) if ((seen += coarse[i]) >= want) return i * 1000;
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: pingpong HOST PORT CONNS SECONDS [MSG]\n"); return 2; }
    int conns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    int msg = argc > 5 ? atoi(argv[5]) : 64;
    char out[65536], in[65536];
    memset(out, 'p', sizeof out);
    int *fds = calloc(conns, sizeof *fds);
    int maxfd = 0;
    for (int i = 0; i < conns; i++) {
        fds[i] = connect_blocking(argv[1], atoi(argv[2]));
        if (fds[i] > maxfd) maxfd = fds[i];
    }
    for (int i = 0; i < conns; i++) { write_all(fds[i], out, msg); read_exact(fds[i], in, msg); }
    long long *sent_at = calloc(maxfd + 1, sizeof *sent_at);
    int *got = calloc(maxfd + 1, sizeof *got);
    int ep = epoll_create1(0);
    for (int i = 0; i < conns; i++) {
        set_nonblocking(fds[i]);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    printf("warm\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;

    long long requests = 0, errors = 0, max_us = 0;
    double start = now_s(), end = start + seconds;
    for (int i = 0; i < conns; i++) { sent_at[fds[i]] = now_us(); write_all(fds[i], out, msg); }
    int outstanding = conns;
    struct epoll_event events[512];
    while (outstanding > 0) {
        int n = epoll_wait(ep, events, 512, 1000);
        if (n <= 0 && now_s() > end + 10) break;
        long long t = now_us();
        int running = t < (long long)(end * 1e6);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            ssize_t r = read(fd, in, sizeof in);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0);
                outstanding--;
                continue;
            }
            got[fd] += (int)r;
            if (got[fd] < msg) continue;
            got[fd] = 0;
            long long us = t - sent_at[fd];
            record(us);
            if (us > max_us) max_us = us;
            requests++;
            if (running) {
                sent_at[fd] = t;
                if (send(fd, out, msg, MSG_NOSIGNAL) != msg) { errors++; outstanding--; }
            } else {
                outstanding--;
            }
        }
    }
    double dt = now_s() - start;
    printf("{\"requests\": %lld, \"seconds\": %.4f, \"p50_us\": %lld, \"p99_us\": %lld, \"p999_us\": %lld, "
           "\"max_us\": %lld, \"errors\": %lld}\n",
           requests, dt, percentile(requests, 0.50), percentile(requests, 0.99), percentile(requests, 0.999),
           max_us, errors);
    return errors ? 1 : 0;
}
