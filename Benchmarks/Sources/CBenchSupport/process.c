// Spawning the client and server processes of a scenario, and resetting the peak RSS before a measured phase.
#define _GNU_SOURCE
#include "CBenchSupport.h"
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

extern char **environ;

pid_t zcrb_spawn(char *const argv[], int *stdin_fd, int *stdout_fd) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return -1;
    if (pipe2(out, O_CLOEXEC) != 0) { close(in[0]); close(in[1]); return -1; }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &actions, 0, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    if (rc != 0) { close(in[1]); close(out[0]); errno = rc; return -1; }
    *stdin_fd = in[1];
    *stdout_fd = out[0];
    return pid;
}

int zcrb_reset_peak_rss(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}
