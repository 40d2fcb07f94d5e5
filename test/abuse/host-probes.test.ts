// Attack: reach the host from inside a task through the usual doors — the engine's socket,
// the kernel log, magic sysrq, writable /sys or /proc entries, raw sockets, device nodes, the
// host's root through /proc/1/root, raising resource limits. Defence: no capabilities, a
// read-only root, masked /proc and /sys paths, no host mounts but the workspace, and hard
// rlimits set by the server.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runTask } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());
// A world-readable file on the host, outside anything mounted into tasks: a task must not see
// it at its host path.
const markerDir = mkdtempSync(join(tmpdir(), 'sbx-host-marker-'));
t.teardown(() => rmSync(markerDir, { recursive: true, force: true }));
chmodSync(markerDir, 0o755);
const hostMarker = join(markerDir, 'marker');
writeFileSync(hostMarker, 'host\n', { mode: 0o644 });

const probe = async (t: Test, what: string, command: string, expect: RegExp) => {
  const r = await runTask(srv.url, command);
  t.match(r.stdout, expect, what);
};


t.test('door by door', async (t) => {
  await probe(t, 'no engine socket anywhere', 'ls /run/podman/podman.sock /var/run/docker.sock /run/docker.sock 2>/dev/null | wc -l', /^0\n$/);
  await probe(t, 'the kernel log is closed', 'dmesg >/dev/null 2>&1; echo rc=$?; cat /dev/kmsg >/dev/null 2>&1; echo rc=$?', /^rc=[1-9]\d*\nrc=[1-9]\d*\n$/);
  await probe(t, 'magic sysrq is not writable', 'echo h > /proc/sysrq-trigger 2>/dev/null; echo rc=$?', /^rc=[1-9]/);
  await probe(t, '/sys is read-only', 'echo 1 > /sys/kernel/mm/ksm/run 2>/dev/null; echo rc=$?', /^rc=[1-9]/);
  await probe(t, '/proc/sys is read-only', 'echo 1 > /proc/sys/kernel/panic 2>/dev/null; echo rc=$?', /^rc=[1-9]/);
  await probe(
    t,
    "/proc/1/root is the container's own root, and the host's files are not there",
    `test -e /proc/1/root${hostMarker} && echo host-visible; test -e ${hostMarker} && echo host-visible;` +
      ' [ "$(stat -L -c %d:%i /proc/1/root/)" = "$(stat -c %d:%i /)" ] && echo own-root; echo done',
    /^own-root\ndone\n$/,
  );
  await probe(t, 'no capabilities at all, no_new_privs set', 'grep -E "^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):" /proc/self/status', /^CapPrm:\s+0{16}\nCapEff:\s+0{16}\nCapBnd:\s+0{16}\nCapAmb:\s+0{16}\nNoNewPrivs:\s+1\n$/);
  await probe(t, 'no raw sockets (no CAP_NET_RAW)', 'python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)" 2>&1 | tail -1', /PermissionError|Operation not permitted/);
  await probe(t, 'no device nodes can be made', 'mknod /tmp/sda b 8 0 2>&1; echo rc=$?', /Operation not permitted\nrc=1\n$/);
  await probe(t, 'hard limits cannot be raised', 'ulimit -H -n 100000 2>&1; echo rc=$?; ulimit -H -u 100000 2>&1; echo rc=$?', /rc=[1-9][\s\S]*rc=[1-9]/);
  await probe(t, 'no root through setuid binaries (no_new_privs)', 'su -c id root </dev/null 2>&1; echo rc=$?', /rc=[1-9]/);
  await probe(t, 'chroot is refused', 'chroot /tmp /bin/true 2>&1; echo rc=$?', /Operation not permitted\nrc=[1-9]\d*\n$/);
});
