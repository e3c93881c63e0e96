// Counting allocation hooks. Defining malloc & co. in the executable interposes them for every library in the
// process (the Swift runtime, Foundation, NIO, ours); they forward to glibc's __libc_* entry points, so nothing
// here calls dlsym or allocates. Counts go to 64 cache-line-padded slots picked per thread, so threads rarely
// share a counter; the total is their sum. Counting is off until zcrb_alloc_counting(1).
#define _GNU_SOURCE
#include "CBenchSupport.h"
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#define SLOTS 64
static struct { _Atomic long long n; char pad[56]; } counts[SLOTS];
static _Atomic int next_slot;
static _Atomic int counting;
static __thread int slot = -1;

static inline void count(void) {
    if (__builtin_expect(atomic_load_explicit(&counting, memory_order_relaxed), 0)) {
        if (slot < 0) slot = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) % SLOTS;
        atomic_fetch_add_explicit(&counts[slot].n, 1, memory_order_relaxed);
    }
}

void zcrb_alloc_counting(int on) {
    if (on) for (int i = 0; i < SLOTS; i++) atomic_store_explicit(&counts[i].n, 0, memory_order_relaxed);
    atomic_store_explicit(&counting, on, memory_order_seq_cst);
}

long long zcrb_alloc_count(void) {
    long long total = 0;
    for (int i = 0; i < SLOTS; i++) total += atomic_load_explicit(&counts[i].n, memory_order_relaxed);
    return total;
}

void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t align, size_t n) { count(); return __libc_memalign(align, n); }
void *aligned_alloc(size_t align, size_t n) { count(); return __libc_memalign(align, n); }
int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    count();
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
