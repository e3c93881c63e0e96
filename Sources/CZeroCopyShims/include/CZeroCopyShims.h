// The C side of the syscall layer: thin declarations Swift cannot import as-is
// (the packed epoll_event, epoll_pwait2 as a raw syscall), errno access, one thread-local slot,
// and jemalloc's mallctl found at run time. No logic lives here.
#ifndef CZEROCOPYSHIMS_H
#define CZEROCOPYSHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>

// epoll: the event as two plain fields (the kernel struct is packed on x86_64).
typedef struct { uint32_t events; uint64_t data; } zcr_epoll_event;
int zcr_epoll_create(void);
int zcr_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
// Both fill up to max (at most 256) events and return their count, or -1 with errno.
// epoll_pwait2 (Linux 5.11+): waits at most timeout_ns, negative: forever. ENOSYS where the kernel (or the headers
// this was built with) lacks it; seccomp profiles older than the call may answer EPERM instead.
int zcr_epoll_pwait2(int epfd, zcr_epoll_event *events, int max, int64_t timeout_ns);
// epoll_wait (every Linux): waits at most timeout_ms, -1: forever. Sys rounds nanoseconds up to milliseconds.
int zcr_epoll_wait_ms(int epfd, zcr_epoll_event *events, int max, int timeout_ms);

int zcr_eventfd(void);
// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; the peer's address goes to `addr` (a sockaddr_storage).
int zcr_accept(int fd, void *addr);
int zcr_pipe_cloexec(int fds[2]);  // pipe2 with O_CLOEXEC (for ChildProcess)
int zcr_errno(void);
void zcr_set_errno(int value);

// The loop's per-request calls as raw syscalls: -1 with errno, as glibc's wrappers return. Those wrappers are
// cancellation points, which switch asynchronous cancellation on and off around every call (a locked
// compare-exchange each way, and two more functions' code a call); loop threads are never cancelled. Inline, so
// the Swift caller calls syscall(2) directly.
static inline ssize_t zcr_read(int fd, void *buf, size_t count) {
    return (ssize_t)syscall(SYS_read, fd, buf, count);
}
static inline ssize_t zcr_send(int fd, const void *buf, size_t count, int flags) {
    return (ssize_t)syscall(SYS_sendto, fd, buf, count, flags, (void *)0, 0);
}

// Asks the CPU to bring the 64-byte line at `p` into its caches, to be written (PREFETCHW): a hint, never a fault,
// whatever `p` is. The loop uses it for the next event's connection (EventLoop.prefetch).
static inline void zcr_prefetch_write(const void *p) {
    __builtin_prefetch(p, 1, 3);
}
static inline void zcr_prefetch_read(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

// sendmsg with one iovec array and flags (MSG_NOSIGNAL is always added), as a raw syscall like zcr_send.
ssize_t zcr_sendmsg(int fd, const struct iovec *iov, int iovcnt, int flags);

// sendfile(2) from `in_fd` at *offset (advanced by what was sent; the file position is untouched).
ssize_t zcr_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
// MSG_ZEROCOPY support: the flag's value, SO_ZEROCOPY on a socket, and one message from the error queue.
int zcr_msg_zerocopy(void);
int zcr_set_zerocopy(int fd);
// Reads one error-queue message (MSG_ERRQUEUE | MSG_DONTWAIT). Returns 1 with a zero-copy completion's inclusive
// range and whether the kernel copied (SO_EE_CODE_ZEROCOPY_COPIED), 0 for a message of another origin (its errno in
// *other_errno), -1 with errno (EAGAIN: the queue is empty).
int zcr_recv_zerocopy(int fd, uint32_t *low, uint32_t *high, int *copied, int *other_errno);
// connect(AF_UNSPEC): disconnects a TCP socket at once (a reset to the peer when data was in flight or unread),
// leaving the descriptor open so the error queue can still be read.
int zcr_disconnect(int fd);

// The calling thread's node pool (owned by Swift; NULL until first use).
void *zcr_thread_slot(void);
void zcr_set_thread_slot(void *value);
int zcr_thread_id(void);
void zcr_set_thread_name(const char *name);

// jemalloc's mallctl, looked up with dlsym(RTLD_DEFAULT): NULL when jemalloc is not loaded.
typedef int (*zcr_mallctl_fn)(const char *, void *, size_t *, void *, size_t);
zcr_mallctl_fn zcr_find_mallctl(void);

#endif
