// inspect-sandbox-init: pid 1 of every sandbox (bubblewrap `--as-pid-1`).
//
// It runs the commands SandboxService sends over the control socket (fd 3, SOCK_SEQPACKET),
// each in its own session and process group with the standard input, output and error the
// service passed along (SCM_RIGHTS), reports when each starts and exits, and reaps every other
// process of the sandbox (background processes outlive the command that started them). When the
// control socket closes, init exits and the kernel kills everything left in the sandbox.
//
// Messages, host to init (first byte is the type, integers little-endian as on the host):
//   'X' u64 id, u32 argc, u32 envc, then argc + envc + 1 NUL-terminated strings (argv, env, cwd);
//       three descriptors attached: stdin, stdout, stderr.
//   'K' u64 id, i32 signal: signal the command's process group.
// Init to host:
//   'S' u64 id, i32 pid     the command started
//   'F' u64 id, i32 errno   it could not start (chdir or exec failed)
//   'E' u64 id, i32 status  it exited (a waitpid status)
//
// `inspect-sandbox-init --launch` is the other role of this binary, on the host: SandboxService
// starts it ahead of time and moves it into a new sandbox's cgroups (slow on cgroup v1), where
// it waits; when the sandbox is created, the service writes bubblewrap's arguments to its fd 5
// (NUL-separated, then end of file) and it becomes bubblewrap with execv, keeping fds 3 and 4
// (the control socket and the info pipe) — so bubblewrap and the sandbox start inside their
// cgroups without another migration.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONTROL_FD 3
#define MAX_MESSAGE (256 * 1024)
#define MAX_COMMANDS 4096

struct command {
  uint64_t id;
  pid_t pid;
};

static struct command commands[MAX_COMMANDS];
static int command_count;

static void send_reply(char type, uint64_t id, int32_t value) {
  char buffer[13];
  buffer[0] = type;
  memcpy(buffer + 1, &id, 8);
  memcpy(buffer + 9, &value, 4);
  while (send(CONTROL_FD, buffer, sizeof buffer, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

static pid_t pid_of(uint64_t id) {
  for (int i = 0; i < command_count; i++)
    if (commands[i].id == id) return commands[i].pid;
  return 0;
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < command_count; i++) {
      if (commands[i].pid != pid) continue;
      send_reply('E', commands[i].id, status);
      commands[i] = commands[--command_count];
      break;
    }
  }
}

// Splits `count` NUL-terminated strings off `*cursor`; NULL when the message is short.
static char **strings(char **cursor, char *end, uint32_t count) {
  char **list = calloc(count + 1, sizeof(char *));
  if (!list) return NULL;
  for (uint32_t i = 0; i < count; i++) {
    char *nul = memchr(*cursor, '\0', end - *cursor);
    if (!nul) {
      free(list);
      return NULL;
    }
    list[i] = *cursor;
    *cursor = nul + 1;
  }
  return list;
}

static void start(char *message, ssize_t length, int fds[3], sigset_t *original_mask) {
  uint64_t id;
  uint32_t argc, envc;
  if (length < 17) return;
  memcpy(&id, message + 1, 8);
  memcpy(&argc, message + 9, 4);
  memcpy(&envc, message + 13, 4);
  char *cursor = message + 17, *end = message + length;
  char **argv = argc > 0 ? strings(&cursor, end, argc) : NULL;
  char **envp = argv ? strings(&cursor, end, envc) : NULL;
  char *cwd = cursor < end && memchr(cursor, '\0', end - cursor) ? cursor : NULL;
  if (!argv || !envp || !cwd || command_count == MAX_COMMANDS) {
    send_reply('F', id, argv && envp && cwd ? EAGAIN : EINVAL);
    free(argv);
    free(envp);
    return;
  }
  // The child reports a failed chdir or exec through this pipe; a successful exec closes it.
  int report[2];
  if (pipe2(report, O_CLOEXEC) < 0) {
    send_reply('F', id, errno);
    free(argv);
    free(envp);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    sigprocmask(SIG_SETMASK, original_mask, NULL);
    signal(SIGPIPE, SIG_DFL);
    for (int i = 0; i < 3; i++) dup2(fds[i], i);
    close(CONTROL_FD);
    int error = 0;
    if (chdir(cwd) < 0)
      error = errno;
    else {
      execvpe(argv[0], argv, envp);
      error = errno;
    }
    while (write(report[1], &error, sizeof error) < 0 && errno == EINTR) {
    }
    _exit(127);
  }
  close(report[1]);
  free(argv);
  free(envp);
  if (pid < 0) {
    send_reply('F', id, errno);
    close(report[0]);
    return;
  }
  int error = 0;
  ssize_t got;
  while ((got = read(report[0], &error, sizeof error)) < 0 && errno == EINTR) {
  }
  close(report[0]);
  if (got == sizeof error) {
    // It never ran: reap it here so that no 'E' follows the 'F'.
    waitpid(pid, NULL, 0);
    send_reply('F', id, error);
    return;
  }
  commands[command_count++] = (struct command){id, pid};
  send_reply('S', id, pid);
}

#define ARGUMENTS_FD 5
#define MAX_ARGUMENTS (1024 * 1024)

// The launcher: reads argv from ARGUMENTS_FD and execs it. Exit 126 on a malformed argv, 127 when
// the exec fails.
static int launch(void) {
  static char buffer[MAX_ARGUMENTS];
  size_t length = 0;
  for (;;) {
    ssize_t got = read(ARGUMENTS_FD, buffer + length, sizeof buffer - 1 - length);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return 126;
    if (got == 0) break;
    length += (size_t)got;
    if (length == sizeof buffer - 1) return 126;
  }
  close(ARGUMENTS_FD);
  if (length == 0 || buffer[length - 1] != '\0') return 126;
  size_t count = 0;
  for (size_t i = 0; i < length; i++)
    if (buffer[i] == '\0') count++;
  char **argv = calloc(count + 1, sizeof(char *));
  if (!argv) return 126;
  char *cursor = buffer;
  for (size_t i = 0; i < count; i++) {
    argv[i] = cursor;
    cursor += strlen(cursor) + 1;
  }
  execv(argv[0], argv);
  return 127;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--launch") == 0) return launch();
  sigset_t mask, original;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, &original);
  int signals = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signals < 0) return 111;
  signal(SIGPIPE, SIG_IGN);
  fcntl(CONTROL_FD, F_SETFD, FD_CLOEXEC);

  static char message[MAX_MESSAGE];
  struct pollfd polls[2] = {{.fd = CONTROL_FD, .events = POLLIN}, {.fd = signals, .events = POLLIN}};
  for (;;) {
    if (poll(polls, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 112;
    }
    if (polls[1].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(signals, &info, sizeof info) == sizeof info) {
      }
      reap();
    }
    if (!(polls[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    union {
      char buffer[CMSG_SPACE(3 * sizeof(int))];
      struct cmsghdr align;
    } control;
    struct iovec vector = {.iov_base = message, .iov_len = sizeof message};
    struct msghdr header = {
        .msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer};
    ssize_t length = recvmsg(CONTROL_FD, &header, MSG_CMSG_CLOEXEC);
    if (length < 0 && errno == EINTR) continue;
    // The service is gone (or closed the sandbox): leaving ends every process in it.
    if (length <= 0) return 0;
    int fds[3] = {-1, -1, -1}, fd_count = 0;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&header); cmsg; cmsg = CMSG_NXTHDR(&header, cmsg)) {
      if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
      int count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (int i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
        if (fd_count < 3)
          fds[fd_count++] = fd;
        else
          close(fd);
      }
    }
    if (message[0] == 'X' && fd_count == 3) {
      start(message, length, fds, &original);
    } else if (message[0] == 'X') {
      uint64_t id = 0;
      if (length >= 9) memcpy(&id, message + 1, 8);
      send_reply('F', id, EBADF);
    } else if (message[0] == 'K' && length >= 13) {
      uint64_t id;
      int32_t sig;
      memcpy(&id, message + 1, 8);
      memcpy(&sig, message + 9, 4);
      pid_t pid = pid_of(id);
      if (pid > 0) kill(-pid, sig);
    }
    for (int i = 0; i < fd_count; i++) close(fds[i]);
  }
}
