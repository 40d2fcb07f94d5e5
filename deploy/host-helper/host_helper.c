/*
 * host-helper: runs the host commands the server needs many of (mount, umount, mkfs.ext4, the
 * idmapped-mount helper), several at once, outside the server's process.
 *
 * Requests on stdin are NUL-terminated words: an id, the word count n, then n words (the command
 * and its arguments). Each request is served by a child of its own, so a slow command holds back
 * no other. The answer is one write of "id rc output\0": stdout and stderr together, trailing
 * newlines dropped and the others turned into spaces, at most MAX_OUTPUT bytes, so that the write
 * is atomic on the pipe. Commands get /dev/null as stdin. At the end of stdin the helper waits for
 * its requests to be answered and exits.
 *
 * The forms of mount(8) and umount(8) the server uses are carried out here with the system calls
 * themselves (mount(2), umount2(2), and a loop device from /dev/loop-control for `-o loop`):
 * exec'ing mount(8) costs milliseconds of CPU each time (the dynamic loader, libmount reading the
 * mount table), the system call tens of microseconds. Their failures read as mount(8)'s do
 * ("not mounted", exit 32). Every other command, and every other form of mount or umount, is
 * exec'd as it is, as is a loop mount on a kernel without LOOP_CONFIGURE. So is `cp --sparse=always
 * SRC DST` (a new workspace image from the empty one made once), with SEEK_DATA and
 * copy_file_range.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif
#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
struct loop_config {
  unsigned int fd;
  unsigned int block_size;
  struct loop_info64 info;
  unsigned long long __reserved[8];
};
#endif

#define MAX_OUTPUT 2000
#define MAX_WORDS 4096
/* mount(8)'s exit code for a failed mount or unmount. */
#define MOUNT_FAILED 32
/* Not one of the forms made here: exec the command. */
#define NOT_HANDLED -1

static char out[MAX_OUTPUT + 1];
static size_t out_len;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, sizeof out, fmt, ap);
  va_end(ap);
  out_len = n < 0 ? 0 : (size_t)n >= sizeof out ? sizeof out - 1 : (size_t)n;
}

/* Words of a mount -o list: per-mount flags, and filesystem data (key=value) passed on as is. */
static int parse_options(const char *opts, unsigned long *flags, char *data, size_t datalen, int *loop, int *remount, int *bind) {
  char buf[1024];
  if (strlen(opts) >= sizeof buf) return -1;
  strcpy(buf, opts);
  *flags = 0;
  *loop = *remount = *bind = 0;
  data[0] = '\0';
  for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
    if (!strcmp(w, "ro")) *flags |= MS_RDONLY;
    else if (!strcmp(w, "rw")) *flags &= ~(unsigned long)MS_RDONLY;
    else if (!strcmp(w, "nosuid")) *flags |= MS_NOSUID;
    else if (!strcmp(w, "nodev")) *flags |= MS_NODEV;
    else if (!strcmp(w, "noexec")) *flags |= MS_NOEXEC;
    else if (!strcmp(w, "noatime")) *flags |= MS_NOATIME;
    else if (!strcmp(w, "nosymfollow")) *flags |= MS_NOSYMFOLLOW;
    else if (!strcmp(w, "loop")) *loop = 1;
    else if (!strcmp(w, "remount")) *remount = 1;
    else if (!strcmp(w, "bind")) *bind = 1;
    else if (strchr(w, '=') && strncmp(w, "loop=", 5) != 0 && strncmp(w, "offset=", 7) != 0 && strncmp(w, "sizelimit=", 10) != 0) {
      size_t used = strlen(data);
      if (used + strlen(w) + 2 > datalen) return -1;
      if (used) strcat(data, ",");
      strcat(data, w);
    } else {
      return -1; /* an option mount(8) would treat specially */
    }
  }
  return 0;
}

/*
 * A loop device already bound to the file `st` names from its start, opened, or -1. As mount(8)
 * does, a second mount of an image uses the device of the first: the image's filesystem may
 * still be alive after its last unmount here (a container's mount namespace holding a copy of a
 * bind of it), and a second device would give the same file a second filesystem instance, each
 * unaware of the other's writes. The descriptor keeps the device from being cleared and given
 * to another file until the caller has mounted it.
 */
static int loop_find(const struct stat *st, char *dev, size_t devlen) {
  DIR *d = opendir("/sys/block");
  if (!d) return -1;
  int found = -1;
  for (struct dirent *e; found < 0 && (e = readdir(d));) {
    if (strncmp(e->d_name, "loop", 4) != 0) continue;
    char bound[300];
    snprintf(bound, sizeof bound, "/sys/block/%s/loop", e->d_name);
    if (access(bound, F_OK) != 0) continue; /* no file bound */
    snprintf(dev, devlen, "/dev/%s", e->d_name);
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    struct loop_info64 info;
    if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && info.lo_device == (unsigned long long)st->st_dev &&
        info.lo_inode == (unsigned long long)st->st_ino && info.lo_offset == 0 && info.lo_sizelimit == 0) {
      found = fd;
    } else {
      close(fd);
    }
  }
  closedir(d);
  return found;
}

/*
 * A loop device bound to `img` (the one already bound to it, or a new one that clears itself once
 * nothing holds it: autoclear): the caller mounts it and closes the returned descriptor. -1 with
 * errno when it could not be made here.
 */
static int loop_attach(const char *img, int readonly, char *dev, size_t devlen) {
  int file = open(img, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (file < 0) return -1;
  struct stat st;
  if (fstat(file, &st) == 0) {
    int reused = loop_find(&st, dev, devlen);
    if (reused >= 0) {
      close(file);
      return reused;
    }
  }
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    int e = errno;
    close(file);
    errno = e;
    return -1;
  }
  int lfd = -1, e = 0;
  /* Another request may take the same free device between the two calls: then ask again. */
  for (int tries = 0; tries < 64; tries++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      e = errno;
      break;
    }
    snprintf(dev, devlen, "/dev/loop%d", n);
    lfd = open(dev, O_RDWR | O_CLOEXEC);
    if (lfd < 0) {
      e = errno;
      break;
    }
    struct loop_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fd = (unsigned int)file;
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (readonly ? LO_FLAGS_READ_ONLY : 0);
    strncpy((char *)cfg.info.lo_file_name, img, LO_NAME_SIZE - 1);
    if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) break;
    e = errno;
    close(lfd);
    lfd = -1;
    if (e != EBUSY) break;
  }
  close(ctl);
  close(file);
  if (lfd < 0) errno = e ? e : EBUSY;
  return lfd;
}

static int mount_failed(const char *target) {
  say("mount: %s: %s.", target, strerror(errno));
  return MOUNT_FAILED;
}

/* mount --bind S D | --make-shared D | -t T -o O S D | -o remount,bind,O D */
static int do_mount(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--bind")) {
    if (mount(argv[2], argv[3], NULL, MS_BIND, NULL)) return mount_failed(argv[3]);
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "--make-shared")) {
    if (mount("none", argv[2], NULL, MS_SHARED, NULL)) return mount_failed(argv[2]);
    return 0;
  }
  unsigned long flags;
  char data[1024];
  int loop, remount, bind;
  if (argc == 4 && !strcmp(argv[1], "-o")) {
    if (parse_options(argv[2], &flags, data, sizeof data, &loop, &remount, &bind) || !remount || !bind || loop || data[0]) return NOT_HANDLED;
    if (mount("none", argv[3], NULL, MS_REMOUNT | MS_BIND | flags, NULL)) return mount_failed(argv[3]);
    return 0;
  }
  if (argc == 7 && !strcmp(argv[1], "-t") && !strcmp(argv[3], "-o")) {
    const char *type = argv[2], *source = argv[5], *target = argv[6];
    if (parse_options(argv[4], &flags, data, sizeof data, &loop, &remount, &bind) || remount || bind) return NOT_HANDLED;
    if (!strcmp(type, "tmpfs") && !loop) {
      if (mount(source, target, "tmpfs", flags, data[0] ? data : NULL)) return mount_failed(target);
      return 0;
    }
    if (!strcmp(type, "ext4") && loop) {
      char dev[300];
      int lfd = loop_attach(source, (flags & MS_RDONLY) != 0, dev, sizeof dev);
      if (lfd < 0) {
        /* No loop control here, or a kernel without LOOP_CONFIGURE: mount(8) knows other ways. */
        if (errno == ENOENT || errno == ENOTTY || errno == EINVAL || errno == ENXIO) return NOT_HANDLED;
        say("mount: %s: failed to set up a loop device for %s: %s.", target, source, strerror(errno));
        return MOUNT_FAILED;
      }
      int rc = 0;
      if (mount(dev, target, "ext4", flags, data[0] ? data : NULL)) rc = mount_failed(target);
      close(lfd); /* autoclear: the device goes with the last holder, the mount or this */
      return rc;
    }
  }
  return NOT_HANDLED;
}

/* umount D | umount -l D */
static int do_umount(int argc, char **argv) {
  const char *target;
  int how;
  if (argc == 2 && argv[1][0] != '-') {
    target = argv[1];
    how = 0;
  } else if (argc == 3 && !strcmp(argv[1], "-l")) {
    target = argv[2];
    how = MNT_DETACH;
  } else {
    return NOT_HANDLED;
  }
  if (umount2(target, how) == 0) return 0;
  if (errno == EINVAL) say("umount: %s: not mounted.", target);
  else if (errno == ENOENT) say("umount: %s: no mount point specified.", target);
  else if (errno == EBUSY) say("umount: %s: target is busy.", target);
  else say("umount: %s: %s.", target, strerror(errno));
  return MOUNT_FAILED;
}

/*
 * cp --sparse=always SRC DST, for a sparse image: only SRC's data (SEEK_DATA/SEEK_HOLE) is
 * copied, in the kernel (copy_file_range), and DST gets SRC's size; its holes stay holes.
 */
static int do_cp(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[1], "--sparse=always") != 0) return NOT_HANDLED;
  int src = open(argv[2], O_RDONLY | O_CLOEXEC);
  if (src < 0) {
    say("cp: cannot open '%s' for reading: %s", argv[2], strerror(errno));
    return 1;
  }
  struct stat st;
  int dst = -1, rc = 1;
  if (fstat(src, &st) != 0 || !S_ISREG(st.st_mode)) {
    say("cp: '%s': not a regular file", argv[2]);
    goto out;
  }
  dst = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (dst < 0) {
    say("cp: cannot create regular file '%s': %s", argv[3], strerror(errno));
    goto out;
  }
  for (off_t at = 0; at < st.st_size;) {
    off_t data = lseek(src, at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* only a hole is left */
      say("cp: '%s': %s", argv[2], strerror(errno));
      goto out;
    }
    off_t hole = lseek(src, data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    off_t in = data, outp = data;
    while (in < hole) {
      ssize_t n = copy_file_range(src, &in, dst, &outp, (size_t)(hole - in), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        say("cp: error copying '%s' to '%s': %s", argv[2], argv[3], n < 0 ? strerror(errno) : "unexpected end of file");
        goto out;
      }
    }
    at = hole;
  }
  if (ftruncate(dst, st.st_size) != 0) {
    say("cp: '%s': %s", argv[3], strerror(errno));
    goto out;
  }
  rc = 0;
out:
  close(src);
  if (dst >= 0 && close(dst) != 0 && rc == 0) {
    say("cp: '%s': %s", argv[3], strerror(errno));
    rc = 1;
  }
  return rc;
}

/* Runs argv with /dev/null as stdin, its stdout and stderr into `out`; bash's exit codes. */
static int run_command(char **argv) {
  int p[2];
  if (pipe2(p, O_CLOEXEC)) {
    say("host-helper: pipe: %s", strerror(errno));
    return 126;
  }
  pid_t pid = fork();
  if (pid < 0) {
    say("host-helper: fork: %s", strerror(errno));
    return 126;
  }
  if (pid == 0) {
    /* stdin is already /dev/null: the request's child (main) made it so. */
    dup2(p[1], 1);
    dup2(p[1], 2);
    execvp(argv[0], argv);
    int e = errno;
    dprintf(2, "host-helper: %s: %s", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  close(p[1]);
  char chunk[4096];
  for (;;) {
    ssize_t n = read(p[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t room = MAX_OUTPUT - out_len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(out + out_len, chunk, take);
    out_len += take;
  }
  close(p[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 126;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Writes the answer "id rc out\0" for a request. */
static void answer(const char *id, int rc) {
  while (out_len > 0 && (out[out_len - 1] == '\n' || out[out_len - 1] == '\r')) out_len--;
  char msg[64 + MAX_OUTPUT + 2];
  int head = snprintf(msg, 64, "%s %d ", id, rc);
  size_t len = (size_t)head;
  for (size_t i = 0; i < out_len; i++) {
    char c = out[i];
    if (c == '\0') continue;
    msg[len++] = (c == '\n' || c == '\r') ? ' ' : c;
  }
  msg[len++] = '\0';
  /* One write: atomic on a pipe (at most PIPE_BUF bytes), so answers never interleave. */
  ssize_t w;
  do w = write(1, msg, len);
  while (w < 0 && errno == EINTR);
}

static void serve(const char *id, int argc, char **argv) {
  int rc = NOT_HANDLED;
  out_len = 0;
  const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  /* Only the names PATH would find mount(8) and umount(8) by, or their usual paths. */
  int plain = strchr(argv[0], '/') == NULL || !strcmp(argv[0], "/bin/mount") || !strcmp(argv[0], "/usr/bin/mount") ||
              !strcmp(argv[0], "/bin/umount") || !strcmp(argv[0], "/usr/bin/umount");
  if (plain && !strcmp(base, "mount")) rc = do_mount(argc, argv);
  else if (plain && !strcmp(base, "umount")) rc = do_umount(argc, argv);
  else if (!strcmp(argv[0], "cp")) rc = do_cp(argc, argv);
  if (rc == NOT_HANDLED) {
    out_len = 0;
    rc = run_command(argv);
  }
  answer(id, rc);
}

/* The next NUL-terminated word of stdin (malloc'd), or NULL at its end. */
static char *next_word(void) {
  size_t cap = 256, len = 0;
  char *w = malloc(cap);
  if (!w) return NULL;
  for (;;) {
    int c = getchar_unlocked();
    if (c == EOF) {
      free(w);
      return NULL;
    }
    if (len + 1 >= cap) {
      char *more = realloc(w, cap *= 2);
      if (!more) {
        free(w);
        return NULL;
      }
      w = more;
    }
    w[len++] = (char)c;
    if (c == '\0') return w;
  }
}

int main(void) {
  /* Children are reaped by the kernel; wait() below returns once they are all gone. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sa.sa_flags = SA_NOCLDWAIT;
  sigaction(SIGCHLD, &sa, NULL);
  for (;;) {
    char *id = next_word();
    if (!id) break;
    char *count = next_word();
    if (!count) break;
    char *end;
    long n = strtol(count, &end, 10);
    if (*count == '\0' || *end != '\0' || n < 1 || n > MAX_WORDS) break; /* not our protocol */
    char **argv = calloc((size_t)n + 1, sizeof *argv);
    if (!argv) break;
    int complete = 1;
    for (long i = 0; i < n; i++) {
      if (!(argv[i] = next_word())) {
        complete = 0;
        break;
      }
    }
    if (!complete) break;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGCHLD, SIG_DFL);
      int null = open("/dev/null", O_RDONLY);
      if (null >= 0) dup2(null, 0);
      serve(id, (int)n, argv);
      _exit(0);
    }
    if (pid < 0) {
      say("host-helper: fork: %s", strerror(errno));
      answer(id, 126);
    }
    for (long i = 0; i < n; i++) free(argv[i]);
    free(argv);
    free(id);
    free(count);
  }
  while (wait(NULL) > 0 || errno == EINTR) {
  }
  return 0;
}
