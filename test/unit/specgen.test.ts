import t from 'tap';
import { buildContainerSpec } from '../../src/runtime/spec.js';
import { toSpecGenerator } from '../../src/runtime/specgen.js';

const req = {
  taskId: 'tsk_abc',
  image: 'sandboxshift/runtime-python:3.11',
  command: 'echo hi',
  env: { X: 'a=b' },
  workspaceDir: '/data/workspaces/ws_1',
  workspaceReadonly: true,
  cpus: 1.5,
  memoryMb: 512,
  pids: 128,
  stdin: true,
  backstopSeconds: 65,
};
const settings = { serverId: 'srv_1', seccompProfilePath: '/opt/sbx/deploy/seccomp.json', hostsFilePath: '/data/sandbox/hosts', tmpfsMb: 64, nofile: 1024, nproc: 32768, logMaxBytes: 1 << 20 };

t.test('the libpod create body carries every setting of the compatible one, plus the backstop timeout', async (t) => {
  const g = toSpecGenerator(buildContainerSpec(req, settings), 65) as Record<string, any>;
  t.match(g, {
    image: req.image,
    entrypoint: ['/bin/sh', '-c'],
    command: ['echo hi'],
    user: '65532:65532',
    work_dir: '/workspace',
    hostname: 'sandbox',
    terminal: false,
    stdin: true,
    netns: { nsmode: 'none' },
    ipcns: { nsmode: 'private' },
    read_only_filesystem: true,
    cap_drop: ['ALL'],
    cap_add: [],
    privileged: false,
    no_new_privileges: true,
    seccomp_profile_path: '/opt/sbx/deploy/seccomp.json',
    init: true,
    resource_limits: { memory: { limit: 512 << 20, swap: 512 << 20 }, cpu: { quota: 150_000, period: 100_000 }, pids: { limit: 128 } },
    r_limits: [{ type: 'nofile', soft: 1024, hard: 1024 }, { type: 'nproc', soft: 32768, hard: 32768 }],
    log_configuration: { driver: 'k8s-file', size: 1 << 20 },
    restart_policy: 'no',
    timeout: 65,
  });
  t.same(g.env, { X: 'a=b', HOME: '/workspace/.home' }, 'values keep their own "="');
  t.equal(g.labels['io.sandboxshift.task'], 'tsk_abc');
  t.same(g.mounts, [
    { type: 'bind', source: '/data/workspaces/ws_1', destination: '/workspace', options: ['rbind', 'ro', 'nosuid', 'nodev'] },
    { type: 'bind', source: '/data/sandbox/hosts', destination: '/etc/hosts', options: ['rbind', 'ro', 'nosuid', 'nodev'] },
    { type: 'tmpfs', source: 'tmpfs', destination: '/tmp', options: ['rw', 'nosuid', 'nodev', 'size=64m', 'U'] },
    { type: 'tmpfs', source: 'tmpfs', destination: '/run', options: ['rw', 'nosuid', 'nodev', 'size=64m', 'U'] },
    { type: 'tmpfs', source: 'tmpfs', destination: '/var/tmp', options: ['rw', 'nosuid', 'nodev', 'size=64m', 'U'] },
  ]);
});

t.test('a field the translation does not know is an error, never dropped', async (t) => {
  const spec = buildContainerSpec(req, settings);
  t.throws(() => toSpecGenerator({ ...spec, Domainname: 'x' } as never, 1), /unknown field Domainname/);
  t.throws(() => toSpecGenerator({ ...spec, HostConfig: { ...spec.HostConfig, ShmSize: 1 } } as never, 1), /unknown field HostConfig.ShmSize/);
  t.throws(() => toSpecGenerator({ ...spec, HostConfig: { ...spec.HostConfig, IpcMode: 'host' } } as never, 1), /hardened/);
  t.throws(() => toSpecGenerator({ ...spec, HostConfig: { ...spec.HostConfig, SecurityOpt: ['no-new-privileges'] } }, 1), /seccomp/);
  t.throws(() => toSpecGenerator({ ...spec, HostConfig: { ...spec.HostConfig, NetworkMode: 'bridge' } } as never, 1), /hardened/);
});

t.test("a task's own host UID becomes Podman's private user namespace with the slot's mappings", async (t) => {
  const g = toSpecGenerator(buildContainerSpec({ ...req, hostUid: 0x70000000 + 65532 }, { ...settings, sigpending: 100 }), 65) as Record<string, any>;
  const slot = [{ container_id: 0, host_id: 0x70000000, size: 65536 }];
  t.same(g.userns, { nsmode: 'private' });
  t.same(g.idmappings, { HostUIDMapping: false, HostGIDMapping: false, UIDMap: slot, GIDMap: slot });
  t.same(g.r_limits.at(-1), { type: 'sigpending', soft: 100, hard: 100 });
  const plain = toSpecGenerator(buildContainerSpec(req, settings), 65);
  t.notOk('userns' in plain || 'idmappings' in plain, "without one: the host's user namespace");
});
