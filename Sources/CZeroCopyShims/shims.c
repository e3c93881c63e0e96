#define _GNU_SOURCE
#include "CZeroCopyShims.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/errqueue.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int zcr_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int zcr_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = { .events = events, .data = { .u64 = data } };
    return epoll_ctl(epfd, op, fd, &ev);
}

static int copy_events(zcr_epoll_event *out, const struct epoll_event *evs, int n) {
    for (int i = 0; i < n; i++) { out[i].events = evs[i].events; out[i].data = evs[i].data.u64; }
    return n;
}

int zcr_epoll_pwait2(int epfd, zcr_epoll_event *out, int max, int64_t timeout_ns) {
#ifdef SYS_epoll_pwait2
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    struct timespec ts = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
    // The raw system call, not glibc's wrapper (glibc 2.35+ only), so the package builds and runs on older glibc.
    // No signal mask: the sigset size is then not checked, but pass the kernel's (8 bytes) as glibc does.
    int n = (int)syscall(SYS_epoll_pwait2, epfd, evs, max, timeout_ns < 0 ? NULL : &ts, NULL, (size_t)8);
    return n < 0 ? n : copy_events(out, evs, n);
#else
    (void)epfd; (void)out; (void)max; (void)timeout_ns;
    errno = ENOSYS;
    return -1;
#endif
}

int zcr_epoll_wait_ms(int epfd, zcr_epoll_event *out, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    return n < 0 ? n : copy_events(out, evs, n);
}

int zcr_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
int zcr_accept(int fd, void *addr) {
    socklen_t len = sizeof(struct sockaddr_storage);
    return accept4(fd, (struct sockaddr *)addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
int zcr_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int zcr_errno(void) { return errno; }
void zcr_set_errno(int value) { errno = value; }

ssize_t zcr_sendmsg(int fd, const struct iovec *iov, int iovcnt, int flags) {
    struct msghdr msg = { 0 };
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    return (ssize_t)syscall(SYS_sendmsg, fd, &msg, flags | MSG_NOSIGNAL);
}

ssize_t zcr_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count) {
    off_t off = (off_t)*offset;
    ssize_t n = sendfile(out_fd, in_fd, &off, count);
    *offset = (int64_t)off;
    return n;
}

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

int zcr_msg_zerocopy(void) { return MSG_ZEROCOPY; }

int zcr_set_zerocopy(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one);
}

int zcr_recv_zerocopy(int fd, uint32_t *low, uint32_t *high, int *copied, int *other_errno) {
    char control[128];
    struct msghdr msg = { 0 };
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        struct sock_extended_err err;
        if (c->cmsg_len < CMSG_LEN(sizeof err)) continue;
        memcpy(&err, CMSG_DATA(c), sizeof err);
        if (err.ee_origin == SO_EE_ORIGIN_ZEROCOPY) {
            *low = err.ee_info;
            *high = err.ee_data;
            *copied = (err.ee_code & SO_EE_CODE_ZEROCOPY_COPIED) != 0;
            return 1;
        }
        *other_errno = (int)err.ee_errno;
        return 0;
    }
    *other_errno = 0;
    return 0;
}

int zcr_disconnect(int fd) {
    struct sockaddr unspec;
    memset(&unspec, 0, sizeof unspec);
    unspec.sa_family = AF_UNSPEC;
    return connect(fd, &unspec, sizeof unspec);
}

static __thread void *thread_slot;
void *zcr_thread_slot(void) { return thread_slot; }
void zcr_set_thread_slot(void *value) { thread_slot = value; }
int zcr_thread_id(void) { return (int)syscall(SYS_gettid); }
void zcr_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }

zcr_mallctl_fn zcr_find_mallctl(void) { return (zcr_mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl"); }
