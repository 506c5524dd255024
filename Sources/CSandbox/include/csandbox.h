// System calls and macros SandboxService needs that Swift's Glibc module does not import.
#ifndef CSANDBOX_H
#define CSANDBOX_H

#include <stddef.h>
#include <sys/types.h>

// A SOCK_SEQPACKET socket pair, both ends close-on-exec. 0 or -1 (errno).
int csandbox_seqpacket_pair(int fds[2]);

// pipe2(O_CLOEXEC). 0 or -1 (errno).
int csandbox_pipe(int fds[2]);

// Sends one message with `count` descriptors attached (SCM_RIGHTS). Bytes sent or -1 (errno).
ssize_t csandbox_send_with_fds(int socket, const void *buffer, size_t length, const int *fds, int count);

// posix_spawn of `path` in its own process group, standard input from /dev/null, standard output
// and error to `log_fd` (or /dev/null when -1), `extra_fds[i]` as descriptor 3 + i, every other
// descriptor closed. 0 or an errno value.
int csandbox_spawn(const char *path, char *const argv[], char *const envp[], int log_fd, const int *extra_fds,
                   int extra_count, pid_t *pid);

// waitpid status helpers.
int csandbox_exited(int status);
int csandbox_exit_status(int status);
int csandbox_signaled(int status);
int csandbox_term_signal(int status);

// prctl(PR_SET_CHILD_SUBREAPER, 1). 0 or -1.
int csandbox_set_child_subreaper(void);

// openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: opens `path` (relative) under `dirfd`
// and fails with EXDEV when resolving it (`..`, an absolute path, a symbolic link) would leave
// `dirfd`. Always close-on-exec. A descriptor or -1 (errno).
int csandbox_open_beneath(int dirfd, const char *path, int flags, mode_t mode);

#endif
