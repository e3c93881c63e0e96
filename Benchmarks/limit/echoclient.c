// The loopback limit for load-echo: the least work a load generator can do per message, in C. One thread, one
// level-triggered epoll set, CONNS connections, each keeping one MSG-byte message in flight: one send, one read
// per round trip (the minimum at one message in flight), every echoed byte checked against the stream, one
// clock_gettime per round trip (it times the round trip and stamps the next send), each round trip recorded in a
// log-linear histogram (HdrHistogram's layout: exact below 2048 us, then 1024 sub-buckets per power of two).
// The stream is zcr load's: byte i of a connection's stream is i % 251; message k is bytes k*MSG..(k+1)*MSG-1.
//   echoclient HOST PORT CONNS MSG WARMUP SECONDS
// Connects (every connect has a 10 s deadline), sends on every connection, warms up for WARMUP seconds, then
// measures for SECONDS: once a second it prints zcr load's progress line ("[T s] measuring  conns ..."), at which
// the harness samples this process's CPU. At the end it stops sending, prints "result {JSON}" with zcr load's
// field names and exits (0, or 1 if anything failed). Errors go to standard error and end it with exit 1.
// Build: cc -O2 -o echoclient echoclient.c
#include "common.h"
#include <stdint.h>
#include <sys/resource.h>

#define PERIOD 251

// Log-linear latency buckets in microseconds: index v below 2048, then for v in [2^(e+10), 2^(e+11)) with e >= 1,
// 2048 + (e-1)*1024 + (v >> e) - 1024. Up to 2^32 us (over an hour); larger values land in the last bucket.
#define SUB 2048
#define HALF 1024
#define EXPONENTS 22
#define BUCKETS (SUB + EXPONENTS * HALF)
static uint64_t buckets[BUCKETS];
static uint64_t recorded, min_us = UINT64_MAX, max_us;

static inline int bucket_of(uint64_t v) {
    if (v < SUB) return (int)v;
    int e = 63 - __builtin_clzll(v) - 10;  // v >> e is in [1024, 2048)
    int i = SUB + (e - 1) * HALF + (int)((v >> e) - HALF);
    return i < BUCKETS ? i : BUCKETS - 1;
}

/// The highest value that lands in bucket i (HdrHistogram reports percentiles the same way).
static inline uint64_t bucket_top(int i) {
    if (i < SUB) return (uint64_t)i;
    int e = (i - SUB) / HALF + 1;
    uint64_t m = (uint64_t)((i - SUB) % HALF + HALF);
    return ((m + 1) << e) - 1;
}

static inline void record(uint64_t us) {
    buckets[bucket_of(us)]++;
    recorded++;
    if (us < min_us) min_us = us;
    if (us > max_us) max_us = us;
}

static uint64_t percentile(double p) {
    if (recorded == 0) return 0;
    uint64_t want = (uint64_t)(p / 100 * (double)recorded + 0.5), seen = 0;
    if (want < 1) want = 1;
    for (int i = 0; i < BUCKETS; i++)
        if ((seen += buckets[i]) >= want) return bucket_top(i) < max_us ? bucket_top(i) : max_us;
    return max_us;
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct conn {
    int fd;
    uint64_t sent, received;
    uint64_t offset;  // stream bytes received so far
    uint64_t fill;    // bytes of the current echo received so far
    uint64_t sent_at; // ns
};

static int msg;
static unsigned char pattern[65536 + PERIOD];  // byte i is i % 251; message k starts at (k * msg) % 251
static uint64_t sent_total, received_total, verified_bytes, verify_errors;
static uint64_t closed_by_peer, read_errors, send_errors;

/// Whether `n` received bytes are the stream's bytes from `offset` on.
static inline int matches(const unsigned char *p, size_t n, uint64_t offset) {
    size_t done = 0;
    while (done < n) {
        size_t start = (size_t)((offset + done) % PERIOD);
        size_t k = n - done < sizeof pattern - start ? n - done : sizeof pattern - start;
        if (memcmp(p + done, pattern + start, k) != 0) return 0;
        done += k;
    }
    return 1;
}

static inline void send_next(struct conn *c, uint64_t now) {
    c->sent_at = now;
    ssize_t w = send(c->fd, pattern + (c->sent * (uint64_t)msg) % PERIOD, (size_t)msg, MSG_NOSIGNAL);
    if (w != msg) {  // 64 bytes into an idle socket's send buffer: anything else is an error of the run
        if (send_errors++ == 0) fprintf(stderr, "echoclient: send returned %zd (%s)\n", w, w < 0 ? strerror(errno) : "short");
        return;
    }
    c->sent++;
    sent_total++;
}

static void connect_all(struct conn *conns, int n, const char *host, int port) {
    struct sockaddr_in sin = address(host, port);
    struct timeval deadline = {.tv_sec = 10};
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("echoclient: socket (raise ulimit -n?)");
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &deadline, sizeof deadline);  // bounds connect()
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
            fprintf(stderr, "echoclient: connect %d of %d to %s:%d: %s\n", i + 1, n, host, port, strerror(errno));
            exit(1);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_nonblocking(fd);
        conns[i] = (struct conn){.fd = fd};
    }
}

static void raise_descriptor_limit(rlim_t needed) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= needed) return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void progress(double elapsed, int open, int n, double rate) {
    printf("[%.1fs] measuring  conns %d/%d  msgs/s %.0f  p99 %llu \xc2\xb5s  errors %llu\n", elapsed, open, n, rate,
           (unsigned long long)percentile(99),
           (unsigned long long)(verify_errors + closed_by_peer + read_errors + send_errors));
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: echoclient HOST PORT CONNS MSG WARMUP SECONDS\n");
        return 2;
    }
    int n = atoi(argv[3]);
    msg = atoi(argv[4]);
    double warmup = atof(argv[5]), seconds = atof(argv[6]);
    if (n < 1 || msg < 1 || msg > 65536 || warmup < 0 || seconds < 1) {
        fprintf(stderr, "echoclient: need CONNS >= 1, 1 <= MSG <= 65536, WARMUP >= 0, SECONDS >= 1\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (unsigned char)(i % PERIOD);
    raise_descriptor_limit((rlim_t)n + 64);
    uint64_t started = now_ns();

    struct conn *conns = calloc((size_t)n, sizeof *conns);
    if (!conns) die("echoclient: calloc");
    connect_all(conns, n, argv[1], atoi(argv[2]));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("echoclient: epoll_create1");
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0) die("echoclient: epoll_ctl");
    }
    int open = n;

    // Traffic: warm-up, then the window, ticked once a second by the clock (epoll_wait's timeout bounds the wait).
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++) send_next(&conns[i], t);
    uint64_t window_start = t + (uint64_t)(warmup * 1e9), window_end = window_start + (uint64_t)(seconds * 1e9);
    uint64_t next_tick = window_start, last_tick = 0, last_received = 0;
    uint64_t base_sent = 0, base_received = 0;
    int measuring = 0, sending = 1;
    static unsigned char in[16384];
    struct epoll_event events[512];
    while (sending) {
        int timeout_ms = (int)((next_tick > t ? next_tick - t : 0) / 1000000) + 1;
        int k = epoll_wait(ep, events, 512, timeout_ms);
        if (k < 0 && errno != EINTR) die("echoclient: epoll_wait");
        for (int e = 0; e < k; e++) {
            struct conn *c = &conns[events[e].data.u32];
            ssize_t r = read(c->fd, in, sizeof in);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (r == 0) closed_by_peer++;
                else read_errors++;
                fprintf(stderr, "echoclient: connection %u: %s\n", events[e].data.u32, r == 0 ? "closed by the server" : strerror(errno));
                close(c->fd);  // also leaves the epoll set
                open--;
                continue;
            }
            verified_bytes += (uint64_t)r;
            if (!matches(in, (size_t)r, c->offset)) verify_errors++;
            c->offset += (uint64_t)r;
            c->fill += (uint64_t)r;
            if (c->fill < (uint64_t)msg) continue;
            uint64_t now = now_ns();  // one clock read per round trip: ends this one, stamps the next send
            while (c->fill >= (uint64_t)msg) {
                c->fill -= (uint64_t)msg;
                if (c->received >= c->sent) {  // bytes that were never asked for
                    verify_errors++;
                    c->fill = 0;
                    break;
                }
                record((now - c->sent_at) / 1000);
                c->received++;
                received_total++;
            }
            send_next(c, now);
        }
        t = now_ns();
        if (t < next_tick) continue;
        if (!measuring) {  // the window opens: latencies and counts from here on
            measuring = 1;
            memset(buckets, 0, sizeof buckets);
            recorded = 0, min_us = UINT64_MAX, max_us = 0;
            base_sent = sent_total, base_received = received_total;
            last_received = received_total, last_tick = t;
            window_start = t;
            window_end = t + (uint64_t)(seconds * 1e9);
            next_tick = t + 1000000000ull < window_end ? t + 1000000000ull : window_end;
            continue;
        }
        if (t >= window_end) sending = 0;  // the last line: stop (echoes still in flight are not read)
        progress((double)(t - started) / 1e9, open, n, (double)(received_total - last_received) / ((double)(t - last_tick) / 1e9));
        last_received = received_total, last_tick = t;
        next_tick = next_tick + 1000000000ull < window_end ? next_tick + 1000000000ull : window_end;
        if (open == 0) break;
    }
    double window = (double)(last_tick - window_start) / 1e9;
    uint64_t received = received_total - base_received;
    int failed = verify_errors || closed_by_peer || read_errors || send_errors || open < n;
    printf("result {\"connections_established\": %d, \"duration_s\": %.6f, \"messages_sent\": %llu, "
           "\"messages_received\": %llu, \"messages_per_s\": %.1f, "
           "\"latency_us\": {\"count\": %llu, \"min\": %llu, \"p50\": %llu, \"p90\": %llu, \"p99\": %llu, "
           "\"p999\": %llu, \"max\": %llu}, \"verify_errors\": %llu, \"verified_bytes\": %llu, \"errors\": {",
           n, window, (unsigned long long)(sent_total - base_sent), (unsigned long long)received,
           window > 0 ? (double)received / window : 0.0, (unsigned long long)recorded,
           (unsigned long long)(recorded ? min_us : 0), (unsigned long long)percentile(50),
           (unsigned long long)percentile(90), (unsigned long long)percentile(99), (unsigned long long)percentile(99.9),
           (unsigned long long)max_us, (unsigned long long)verify_errors, (unsigned long long)verified_bytes);
    const char *sep = "";
    if (closed_by_peer) printf("%s\"closed_by_peer\": %llu", sep, (unsigned long long)closed_by_peer), sep = ", ";
    if (read_errors) printf("%s\"read_error\": %llu", sep, (unsigned long long)read_errors), sep = ", ";
    if (send_errors) printf("%s\"send_error\": %llu", sep, (unsigned long long)send_errors), sep = ", ";
    printf("}, \"failure\": %s}\n", !failed ? "null" : verify_errors ? "\"verify errors\"" : "\"errors\"");
    fflush(stdout);
    return failed ? 1 : 0;
}
