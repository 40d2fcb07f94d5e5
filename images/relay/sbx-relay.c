/*
 * sbx-relay: the in-sandbox end of SandboxShift's egress path.
 *
 * A task that has an egress allowlist runs with no network at all (only loopback). The server
 * bind-mounts one Unix socket into the container, connected to its egress proxy. Programs in the
 * task speak to a proxy at 127.0.0.1:PORT (HTTP_PROXY and friends); this relay listens there and
 * copies each connection, byte for byte, to and from that socket. It knows nothing about HTTP:
 * every decision is the proxy's, on the host.
 *
 * Usage: sbx-relay PORT SOCKET -- COMMAND [ARG...]
 *   Binds 127.0.0.1:PORT first (so the proxy address works from the command's first instruction),
 *   forks a relay daemon that dies with the command (PR_SET_PDEATHSIG), then execs COMMAND.
 *   Exit status 125 when the relay cannot be set up; 127 when COMMAND cannot be executed.
 *
 * Usage: sbx-relay --stdin FIFO -- COMMAND [ARG...]
 *   The task's stdin. The server writes it into FIFO (a named pipe in a bind-mounted directory)
 *   as frames: a 2-byte big-endian length, then that many bytes (at most STDIN_FRAME_MAX, so a
 *   frame and its header fit in PIPE_BUF and every write of one is atomic). A zero-length frame
 *   is EOF. The relay holds FIFO open for reading and writing, so a server that goes away (and
 *   a new one that opens FIFO again) is not EOF. A daemon copies each frame's bytes into a pipe
 *   that becomes COMMAND's stdin, and closes it at the EOF frame (or at a malformed one); it
 *   dies with the command. Same exit statuses as above. COMMAND may be the relay again (egress).
 *
 * Build (static, no libc needed in the image): gcc -static -Os -s -o sbx-relay sbx-relay.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void fail(const char *what) {
  fprintf(stderr, "sbx-relay: %s: %s\n", what, strerror(errno));
  _exit(125);
}

/* Copy src -> dst until EOF or error, then half-close dst so the peer sees EOF too. */
static void pump(int src, int dst) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(src, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(dst, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) goto done;
      off += w;
    }
  }
done:
  shutdown(dst, SHUT_WR);
  shutdown(src, SHUT_RD);
}

/* One connection: one process per direction, so neither direction can block the other. */
static void serve(int client, const struct sockaddr_un *addr) {
  int upstream = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (upstream < 0 || connect(upstream, (const struct sockaddr *)addr, sizeof *addr) < 0) _exit(1);
  pid_t pid = fork();
  if (pid < 0) _exit(1);
  if (pid == 0) {
    pump(client, upstream);
    _exit(0);
  }
  pump(upstream, client);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  _exit(0);
}

/* Both bytes of the header plus the largest payload: PIPE_BUF (4096 on Linux). */
#define STDIN_FRAME_MAX 4094

/* Writes all of buf to fd; 0 when the reader went away. */
static int write_all(int fd, const char *buf, size_t n) {
  for (size_t off = 0; off < n;) {
    ssize_t w = write(fd, buf + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 0;
    off += (size_t)w;
  }
  return 1;
}

/* The stdin daemon: frames from the FIFO into the command's stdin pipe, until the EOF frame. */
static void unframe(int fifo, int out) {
  static char buf[65536];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fifo, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return; /* cannot happen while the relay holds a writer; stop rather than spin */
    have += (size_t)n;
    size_t at = 0;
    while (have - at >= 2) {
      size_t len = ((size_t)(unsigned char)buf[at] << 8) | (unsigned char)buf[at + 1];
      if (len == 0 || len > STDIN_FRAME_MAX) return; /* EOF, or not a frame the server writes */
      if (have - at < 2 + len) break;
      if (!write_all(out, buf + at + 2, len)) return; /* the command closed its stdin */
      at += 2 + len;
    }
    memmove(buf, buf + at, have - at);
    have -= at;
  }
}

static int stdin_mode(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: sbx-relay --stdin FIFO -- COMMAND [ARG...]\n");
    return 125;
  }
  /* Read-write: the FIFO always has a writer, so no server coming and going reads as EOF. A
   * runtime that refuses O_RDWR on a FIFO gets a reader first (non-blocking), then a writer. */
  int fifo = open(argv[2], O_RDWR | O_CLOEXEC);
  int keep = -1;
  if (fifo < 0) {
    fifo = open(argv[2], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fifo < 0) fail("open stdin fifo");
    keep = open(argv[2], O_WRONLY | O_CLOEXEC);
    if (keep < 0) fail("open stdin fifo for writing");
    int flags = fcntl(fifo, F_GETFL);
    if (flags < 0 || fcntl(fifo, F_SETFL, flags & ~O_NONBLOCK) < 0) fail("fcntl stdin fifo");
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) fail("pipe");
  pid_t command_pid = getpid();
  pid_t daemon = fork();
  if (daemon < 0) fail("fork");
  if (daemon == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != command_pid) _exit(0);
    close(pipefd[0]);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    signal(SIGPIPE, SIG_IGN);
    unframe(fifo, pipefd[1]);
    _exit(0);
  }
  close(fifo);
  if (keep >= 0) close(keep);
  close(pipefd[1]);
  if (pipefd[0] == 0) {
    if (fcntl(0, F_SETFD, 0) < 0) fail("fcntl stdin");
  } else {
    if (dup2(pipefd[0], 0) < 0) fail("dup2");
    close(pipefd[0]);
  }
  execvp(argv[4], &argv[4]);
  fprintf(stderr, "sbx-relay: cannot run %s: %s\n", argv[4], strerror(errno));
  return 127;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--stdin") == 0) return stdin_mode(argc, argv);
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: sbx-relay PORT SOCKET -- COMMAND [ARG...]\n");
    return 125;
  }
  char *end = NULL;
  long port = strtol(argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
    fprintf(stderr, "sbx-relay: bad port '%s'\n", argv[1]);
    return 125;
  }
  struct sockaddr_un upstream = {.sun_family = AF_UNIX};
  if (strlen(argv[2]) >= sizeof upstream.sun_path) {
    fprintf(stderr, "sbx-relay: socket path too long\n");
    return 125;
  }
  strcpy(upstream.sun_path, argv[2]);

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) fail("socket");
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, (struct sockaddr *)&local, sizeof local) < 0) fail("bind 127.0.0.1");
  if (listen(listener, 128) < 0) fail("listen");

  pid_t command_pid = getpid();
  pid_t daemon = fork();
  if (daemon < 0) fail("fork");
  if (daemon == 0) {
    /* The relay daemon: ends when the command ends, holds none of the task's stdio. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != command_pid) _exit(0);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* connection processes are reaped by the kernel */
    for (;;) {
      int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) usleep(100000);
        continue;
      }
      pid_t pid = fork();
      if (pid == 0) {
        close(listener);
        serve(client, &upstream);
      }
      close(client);
      if (pid < 0) usleep(100000);
    }
  }
  close(listener);
  execvp(argv[4], &argv[4]);
  fprintf(stderr, "sbx-relay: cannot run %s: %s\n", argv[4], strerror(errno));
  return 127;
}
