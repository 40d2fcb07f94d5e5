/* seccomp_check: probes what deploy/seccomp.json allows inside a task container.
 * Prints one "name=RESULT" line per check (RESULT: OK, or the errno name, e.g. EPERM/ENOSYS,
 * or a value) and always exits 0; callers compare the lines.
 * Run it inside a container, not on a host: with capabilities the mount probes are skipped
 * (SKIPPED_CAPS), but unshare/clone probes would still create namespaces for this process.
 * Build: gcc -O2 -static -pthread -o seccomp_check seccomp_check.c
 * Expected under deploy/seccomp.json (uid 65532, --cap-drop ALL):
 *   clone_newuser..clone_newcgroup=EPERM  clone3=ENOSYS  unshare_newuser=EPERM  setns=EPERM
 *   mount=EPERM  umount2=EPERM  pivot_root=EPERM  fsopen=EPERM  open_tree=EPERM
 *   keyctl=EPERM  add_key=EPERM  request_key=EPERM
 *   fork=OK  clone_plain=OK  pthread=OK  posix_spawn=OK  seccomp_mode=2 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h> /* struct clone_args */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void report(const char *name, long rc, int err) {
  if (rc >= 0) printf("%s=OK\n", name);
  else printf("%s=%s\n", name, strerrorname_np(err) ? strerrorname_np(err) : "E?");
  fflush(stdout);
}

/* Child side of a successful clone/clone3/fork: leave at once. Parent reaps. */
static void reap_if_parent(long pid) {
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, NULL, 0);
}

/* raw clone without CLONE_VM: behaves like fork, child returns 0 on the same stack */
static void check_clone(const char *name, unsigned long flags) {
  errno = 0;
  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  int e = errno;
  reap_if_parent(pid);
  report(name, pid, e);
}

static void *thread_fn(void *arg) { return arg; }

/* Value of a "Key:" line of /proc/self/status ("?" if missing). */
static const char *status_field(const char *key, char *buf, size_t n) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t k = strlen(key);
  snprintf(buf, n, "?");
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, key, k) == 0 && line[k] == ':') {
      sscanf(line + k + 1, "%31s", buf);
      break;
    }
  }
  if (f) fclose(f);
  return buf;
}

int main(void) {
  char caps[32]; /* read before any probe: a successful unshare(CLONE_NEWUSER) grants caps */
  int privileged = strcmp(status_field("CapEff", caps, sizeof caps), "0000000000000000") != 0;
  static const struct { const char *name; unsigned long flag; } ns[] = {
    {"clone_newuser", CLONE_NEWUSER}, {"clone_newns", CLONE_NEWNS},
    {"clone_newpid", CLONE_NEWPID},   {"clone_newnet", CLONE_NEWNET},
    {"clone_newuts", CLONE_NEWUTS},   {"clone_newipc", CLONE_NEWIPC},
    {"clone_newcgroup", CLONE_NEWCGROUP},
  };
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) check_clone(ns[i].name, ns[i].flag);

  { /* clone3 with harmless flags: must be ENOSYS whatever the flags */
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    errno = 0;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    int e = errno;
    reap_if_parent(pid);
    report("clone3", pid, e);
  }

  long rc;
  errno = 0; rc = unshare(CLONE_NEWUSER);                  report("unshare_newuser", rc, errno);
  errno = 0; rc = setns(0, 0);                             report("setns", rc, errno);
  if (privileged) {
    /* with capabilities (e.g. root on a host) these would really mount: do not try */
    printf("mount=SKIPPED_CAPS\numount2=SKIPPED_CAPS\npivot_root=SKIPPED_CAPS\n");
  } else {
    errno = 0; rc = mount("none", "/tmp", "tmpfs", 0, NULL); report("mount", rc, errno);
    errno = 0; rc = umount2("/tmp", 0);                      report("umount2", rc, errno);
    errno = 0; rc = syscall(SYS_pivot_root, "/", "/");       report("pivot_root", rc, errno);
  }
  errno = 0; rc = syscall(SYS_fsopen, "tmpfs", 0);         report("fsopen", rc, errno);
  if (rc >= 0) close((int)rc);
  errno = 0; rc = syscall(SYS_open_tree, AT_FDCWD, "/", 0); report("open_tree", rc, errno);
  if (rc >= 0) close((int)rc);
  /* KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3), create=0 */
  errno = 0; rc = syscall(SYS_keyctl, 0, -3, 0);           report("keyctl", rc, errno);
  /* KEY_SPEC_PROCESS_KEYRING = -2 */
  errno = 0; rc = syscall(SYS_add_key, "user", "sbx", "x", 1, -2);       report("add_key", rc, errno);
  errno = 0; rc = syscall(SYS_request_key, "user", "sbx", NULL, 0);      report("request_key", rc, errno);

  /* what must keep working */
  errno = 0; pid_t p = fork(); int e = errno; reap_if_parent(p);      report("fork", p, e);
  check_clone("clone_plain", 0);
  {
    pthread_t t;
    int r = pthread_create(&t, NULL, thread_fn, NULL); /* glibc tries clone3, falls back to clone */
    if (r == 0) pthread_join(t, NULL);
    report("pthread", r == 0 ? 0 : -1, r);
  }
  {
    pid_t sp;
    char *argv[] = {"true", NULL};
    int r = posix_spawn(&sp, "/bin/true", NULL, NULL, argv, environ); /* clone3 → clone(CLONE_VFORK|CLONE_VM) */
    int st = 0;
    if (r == 0) waitpid(sp, &st, 0);
    if (r == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) printf("posix_spawn=CHILD_FAILED\n");
    else report("posix_spawn", r == 0 ? 0 : -1, r);
  }
  char mode[32];
  printf("seccomp_mode=%s\n", status_field("Seccomp", mode, sizeof mode));
  return 0;
}
