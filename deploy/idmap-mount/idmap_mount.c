/*
 * idmap-mount SRC DST ID HOSTID
 *
 * Mounts the filesystem mounted at SRC again at DST (an existing directory) as an idmapped mount
 * (mount_setattr MOUNT_ATTR_IDMAP) in which files owned by ID on disk belong to host ID HOSTID,
 * and files HOSTID creates are owned by ID on disk; nosuid and nodev. A task container whose user
 * namespace maps its user to HOSTID then reads and writes a workspace whose files stay owned by
 * ID. runc 1.1 cannot make idmapped mounts itself; it bind-mounts DST, which keeps the idmapping.
 *
 * The mapping comes from a user namespace made for the purpose: a child unshares one, the parent
 * (root) writes its uid_map and gid_map ("ID HOSTID 1") and holds /proc/CHILD/ns/user open.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "idmap-mount: %s: %s\n", what, strerror(errno));
  exit(1);
}

static unsigned long id_arg(const char *s) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v > 4294967294UL) {
    fprintf(stderr, "idmap-mount: not an id: %s\n", s);
    exit(2);
  }
  return v;
}

static void write_map(pid_t pid, const char *file, unsigned long id, unsigned long host) {
  char path[64], line[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int n = snprintf(line, sizeof line, "%lu %lu 1\n", id, host);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, line, n) != n) die(path);
  close(fd);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: idmap-mount SRC DST ID HOSTID\n");
    return 2;
  }
  unsigned long id = id_arg(argv[3]), host = id_arg(argv[4]);
  int ready[2], hold[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(hold, O_CLOEXEC)) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    char c = 0;
    if (unshare(CLONE_NEWUSER)) _exit(1);
    if (write(ready[1], &c, 1) != 1) _exit(1);
    /* Lives until the parent has opened the namespace (its end of `hold` closes). */
    close(hold[1]);
    (void)!read(hold[0], &c, 1);
    _exit(0);
  }
  close(ready[1]);
  close(hold[0]);
  char c;
  if (read(ready[0], &c, 1) != 1) {
    errno = ECHILD;
    die("unshare(CLONE_NEWUSER)");
  }
  write_map(child, "uid_map", id, host);
  write_map(child, "gid_map", id, host);
  char ns[64];
  snprintf(ns, sizeof ns, "/proc/%d/ns/user", (int)child);
  int userns = open(ns, O_RDONLY | O_CLOEXEC);
  if (userns < 0) die(ns);
  close(hold[1]);
  waitpid(child, NULL, 0);

  int tree = syscall(SYS_open_tree, AT_FDCWD, argv[1], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) die("open_tree");
  struct mount_attr attr = {
    .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    .userns_fd = (unsigned long)userns,
  };
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr)) die("mount_setattr");
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, argv[2], MOVE_MOUNT_F_EMPTY_PATH)) die("move_mount");
  return 0;
}
