import Docker from 'dockerode';
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { BOTH_ISOLATIONS, ISOLATIONS, type TestIsolation } from '../helpers/isolation.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer(BOTH_ISOLATIONS);
t.teardown(() => srv.close());

// Every test runs under each isolation. Where gVisor shows something differently by design (its
// own /proc, mount table, network stack and thread accounting), the assertion checks the
// equivalent property and says so.
function hardening(t: Tap.Test, isolation: TestIsolation) {
  const gvisor = isolation === 'gvisor';
  const run = (command: string, extra: Record<string, unknown> = {}) => runTask(srv.url, command, { isolation, ...extra });

  t.test('runs as 65532 in /workspace with HOME in the workspace', async (t) => {
    const r = await run('id -u; id -g; pwd; echo "$HOME"; test -d "$HOME" && test -w "$HOME" && echo home-ok');
    t.equal(r.stdout, '65532\n65532\n/workspace\n/workspace/.home\nhome-ok\n');
  });

  t.test('process status: no capabilities, no_new_privs, seccomp filtering', async (t) => {
    const r = await run('grep -E "^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status');
    t.match(r.stdout, /CapEff:\s+0000000000000000/);
    t.match(r.stdout, /CapPrm:\s+0000000000000000/);
    t.match(r.stdout, /CapBnd:\s+0000000000000000/);
    t.match(r.stdout, /Seccomp:\s+2/, 'seccomp mode 2 (filter)');
    if (!gvisor) t.match(r.stdout, /NoNewPrivs:\s+1/);
    else {
      // gVisor's /proc/self/status has no NoNewPrivs line: ask prctl(PR_GET_NO_NEW_PRIVS) instead.
      const nnp = await run(`python3 -c 'import ctypes; print("nnp", ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))'`);
      t.equal(nnp.stdout, 'nnp 1\n', 'no_new_privs is set');
    }
  });

  t.test('read-only root; writable size-capped tmpfs owned by 65532; workspace writable', async (t) => {
    const r = await run(
      'touch /etc/x 2>&1; touch /usr/x 2>&1; echo t > /tmp/t && echo tmp-ok; echo r > /run/r && echo run-ok; echo v > /var/tmp/v && echo vartmp-ok; echo w > /workspace/w && echo ws-ok',
    );
    // gVisor checks permissions before the read-only mount (EACCES); the mount test below shows
    // its root is read-only too.
    t.match(r.stdout, gvisor ? /cannot touch '\/etc\/x'[\s\S]*cannot touch '\/usr\/x'/ : /Read-only file system[\s\S]*Read-only file system/);
    t.match(r.stdout, /tmp-ok\nrun-ok\nvartmp-ok\nws-ok\n$/);
    const big = await run('dd if=/dev/zero of=/tmp/big bs=1M count=100 2>&1; echo rc=$?');
    t.match(big.stdout, /No space left on device[\s\S]*rc=1/, '/tmp is capped (64 MiB by default)');
  });

  t.test('of the host data, only the workspace is mounted (nosuid,nodev)', async (t) => {
    const r = await run('cat /proc/self/mountinfo');
    const virtual = new Set(['overlay', 'tmpfs', 'proc', 'sysfs', 'devpts', 'mqueue', 'cgroup', 'cgroup2']);
    const mounts = r.stdout
      .trim()
      .split('\n')
      .map((line) => {
        const [pre, post] = line.split(' - ');
        const f = pre!.split(' ');
        return { root: f[3]!, point: f[4]!, opts: f[5]!, fstype: post!.split(' ')[0]!, source: post!.split(' ')[1]! };
      });
    // gVisor serves every host file through its gofer: the image root and Podman's per-container
    // /dev/shm are 9p mounts there (the runc list has them as overlay and tmpfs).
    const hostMounts = mounts.filter((m) => !virtual.has(m.fstype) && !(gvisor && m.fstype === '9p' && (m.point === '/' || m.point === '/dev/shm')));
    // Podman's injected files (hosts, hostname, resolv.conf, .containerenv, its init) are expected.
    // /etc/hosts is the server's own file (localhost and the sandbox's name), mounted read-only.
    const injected = new Set(['/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/run/.containerenv', '/run/podman-init', '/dev/init']);
    const unexpected = hostMounts.filter((m) => m.point !== '/workspace' && !injected.has(m.point));
    t.same(unexpected, [], 'no host data besides the workspace and Podman-injected files');
    const ws = hostMounts.find((m) => m.point === '/workspace');
    t.ok(ws, 'the workspace is mounted at /workspace');
    if (!gvisor) {
      // Each workspace is its own loop-mounted ext4 filesystem (its quota), mounted whole.
      t.match(ws!, { root: '/', fstype: 'ext4', source: /^\/dev\/loop\d+$/ }, "it is the workspace's own filesystem");
      t.match(ws!.opts, /\bnosuid\b/);
      t.match(ws!.opts, /\bnodev\b/);
    } else {
      // gVisor shows the workspace as its gofer's 9p mount; the files it serves come from the
      // workspace's own loop-mounted ext4 filesystem on the host, mounted nosuid,nodev.
      t.match(ws!, { root: '/', fstype: '9p', opts: /^rw\b/ }, 'the workspace is the one writable host mount');
      const dir = await srv.mountWorkspace(r.task.workspaceId);
      const host = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === dir);
      t.match(host, / - ext4 \/dev\/loop\d+ /, "on the host it is the workspace's own filesystem");
      t.match(host?.split(' ')[5], /\bnosuid\b.*\bnodev\b|\bnodev\b.*\bnosuid\b/, 'mounted nosuid,nodev on the host');
    }
    t.equal(mounts.find((m) => m.point === '/')!.opts.split(',')[0], 'ro', 'the root is read-only');
  });

  t.test('nested user namespaces fail through unshare and through clone(CLONE_NEWUSER)', async (t) => {
    const u = await run('unshare --user --map-root-user id -u; echo rc=$?');
    t.match(u.stdout, /rc=[1-9]/, 'unshare --user fails');
    t.notMatch(u.stdout, /^0$/m, 'never became root in a new namespace');
    const py = [
      'import ctypes, os',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'libc.syscall.restype = ctypes.c_long',
      'r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)',
      'os._exit(0) if r == 0 else None',
      'print("clone", r, ctypes.get_errno())',
      'r = libc.syscall(435, 0, 0)',
      'print("clone3", r, ctypes.get_errno())',
      'r = libc.syscall(272, 0x10000000)',
      'print("unshare", r, ctypes.get_errno())',
      'r = libc.syscall(165, b"none", b"/tmp", b"tmpfs", 0, 0)',
      'print("mount", r, ctypes.get_errno())',
      'r = libc.syscall(250, 0, 0, 0, 0, 0)',
      'print("keyctl", r, ctypes.get_errno())',
      'pid = os.fork()',
      'os._exit(0) if pid == 0 else print("fork ok", os.waitpid(pid, 0)[1])',
    ].join('\n');
    const c = await run(`python3 -c '${py}'`);
    t.match(c.stdout, /^clone -1 1$/m, 'clone(CLONE_NEWUSER) → EPERM');
    // gVisor does not implement clone3 and answers EPERM; the seccomp profile's ENOSYS is runc's.
    t.match(c.stdout, gvisor ? /^clone3 -1 (38|1)$/m : /^clone3 -1 38$/m, 'clone3 → ENOSYS');
    t.match(c.stdout, /^unshare -1 1$/m, 'unshare(CLONE_NEWUSER) → EPERM');
    t.match(c.stdout, /^mount -1 1$/m, 'mount → EPERM');
    t.match(c.stdout, /^keyctl -1 1$/m, 'keyctl → EPERM');
    t.match(c.stdout, /^fork ok 0$/m, 'plain fork still works');
  });

  t.test('no network interface but loopback', async (t) => {
    // gVisor has no /sys/class/net: its network stack's interfaces come from /proc/net/dev alone.
    const r = await run(`${gvisor ? '' : 'ls /sys/class/net; '}tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "`);
    t.equal(r.stdout, gvisor ? 'lo\n' : 'lo\nlo\n');
    const names = await run(`python3 -c 'import socket; print(socket.if_nameindex())'`);
    t.equal(names.stdout, "[(1, 'lo')]\n", 'the only interface the kernel names is lo');
  });

  t.test('a fork bomb is contained; the server stays healthy; a task beside it can still fork', async (t) => {
    const bomb = await submit(srv.url, { isolation,
      // The task's own shell forks once, before the bomb has taken anything, then execs: a shell
      // that cannot fork exits 2, which must not be the task's own shell.
      command: 'bomb() { bomb | bomb & }; bomb & exec sleep 30',
      timeoutSeconds: 6,
      resources: { pids: 64 },
    });
    await new Promise((r) => setTimeout(r, 1500));
    const health = await api(srv.url, 'GET', '/healthz');
    t.equal(health.status, 200, 'the server answers while the bomb runs');
    const beside = await run('for i in $(seq 1 100); do /bin/true; done; sh -c "echo child"; echo forked');
    t.equal(beside.task.status, 'succeeded', 'the neighbour task runs');
    t.equal(beside.stdout, 'child\nforked\n');
    const done = await waitDone(srv.url, bomb.id);
    // gVisor's pids limit bounds the sandbox's host threads: a bomb that reaches it ends its whole
    // sandbox (failed) unless the timeout comes first.
    t.ok(gvisor ? ['timed_out', 'failed'].includes(done.status) : done.status === 'timed_out', `the bomb is ended (${done.status})`);
    const after = await run('echo still-fine');
    t.equal(after.stdout, 'still-fine\n', 'the next task runs normally');
  });

  t.test("/etc/hosts names only localhost and the sandbox, nothing of the host", async (t) => {
    const r = await run('cat /etc/hosts; echo "name=$(hostname)"; getent hosts host.containers.internal; echo "rc=$?"');
    t.equal(r.stdout, '127.0.0.1\tlocalhost sandbox\n::1\tlocalhost sandbox\nname=sandbox\nrc=2\n');
    t.notMatch(r.stdout, hostname(), "the host's name is not there");
    t.notMatch(r.stdout, 'host.containers.internal');
    const w = await run('echo "6.6.6.6 evil" >> /etc/hosts; echo "rc=$?"');
    t.match(w.stdout, /rc=[1-9]/, 'and the task cannot change it');
  });

  t.test('each task has a private IPC namespace', async (t) => {
    const docker = new Docker({ socketPath: srv.services.socketPath });
    const a = await submit(srv.url, { isolation, command: 'readlink /proc/self/ns/ipc; sleep 30', timeoutSeconds: 60 });
    const b = await runTask(srv.url, 'readlink /proc/self/ns/ipc', { isolation });
    // The server's own list: a pre-started container's task is in its claim, not in a label.
    let c: { Id: string } | undefined;
    for (let i = 0; i < 300 && !c; i++) {
      const own = (await srv.services.engine.listOurs()).find((o) => o.taskId === a.id && o.running);
      c = own ? { Id: own.containerId } : undefined;
      if (!c) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(c, 'the first task is running');
    // Podman's inspect reads `shareable` whatever the mode; what private means is that the engine
    // refuses to let another container join the namespace.
    const join = await docker
      .createContainer({ Image: 'sandboxshift/runtime-python:3.11', Cmd: ['true'], HostConfig: { IpcMode: `container:${c!.Id}` } })
      .then(async (joined) => {
        await joined.remove({ force: true });
        return 'joined';
      })
      .catch((err: Error) => err.message);
    t.match(join, /non-shareable IPC/, 'no other container can join the task IPC namespace');
    await api(srv.url, 'POST', `/v1/tasks/${a.id}/cancel`);
    await waitDone(srv.url, a.id);
    const aOut = (await api(srv.url, 'GET', `/v1/tasks/${a.id}/logs?stream=stdout`)).text;
    if (gvisor) {
      // gVisor has no /proc/self/ns: what a private namespace means is checked below instead.
      t.match(aOut, /No such file|Invalid argument|^$/);
      return;
    }
    t.match(aOut, /^ipc:\[\d+\]\n$/);
    t.not(aOut, b.stdout, 'two tasks see different IPC namespaces');
  });

  t.test('a System V shared memory segment one task creates is invisible to another', async (t) => {
    const shm = (flags: string, then: string) =>
      `python3 -c 'import ctypes, time; l = ctypes.CDLL(None, use_errno=True); r = l.shmget(0x5b5b, 4096, ${flags}); print("seen" if r >= 0 else "absent", ctypes.get_errno(), flush=True); ${then}'`;
    const a = await submit(srv.url, { isolation, command: `${shm('0o1000 | 0o600', 'time.sleep(30)')}`, timeoutSeconds: 60 });
    let out = '';
    for (let i = 0; i < 300 && !out; i++) {
      out = (await api(srv.url, 'GET', `/v1/tasks/${a.id}/logs?stream=stdout`)).text;
      if (!out) await new Promise((r) => setTimeout(r, 100));
    }
    t.equal(out, 'seen 0\n', 'the first task created the segment');
    const b = await run(shm('0', 'None'));
    t.equal(b.stdout, 'absent 2\n', 'the second task does not find it (ENOENT)');
    await api(srv.url, 'POST', `/v1/tasks/${a.id}/cancel`);
    await waitDone(srv.url, a.id);
  });
}

for (const isolation of ISOLATIONS) t.test(isolation, async (t) => hardening(t, isolation));
