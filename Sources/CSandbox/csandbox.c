#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int csandbox_seqpacket_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }

int csandbox_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

ssize_t csandbox_send_with_fds(int socket, const void *buffer, size_t length, const int *fds, int count) {
  if (count < 0 || count > 16) {
    errno = EINVAL;
    return -1;
  }
  union {
    char bytes[CMSG_SPACE(16 * sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct iovec vector = {.iov_base = (void *)buffer, .iov_len = length};
  struct msghdr header = {.msg_iov = &vector, .msg_iovlen = 1};
  if (count > 0) {
    header.msg_control = control.bytes;
    header.msg_controllen = CMSG_SPACE(count * sizeof(int));
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&header);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(count * sizeof(int));
    memcpy(CMSG_DATA(cmsg), fds, count * sizeof(int));
  }
  ssize_t sent;
  while ((sent = sendmsg(socket, &header, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return sent;
}

int csandbox_spawn(const char *path, char *const argv[], char *const envp[], int log_fd, const int *extra_fds,
                   int extra_count, pid_t *pid) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (log_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  // Descriptors 3… are given in order; each source is above the targets filled before it, so a
  // dup2 never overwrites a source still to come (callers pass descriptors >= 3 + extra_count
  // or exactly their target).
  for (int i = 0; i < extra_count; i++) posix_spawn_file_actions_adddup2(&actions, extra_fds[i], 3 + i);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3 + extra_count);

  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attributes, &empty);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int result = posix_spawn(pid, path, &actions, &attributes, argv, envp);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  return result;
}

int csandbox_exited(int status) { return WIFEXITED(status); }
int csandbox_exit_status(int status) { return WEXITSTATUS(status); }
int csandbox_signaled(int status) { return WIFSIGNALED(status); }
int csandbox_term_signal(int status) { return WTERMSIG(status); }

int csandbox_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int csandbox_open_beneath(int dirfd, const char *path, int flags, mode_t mode) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}
