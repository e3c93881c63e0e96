// Resetting the peak RSS before a measured phase. (Child processes are the root package's ChildProcess.)
#define _GNU_SOURCE
#include "CBenchSupport.h"
#include <fcntl.h>
#include <unistd.h>

int zcrb_reset_peak_rss(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}
