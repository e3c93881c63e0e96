// The idle-connections client: opens N connections, sends one byte on each and reads its echo (so the server has
// accepted and served every one), prints "ready N", then holds them until standard input closes.
//   idle HOST PORT N
// Build: cc -O2 -o idle idle.c
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: idle HOST PORT N\n"); return 2; }
    int n = atoi(argv[3]);
    int *fds = calloc(n, sizeof *fds);
    char byte = 'i';
    for (int i = 0; i < n; i += 256) {
        int end = i + 256 < n ? i + 256 : n;
        for (int k = i; k < end; k++) fds[k] = connect_blocking(argv[1], atoi(argv[2]));
        for (int k = i; k < end; k++) write_all(fds[k], &byte, 1);
        for (int k = i; k < end; k++) read_exact(fds[k], &byte, 1);
    }
    printf("ready %d\n", n);
    fflush(stdout);
    wait_for_stdin_eof();
    return 0;
}
