// The memcpy counter: bytes that memcpy and memmove move, per thread, for calls of at least a threshold.
//
// Built two ways by the package: linked into `zcr` (its memcpy and memmove then interpose on every library of the
// process) and as libZeroCopyMemcpyCounter.so for LD_PRELOAD into any other server. A profiler finds it at run time
// with dlsym(RTLD_DEFAULT, "zcr_memcpy_counter_thread") and never links it.
//
// Invariants:
// - Each thread that makes a counted call gets one slot of a static table, claimed once and never given back, so a
//   slot's address stays valid for the life of the process (also after its thread ended): a reader on another
//   thread can keep the pointer.
// - Only the owning thread writes its slot (relaxed atomic stores); other threads read it with relaxed atomic loads.
//   When the table is full, later threads share one overflow slot, updated with atomic adds (its `thread_id` is -1).
// - Calls below the threshold are forwarded and not counted; the threshold is read once, at load, from
//   ZCR_MEMCPY_THRESHOLD (bytes, default 512: above the library's own bookkeeping copies, such as the
//   280-byte loop counters it publishes every loop iteration, and below any payload copy worth finding).
#ifndef ZCR_MEMCPY_COUNTER_H
#define ZCR_MEMCPY_COUNTER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One thread's counts, one cache line.
typedef struct zcr_memcpy_slot {
    uint64_t memcpy_bytes;
    uint64_t memcpy_calls;
    uint64_t memmove_bytes;
    uint64_t memmove_calls;
    int32_t thread_id;  // the kernel's thread id (gettid), -1 for the shared overflow slot
    uint32_t reserved0;
    uint64_t reserved[3];
} zcr_memcpy_slot;

/// The calling thread's slot (claimed on first use). Never NULL.
zcr_memcpy_slot *zcr_memcpy_counter_thread(void);

/// The threshold in bytes: calls moving fewer bytes are not counted.
size_t zcr_memcpy_counter_threshold(void);

/// Sums of every slot (every thread that made a counted call), in the order of the slot's first four fields.
void zcr_memcpy_counter_totals(uint64_t out[4]);

#ifdef __cplusplus
}
#endif
#endif
