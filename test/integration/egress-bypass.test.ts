/**
 * Ways around the egress proxy that must be closed, each with a POSITIVE CONTROL: the same probe
 * succeeds from a container on a Podman network this test creates (internal, no DNS, its own
 * IPv4 and IPv6 subnets, no default route, removed at the end), i.e. where the wall under test
 * (no interface but loopback) is absent. Host services are this test's own, bound on `::`
 * (dual-stack), reached only through that network's gateway. Tasks run with an allowlist, so they
 * do have the proxy path; the probes show it is the only one.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { echoUpstream, PROBE_PY } from '../helpers/egress.js';
import { sleep } from '../helpers/host.js';
import { BOTH_ISOLATIONS, ISOLATIONS, type TestIsolation } from '../helpers/isolation.js';
import { startTestServer } from '../helpers/server.js';

const run = promisify(execFile);
const env = { ...process.env, CONTAINERS_CONF: join(process.cwd(), 'deploy/containers.conf') };
// Never execFileSync here: the host services below live in this process and must keep answering.
const podman = async (...args: string[]) => (await run('podman', ['--runtime', 'runc', ...args], { env, timeout: 120_000 })).stdout.trim();

// ---- host services of this test, on every address (as a careless host service would be) --------
const hostTcp = net.createServer((c) => c.end('host-service'));
await new Promise<void>((r) => hostTcp.listen({ port: 0, host: '::' }, r));
const tcpPort = (hostTcp.address() as AddressInfo).port;
const udp = dgram.createSocket('udp6');
udp.on('message', (_m, from) => udp.send('udp-reply', from.port, from.address));
await new Promise<void>((r) => udp.bind(0, '::', r));
const udpPort = udp.address().port;
// A stand-in resolver: answers any query with a header-only response.
const dns = dgram.createSocket('udp6');
dns.on('message', (m, from) => dns.send(Buffer.concat([m.subarray(0, 2), Buffer.from([0x81, 0x83, 0, 0, 0, 0, 0, 0, 0, 0])]), from.port, from.address));
await new Promise<void>((r) => dns.bind(0, '::', r));
const dnsPort = dns.address().port;
const echo = await echoUpstream();

// ---- the test's own network: the wall deliberately absent --------------------------------------
const netName = `sbxtest-egress-${process.pid}`;
let x = 0;
// A random /24 and /64 of their own; another test's network may hold one, so a few tries.
for (let attempt = 1; ; attempt++) {
  x = Math.floor(Math.random() * 200) + 20;
  try {
    const h = x.toString(16);
    await podman('network', 'create', '--internal', '--disable-dns', '--subnet', `10.231.${x}.0/24`, '--gateway', `10.231.${x}.1`, '--ipv6', '--subnet', `fd5b:7a31:${h}::/64`, '--gateway', `fd5b:7a31:${h}::1`, netName);
    break;
  } catch (err) {
    if (attempt === 5) throw err;
  }
}
const gw4 = `10.231.${x}.1`;
const gw6 = `fd5b:7a31:${x.toString(16)}::1`;
const probeDir = mkdtempSync(join(tmpdir(), 'sbx-egress-probe-'));
writeFileSync(join(probeDir, 'probe.py'), PROBE_PY);
chmodSync(probeDir, 0o755); // mkdtemp gives 0700; the control containers run as 65532
const controlContainers: string[] = [];

const srv = await startTestServer({
  ...BOTH_ISOLATIONS,
  egress: { testHosts: { 'ok.test': ['127.0.0.1'], 'echo.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [80, 443, echo.port] },
});
const apiPort = Number(new URL(srv.url).port);

t.teardown(async () => {
  await srv.close();
  for (const c of controlContainers) await podman('rm', '-f', c).catch(() => undefined);
  await podman('network', 'rm', '-f', netName).catch(() => undefined);
  rmSync(probeDir, { recursive: true, force: true });
  hostTcp.close();
  udp.close();
  dns.close();
  await echo.close();
});

/** The probe from a container on the test's network (the positive control). */
const control = (...probe: string[]) =>
  podman('run', '--rm', '--network', netName, '--user', '65532:65532', '-v', `${probeDir}:/probe:ro`, 'sandboxshift/runtime-python:3.11', 'python3', '/probe/probe.py', ...probe);

/** The same probes from a task with an allowlist, one output line each. */
async function fromTask(probes: string[][], isolation: TestIsolation): Promise<string[]> {
  const r = await runTask(srv.url, probes.map((p) => `python3 probe.py ${p.join(' ')}`).join('; '), {
    isolation,
    workspace: { files: { 'probe.py': PROBE_PY } },
    network: { allow: ['ok.test', 'echo.test'] },
  });
  return r.stdout.trim().split('\n');
}

t.test('controls: from a container on an ordinary network, every path below is open', async (t) => {
  t.equal(await control('tcp', gw4, String(tcpPort)), 'connected host-service', 'host service via the gateway (IPv4)');
  t.equal(await control('tcp6', gw6, String(tcpPort)), 'connected host-service', 'host service via the gateway (IPv6)');
  t.equal(await control('udp', gw4, String(udpPort)), 'reply 9 bytes', 'UDP to the host');
  t.equal(await control('udp6', gw6, String(udpPort)), 'reply 9 bytes', 'UDP over IPv6');
  t.equal(await control('dnsq', gw4, String(dnsPort)), 'reply 12 bytes', 'a DNS query to a resolver');
});

// The task side runs under each isolation (gVisor: runsc's own network stack with loopback only,
// the proxy reached through the same bind-mounted Unix socket).
function fromTasks(t: Tap.Test, isolation: TestIsolation) {
  // With no route, runsc's network stack answers EHOSTUNREACH where the host kernel says ENETUNREACH.
  const unreachable = isolation === 'gvisor' ? 'error EHOSTUNREACH' : 'error ENETUNREACH';
  t.test('from a task: direct IP, the host\'s ports, UDP, DNS and IPv6 all fail (no interface to send on)', async (t) => {
    const lines = await fromTask([
      ['tcp', gw4, String(tcpPort)],
      ['tcp6', gw6, String(tcpPort)],
      ['udp', gw4, String(udpPort)],
      ['udp6', gw6, String(udpPort)],
      ['dnsq', gw4, String(dnsPort)],
      ['tcp', '8.8.8.8', '53'].map((v, i) => (i === 1 ? '192.0.2.1' : v)), // a documentation address: never routed
      ['connect', `echo.test:${echo.port}`],
    ], isolation);
    t.same(lines.slice(0, 6), Array(6).fill(unreachable));
    t.equal(lines[6], 'HTTP/1.1 200 Connection Established | echo-me', 'positive control: the proxy path works from the same task');
  });

  t.test("the API port and the host's loopback: only the proxy path exists, and it refuses them", async (t) => {
    const direct = await api(srv.url, 'GET', '/healthz');
    t.equal(direct.status, 200, 'positive control: the API answers on the host loopback');
    const lines = await fromTask([
      ['tcp', '127.0.0.1', String(apiPort)],
      ['connect', `127.0.0.1:${apiPort}`],
      ['connect', `ok.test:${apiPort}`],
      ['connect', `localhost:${apiPort}`],
      ['connect', `echo.test:${echo.port}`],
    ], isolation);
    t.equal(lines[0], 'error ECONNREFUSED', "the task's 127.0.0.1 is its own loopback, not the host's");
    t.equal(lines[1], 'HTTP/1.1 403 Forbidden | X-SandboxShift-Egress: denied; reason=ip_literal');
    t.equal(lines[2], 'HTTP/1.1 403 Forbidden | X-SandboxShift-Egress: denied; reason=port_not_allowed');
    t.equal(lines[3], 'HTTP/1.1 403 Forbidden | X-SandboxShift-Egress: denied; reason=not_allowlisted');
    t.equal(lines[4], 'HTTP/1.1 200 Connection Established | echo-me', 'positive control: a listed port by an allowed name');
    // Python rather than ls: this runsc refuses the statx flags coreutils' ls passes (EINVAL).
    const r = await runTask(srv.url, `python3 -c 'import os; print(os.path.exists("/run/podman"), os.path.exists("/var/run/podman"), sorted(os.listdir("/run")))'`, { isolation, network: { allow: ['ok.test'] } });
    t.equal(r.stdout, "False False ['podman-init', 'sandboxshift']\n", "no Podman socket in the container; /run holds Podman's init and the egress socket directory");
  });

  t.test("another running task's container cannot be reached; on a shared network it could (control)", async (t) => {
    // Control: two containers on the test's network reach each other.
    const name = `sbxtest-egress-listener-${process.pid}`;
    controlContainers.push(name);
    await podman('run', '-d', '--rm', '--name', name, '--network', netName, '--user', '65532:65532', '-v', `${probeDir}:/probe:ro`, 'sandboxshift/runtime-python:3.11', 'python3', '/probe/probe.py', 'listen', '8080', 'sbx-listener');
    const ip = await podman('inspect', '-f', `{{(index .NetworkSettings.Networks "${netName}").IPAddress}}`, name);
    let reply = '';
    for (let i = 0; i < 30 && !reply.startsWith('connected'); i++) {
      reply = await control('tcp', ip, '8080');
      if (!reply.startsWith('connected')) await sleep(300);
    }
    t.equal(reply, 'connected from-listener', 'control: container to container on one network');
    // Once more after a second if Podman refuses while the container's conmon is still exiting (EBUSY).
    await podman('rm', '-f', name).catch(() => sleep(1000).then(() => podman('rm', '-f', '--ignore', name)));

    // Task A listens on 0.0.0.0:8080 and on an abstract Unix socket, and reaches itself.
    const a = await submit(srv.url, {
      isolation,
      command: 'python3 probe.py listen 8080 sbx-task-a & sleep 1; python3 probe.py tcp 127.0.0.1 8080; python3 probe.py unix-abstract sbx-task-a; sleep 120',
      workspace: { files: { 'probe.py': PROBE_PY } },
      network: { allow: ['ok.test'] },
    });
    let aOut = '';
    for (let i = 0; i < 100 && !aOut.includes('\nconnected\n'); i++) {
      await sleep(200);
      aOut = (await api(srv.url, 'GET', `/v1/tasks/${a.id}/logs?stream=stdout`)).text;
    }
    t.equal(aOut, 'listening\nconnected from-listener\nconnected\n', 'positive control: task A serves, and reaches itself');
    const b = await fromTask([
      ['tcp', '127.0.0.1', '8080'],
      ['unix-abstract', 'sbx-task-a'],
      ['tcp', ip, '8080'],
    ], isolation);
    t.same(b, ['error ECONNREFUSED', 'error ECONNREFUSED', unreachable], "task B sees neither A's ports nor its abstract socket, nor any container address");
    await api(srv.url, 'POST', `/v1/tasks/${a.id}/cancel`);
    await waitDone(srv.url, a.id);
  });
}

for (const isolation of ISOLATIONS) t.test(isolation, async (t) => fromTasks(t, isolation));
