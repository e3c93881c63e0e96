// memcpy and memmove that count, per thread, the bytes of calls at or above a threshold, then forward to the C
// library's own functions (found with dlsym(RTLD_NEXT) at load). See include/zcr_memcpy_counter.h for the invariants.
#define _GNU_SOURCE
#include "zcr_memcpy_counter.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef void *(*copy_fn)(void *, const void *, size_t);

enum { SLOTS = 4096 };

static zcr_memcpy_slot slots[SLOTS + 1] __attribute__((aligned(64)));  // the last one is the overflow slot
static uint32_t slots_claimed;
static size_t threshold = 512;
static copy_fn real_memcpy;
static copy_fn real_memmove;

static __thread zcr_memcpy_slot *own_slot __attribute__((tls_model("initial-exec")));
static __thread int resolving __attribute__((tls_model("initial-exec")));

// Before the real functions are known (calls made while dlsym runs): a byte loop the compiler cannot turn back into
// a call to memcpy (volatile accesses), correct for overlapping ranges too.
static void *slow_move(void *dst, const void *src, size_t n) {
    volatile unsigned char *d = dst;
    const volatile unsigned char *s = src;
    if (d < s) {
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    } else {
        for (size_t i = n; i > 0; i--) d[i - 1] = s[i - 1];
    }
    return dst;
}

static copy_fn resolve(const char *name) {
    resolving = 1;
    copy_fn f = (copy_fn)dlsym(RTLD_NEXT, name);
    resolving = 0;
    return f;
}

__attribute__((constructor)) static void zcr_memcpy_counter_init(void) {
    const char *t = getenv("ZCR_MEMCPY_THRESHOLD");
    if (t && *t) {
        char *end = NULL;
        unsigned long long v = strtoull(t, &end, 10);
        if (end && *end == '\0') threshold = (size_t)v;
    }
    __atomic_store_n(&real_memcpy, resolve("memcpy"), __ATOMIC_RELEASE);
    __atomic_store_n(&real_memmove, resolve("memmove"), __ATOMIC_RELEASE);
}

zcr_memcpy_slot *zcr_memcpy_counter_thread(void) {
    zcr_memcpy_slot *slot = own_slot;
    if (slot) return slot;
    uint32_t i = __atomic_fetch_add(&slots_claimed, 1, __ATOMIC_RELAXED);
    if (i < SLOTS) {
        slot = &slots[i];
        __atomic_store_n(&slot->thread_id, (int32_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
    } else {
        slot = &slots[SLOTS];
        __atomic_store_n(&slot->thread_id, -1, __ATOMIC_RELAXED);
    }
    own_slot = slot;
    return slot;
}

size_t zcr_memcpy_counter_threshold(void) { return threshold; }

void zcr_memcpy_counter_totals(uint64_t out[4]) {
    uint32_t n = __atomic_load_n(&slots_claimed, __ATOMIC_RELAXED);
    if (n > SLOTS) n = SLOTS;
    out[0] = out[1] = out[2] = out[3] = 0;
    for (uint32_t i = 0; i <= n; i++) {  // the claimed slots, then the overflow slot
        const zcr_memcpy_slot *s = i < n ? &slots[i] : &slots[SLOTS];
        out[0] += __atomic_load_n(&s->memcpy_bytes, __ATOMIC_RELAXED);
        out[1] += __atomic_load_n(&s->memcpy_calls, __ATOMIC_RELAXED);
        out[2] += __atomic_load_n(&s->memmove_bytes, __ATOMIC_RELAXED);
        out[3] += __atomic_load_n(&s->memmove_calls, __ATOMIC_RELAXED);
    }
}

#define COUNT(field_bytes, field_calls, n)                                                                      \
    do {                                                                                                        \
        zcr_memcpy_slot *slot = zcr_memcpy_counter_thread();                                                    \
        if (slot == &slots[SLOTS]) {                                                                            \
            __atomic_fetch_add(&slot->field_bytes, (uint64_t)(n), __ATOMIC_RELAXED);                            \
            __atomic_fetch_add(&slot->field_calls, 1, __ATOMIC_RELAXED);                                        \
        } else { /* the owner is the only writer: a plain relaxed read-modify-write, no locked instruction */ \
            __atomic_store_n(&slot->field_bytes, __atomic_load_n(&slot->field_bytes, __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED);        \
            __atomic_store_n(&slot->field_calls, __atomic_load_n(&slot->field_calls, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);                    \
        }                                                                                                       \
    } while (0)

void *memcpy(void *dst, const void *src, size_t n) {
    copy_fn f = __atomic_load_n(&real_memcpy, __ATOMIC_ACQUIRE);
    if (__builtin_expect(f == NULL, 0)) {
        if (resolving) return slow_move(dst, src, n);
        f = resolve("memcpy");
        if (!f) return slow_move(dst, src, n);
        __atomic_store_n(&real_memcpy, f, __ATOMIC_RELEASE);
    }
    if (n >= threshold && n > 0) COUNT(memcpy_bytes, memcpy_calls, n);
    return f(dst, src, n);
}

void *memmove(void *dst, const void *src, size_t n) {
    copy_fn f = __atomic_load_n(&real_memmove, __ATOMIC_ACQUIRE);
    if (__builtin_expect(f == NULL, 0)) {
        if (resolving) return slow_move(dst, src, n);
        f = resolve("memmove");
        if (!f) return slow_move(dst, src, n);
        __atomic_store_n(&real_memmove, f, __ATOMIC_RELEASE);
    }
    if (n >= threshold && n > 0) COUNT(memmove_bytes, memmove_calls, n);
    return f(dst, src, n);
}
