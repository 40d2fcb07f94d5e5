import t from 'tap';
import { buildContainerSpec, buildPooledSpec } from '../../src/runtime/spec.js';

const req = {
  taskId: 'tsk_abc',
  image: 'sandboxshift/runtime-python:3.11',
  command: 'echo "$X"; exit 3',
  env: { X: 'y' },
  workspaceDir: '/data/workspaces/ws_1',
  workspaceReadonly: false,
  cpus: 1.5,
  memoryMb: 512,
  pids: 128,
  isolation: 'runc' as const,
  stdin: false,
  backstopSeconds: 65,
};
const settings = { serverId: 'srv_1', seccompProfilePath: '/opt/sbx/deploy/seccomp.json', hostsFilePath: '/data/sandbox/hosts', tmpfsMb: 64, nofile: 1024, nproc: 32768, logMaxBytes: 64 * 1024 * 1024 };

t.test('the container spec pins every hardening field', async (t) => {
  const s = buildContainerSpec(req, settings);
  t.equal(s.Image, 'sandboxshift/runtime-python:3.11');
  t.same(s.Entrypoint, ['/bin/sh', '-c'], 'the image entrypoint is always replaced by /bin/sh -c');
  t.same(s.Cmd, ['echo "$X"; exit 3'], 'the command is one argument, unmodified');
  t.equal(s.User, '65532:65532');
  t.equal(s.WorkingDir, '/workspace');
  t.same(s.Env, ['X=y', 'HOME=/workspace/.home'], 'HOME lives in the workspace and comes last');
  t.equal(s.Tty, false);
  t.equal(s.OpenStdin, false);
  t.equal(s.AttachStdin, false);
  t.equal(s.NetworkDisabled, true);
  t.same(s.Labels, { 'io.sandboxshift.managed': '1', 'io.sandboxshift.server': 'srv_1', 'io.sandboxshift.task': 'tsk_abc' });
  const h = s.HostConfig;
  t.same(
    h.Binds,
    ['/data/workspaces/ws_1:/workspace:rw,nosuid,nodev', '/data/sandbox/hosts:/etc/hosts:ro,nosuid,nodev'],
    "only the workspace and the server's own /etc/hosts (read-only) are mounted",
  );
  t.equal(h.ReadonlyRootfs, true);
  t.same(h.Tmpfs, {
    '/tmp': 'rw,nosuid,nodev,size=64m,U',
    '/run': 'rw,nosuid,nodev,size=64m,U',
    '/var/tmp': 'rw,nosuid,nodev,size=64m,U',
  });
  t.same(h.CapDrop, ['ALL']);
  t.same(h.CapAdd, []);
  t.equal(h.Privileged, false);
  t.same(h.SecurityOpt, ['no-new-privileges', 'seccomp=/opt/sbx/deploy/seccomp.json']);
  t.equal(h.Init, true);
  t.equal(h.Memory, 512 * 1024 * 1024);
  t.equal(h.MemorySwap, 512 * 1024 * 1024, 'swap equal to memory: no swap');
  t.equal(h.NanoCpus, 1.5e9);
  t.equal(h.PidsLimit, 128);
  t.same(h.Ulimits, [
    { Name: 'nofile', Soft: 1024, Hard: 1024 },
    { Name: 'nproc', Soft: 32768, Hard: 32768 },
  ]);
  t.equal(h.NetworkMode, 'none');
  t.equal(h.IpcMode, 'private', 'an IPC namespace of its own, not shareable');
  t.same(h.LogConfig, { Type: 'k8s-file', Config: { 'max-size': String(64 * 1024 * 1024) } }, "the engine's log of the output is bounded");
  t.equal(h.AutoRemove, false);
  t.same(Object.keys(s).sort(), [
    'AttachStderr', 'AttachStdin', 'AttachStdout', 'Cmd', 'Entrypoint', 'Env', 'HostConfig', 'Hostname', 'Image',
    'Labels', 'NetworkDisabled', 'OpenStdin', 'StdinOnce', 'Tty', 'User', 'WorkingDir',
  ], 'no other top-level field reaches the engine');
  t.same(Object.keys(h).sort(), [
    'AutoRemove', 'Binds', 'CapAdd', 'CapDrop', 'Init', 'IpcMode', 'LogConfig', 'Memory', 'MemorySwap', 'NanoCpus', 'NetworkMode',
    'PidsLimit', 'Privileged', 'ReadonlyRootfs', 'RestartPolicy', 'SecurityOpt', 'Tmpfs', 'Ulimits',
  ], 'no other HostConfig field reaches the engine');
});

t.test('read-only workspaces and stdin', async (t) => {
  const s = buildContainerSpec({ ...req, workspaceReadonly: true, stdin: true }, { ...settings, extraLabels: { 'io.sandboxshift.test': '1' } });
  t.same(s.HostConfig.Binds, ['/data/workspaces/ws_1:/workspace:ro,nosuid,nodev', '/data/sandbox/hosts:/etc/hosts:ro,nosuid,nodev']);
  t.equal(s.OpenStdin, true);
  t.equal(s.AttachStdin, true);
  t.equal(s.Labels['io.sandboxshift.test'], '1');
  t.equal(s.Labels['io.sandboxshift.task'], 'tsk_abc', 'extra labels cannot override the identifying ones');
});

t.test('stdin through the pipe: the stdin relay first, its directory mounted, no attach', async (t) => {
  const plain = buildContainerSpec({ ...req, stdin: true }, settings);
  const s = buildContainerSpec({ ...req, stdin: true, stdinRelay: '/usr/local/bin/sbx-relay' }, settings, null, '/data/stdin/tsk_abc');
  t.same(s.Entrypoint, ['/usr/local/bin/sbx-relay', '--stdin', '/run/sandboxshift/stdin/stdin.fifo', '--', '/bin/sh', '-c']);
  t.same(s.Cmd, plain.Cmd, 'the command is still one argument to /bin/sh -c');
  t.equal(s.HostConfig.Binds[2], '/data/stdin/tsk_abc:/run/sandboxshift/stdin:ro,nosuid,nodev,noexec', 'read-only under runc');
  t.equal(s.OpenStdin, false, 'no stdin for an attach');
  t.equal(s.AttachStdin, false);
  t.equal(s.Labels['io.sandboxshift.stdin'], 'fifo', 'marked, so that a later server opens the pipe again');
  const g = buildContainerSpec({ ...req, isolation: 'gvisor', stdin: true, stdinRelay: '/usr/local/bin/sbx-relay' }, settings, null, '/data/stdin/tsk_abc');
  t.equal(g.HostConfig.Binds[2], '/data/stdin/tsk_abc:/run/sandboxshift/stdin:rw,nosuid,nodev,noexec', 'gVisor opens a host pipe only on a writable mount');
  const egress = { socketDir: '/data/egress/tsk_abc', relay: '/usr/local/bin/sbx-relay', port: 3128 };
  const both = buildContainerSpec({ ...req, stdin: true, stdinRelay: '/usr/local/bin/sbx-relay', egress }, settings, null, '/data/stdin/tsk_abc');
  t.same(both.Entrypoint, ['/usr/local/bin/sbx-relay', '--stdin', '/run/sandboxshift/stdin/stdin.fifo', '--', '/usr/local/bin/sbx-relay', '3128', '/run/sandboxshift/egress/egress.sock', '--', '/bin/sh', '-c'], 'with egress the stdin relay execs the egress relay');
  const { Entrypoint: _e, HostConfig: h1, Labels: l1, AttachStdin: _a1, OpenStdin: _o1, ...rest1 } = s;
  const { Entrypoint: _pe, HostConfig: h0, Labels: l0, AttachStdin: _a0, OpenStdin: _o0, ...rest0 } = plain;
  t.same(rest1, rest0, 'every other top-level field is identical');
  t.same({ ...h1, Binds: null }, { ...h0, Binds: null }, 'every other HostConfig field is identical');
  t.same({ ...l1, 'io.sandboxshift.stdin': undefined }, { ...l0, 'io.sandboxshift.stdin': undefined });
  const noRelay = buildContainerSpec({ ...req, stdin: true }, settings, null, '/data/stdin/tsk_abc');
  t.equal(noRelay.AttachStdin, true, 'without a relay that reads the pipe, stdin stays on the attach');
  t.equal(noRelay.HostConfig.Binds.length, 2);
});

t.test('egress: same hardened spec, plus the relay entrypoint, the read-only proxy socket and proxy variables', async (t) => {
  const plain = buildContainerSpec(req, settings);
  const egress = { socketDir: '/data/egress/tsk_abc', relay: '/usr/local/bin/sbx-relay', port: 3128 };
  const s = buildContainerSpec({ ...req, env: { X: 'y', HTTP_PROXY: 'http://evil:1' }, egress }, settings);
  t.same(s.Entrypoint, ['/usr/local/bin/sbx-relay', '3128', '/run/sandboxshift/egress/egress.sock', '--', '/bin/sh', '-c']);
  t.same(s.Cmd, plain.Cmd, 'the command is still one argument to /bin/sh -c');
  t.same(s.HostConfig.Binds, [
    '/data/workspaces/ws_1:/workspace:rw,nosuid,nodev',
    '/data/sandbox/hosts:/etc/hosts:ro,nosuid,nodev',
    '/data/egress/tsk_abc:/run/sandboxshift/egress:ro,nosuid,nodev,noexec',
  ]);
  t.equal(s.HostConfig.NetworkMode, 'none', 'still no network: the socket is the only way out');
  t.equal(s.NetworkDisabled, true);
  const url = 'http://127.0.0.1:3128';
  t.same(s.Env, [
    'X=y',
    `HTTP_PROXY=${url}`, `HTTPS_PROXY=${url}`, `ALL_PROXY=${url}`, 'NO_PROXY=localhost,127.0.0.1,::1',
    `http_proxy=${url}`, `https_proxy=${url}`, `all_proxy=${url}`, 'no_proxy=localhost,127.0.0.1,::1',
    `PIP_PROXY=${url}`, `npm_config_proxy=${url}`, `npm_config_https_proxy=${url}`,
    'HOME=/workspace/.home',
  ], 'the server sets the proxy variables (a request cannot override them) and HOME last');
  const { Entrypoint: _e, Env: _v, HostConfig: h1, ...rest1 } = s;
  const { Entrypoint: _pe, Env: _pv, HostConfig: h0, ...rest0 } = plain;
  t.same(rest1, rest0, 'every other top-level field is identical');
  t.same({ ...h1, Binds: null }, { ...h0, Binds: null }, 'every other HostConfig field is identical');
});

t.test('operator CAs: the bundle mounted read-only at /run/sandboxshift/ca.pem, its variables winning over the request env', async (t) => {
  const s = buildContainerSpec({ ...req, env: { SSL_CERT_FILE: '/dev/null', KEEP: '1' } }, { ...settings, caBundlePath: '/data/trust/ca.pem' });
  t.same(s.HostConfig.Binds, [
    '/data/workspaces/ws_1:/workspace:rw,nosuid,nodev',
    `${settings.hostsFilePath}:/etc/hosts:ro,nosuid,nodev`,
    '/data/trust/ca.pem:/run/sandboxshift/ca.pem:ro,nosuid,nodev',
  ]);
  const names = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'PIP_CERT', 'npm_config_cafile', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'];
  t.same(s.Env, ['KEEP=1', ...names.map((n) => `${n}=/run/sandboxshift/ca.pem`), 'HOME=/workspace/.home']);
  const none = buildContainerSpec(req, { ...settings, caBundlePath: null });
  t.same(none.HostConfig.Binds, ['/data/workspaces/ws_1:/workspace:rw,nosuid,nodev', `${settings.hostsFilePath}:/etc/hosts:ro,nosuid,nodev`], 'no bundle, no mount');
});

t.test('a task with a host UID of its own: a user namespace onto its slot, its label, a lowered RLIMIT_SIGPENDING', async (t) => {
  const s = buildContainerSpec({ ...req, hostUid: 0x70000000 + 65532 }, { ...settings, sigpending: 24091 });
  t.same(s.IdMappings, {
    UIDMap: [{ containerId: 0, hostId: 0x70000000, size: 65536 }],
    GIDMap: [{ containerId: 0, hostId: 0x70000000, size: 65536 }],
  }, 'container UIDs and GIDs 0-65535 onto the slot: container 65532 is the host UID');
  t.equal(s.User, '65532:65532', 'the same user inside');
  t.equal(s.Labels['io.sandboxshift.host-uid'], String(0x70000000 + 65532), 'recorded for a re-attach');
  t.same(s.HostConfig.Ulimits.at(-1), { Name: 'sigpending', Soft: 24091, Hard: 24091 });
  const plain = buildContainerSpec(req, { ...settings, sigpending: 24091 });
  t.notOk('IdMappings' in plain, 'without a host UID: no user namespace');
  t.notOk(plain.HostConfig.Ulimits.some((u) => u.Name === 'sigpending'), "and the engine's RLIMIT_SIGPENDING");
});

t.test('secrets: not in Env; a read-only file the wrapper sources before the command', async (t) => {
  const plain = buildContainerSpec({ ...req, secretEnv: { TOKEN: 'hunter2' } }, settings);
  t.same(plain, buildContainerSpec(req, settings), 'the values alone change nothing: they never reach the spec');
  const s = buildContainerSpec({ ...req, secretEnv: { TOKEN: 'hunter2' } }, settings, '/dev/shm/sbx/srv_1/tsk_abc.env');
  t.notOk(JSON.stringify(s).includes('hunter2'), 'no value anywhere in the create body');
  t.same(s.Env, plain.Env);
  t.same(s.Entrypoint, ['/bin/sh', '-c']);
  t.same(s.Cmd, ['. /run/sandboxshift/secrets.env && exec /bin/sh -c "$0"', req.command], 'the wrapper execs the command, passed as $0');
  t.same(s.HostConfig.Binds.slice(-1), ['/dev/shm/sbx/srv_1/tsk_abc.env:/run/sandboxshift/secrets.env:ro,nosuid,nodev,noexec']);
  const { Cmd: _c, HostConfig: h1, ...rest1 } = s;
  const { Cmd: _pc, HostConfig: h0, ...rest0 } = plain;
  t.same(rest1, rest0, 'every other top-level field is identical');
  t.same({ ...h1, Binds: null }, { ...h0, Binds: null }, 'every other HostConfig field is identical');
});

t.test('under gVisor the pids limit leaves room for runsc\'s own threads; everything else is the same', async (t) => {
  const runc = buildContainerSpec(req, settings);
  const gvisor = buildContainerSpec({ ...req, isolation: 'gvisor' }, settings);
  t.equal(gvisor.HostConfig.PidsLimit, 64 + 10 * 128, 'base plus ten host threads per allowed process');
  t.same({ ...gvisor.HostConfig, PidsLimit: 0 }, { ...runc.HostConfig, PidsLimit: 0 }, 'every other host setting is the same');
  t.same({ ...gvisor, HostConfig: null }, { ...runc, HostConfig: null });
});

t.test("a pre-started sandbox: the task container's spec, its slot's directories mounted rslave where the task's would be", async (t) => {
  const slot = { id: 'slt_1', dir: '/data/pool/slots/slt_1', egressDir: '/data/pool/slots/slt_1.egress', stdinDir: '/data/pool/slots/slt_1.stdin', backstopSeconds: 65 };
  const shape = { image: req.image, cpus: req.cpus, memoryMb: req.memoryMb, pids: req.pids, isolation: 'runc' as const };
  const s = buildPooledSpec(shape, slot, 'the waiter', settings);
  const cold = buildContainerSpec({ ...req, taskId: '', command: 'the waiter', env: {}, workspaceDir: slot.dir, stdin: true }, settings);
  t.same(s.HostConfig.Binds, [
    '/data/pool/slots/slt_1:/workspace:rw,nosuid,nodev,rslave',
    '/data/sandbox/hosts:/etc/hosts:ro,nosuid,nodev',
    '/data/pool/slots/slt_1.egress:/run/sandboxshift/egress:ro,nosuid,nodev,noexec,rslave',
    '/data/pool/slots/slt_1.stdin:/run/sandboxshift/stdin:ro,nosuid,nodev,noexec,rslave',
  ]);
  t.equal(s.Labels['io.sandboxshift.slot'], 'slt_1');
  t.same(s.Cmd, ['the waiter']);
  t.equal(s.OpenStdin, true, 'stdin open for the job line');
  const { Binds: _b, ...hardening } = s.HostConfig;
  const { Binds: _c, ...coldHardening } = cold.HostConfig;
  t.same(hardening, coldHardening, 'every other host setting is the cold sandbox’s');
  t.equal(s.User, cold.User);
});
