// C helpers of the side-by-side benchmarks: counting malloc hooks, peak-RSS reset.
#ifndef CBENCHSUPPORT_H
#define CBENCHSUPPORT_H
#include <sys/types.h>

/// Starts or stops counting heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign)
/// in the whole process. Starting resets the count. Off by default: a stopped hook costs one predictable branch.
void zcrb_alloc_counting(int on);
/// Allocations counted since counting started.
long long zcrb_alloc_count(void);

/// Resets this process's peak resident set size (VmHWM) to the current one. Returns 0 on success.
int zcrb_reset_peak_rss(void);
#endif
