/**
 * What an adopted task still needs after a restart: its workspace mount (its writes kept) and its
 * egress proxy (a socket re-created in the directory its container has mounted). Start-up removes
 * only what no task owns: orphan containers and mounts with our labels and names; containers
 * without our labels are untouched. A Podman API service that dies under the server comes back
 * and its tasks complete with their full output.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import t from 'tap';
import { api, submit, waitDone } from '../helpers/client.js';
import { httpUpstream } from '../helpers/egress.js';
import { sleep, taskContainers } from '../helpers/host.js';
import { keptDataDir, startServerProcess, startTestServer, TEST_LABEL } from '../helpers/server.js';
import { mountsUnder } from '../../src/workspace/storage.js';

const socketPath = process.env.SANDBOXSHIFT_TEST_SOCKET!;
const docker = new Docker({ socketPath });

const tempData = (t: Tap.Test) => keptDataDir(t, 'sbx-kept-');

t.test('after kill -9 an allowlisted task still reaches its host; its workspace stays mounted and keeps its writes', async (t) => {
  const web = await httpUpstream();
  t.teardown(() => web.close());
  const dataDir = tempData(t);
  const config = {
    dataDir,
    egress: { testHosts: { 'ok.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [80, 443, web.port] },
  };
  const first = await startServerProcess(config);
  t.teardown(() => first.kill('SIGKILL'));
  // Every 0.3 s until the test drops /workspace/stop (at most 300 rounds): fetch through the
  // proxy, print and append the result to a workspace file. The task outlives the restart
  // however long the second server takes to come up.
  const py = [
    'import os, time, urllib.request',
    'for i in range(300):',
    '    if os.path.exists("/workspace/stop"): break',
    '    try:',
    `        r = "ok " + urllib.request.urlopen("http://ok.test:${web.port}/n%d" % i, timeout=2).read().decode().strip()`,
    '    except Exception as e:',
    '        r = "fail %d" % i',
    '    print(r, flush=True)',
    '    open("/workspace/results.txt", "a").write(r + "\\n")',
    '    time.sleep(0.3)',
  ].join('\n');
  const { id } = await submit(first.url, { command: `python3 -c '${py}'`, network: { allow: ['ok.test'] }, workspace: { files: { 'keep.txt': 'kept' } } });
  const logLines = async (url: string) => (await api(url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`)).text.trim().split('\n').filter(Boolean);
  for (let i = 0; i < 100 && !(await logLines(first.url)).includes('ok hello /n1'); i++) await sleep(100);
  const workspaceId = (await api(first.url, 'GET', `/v1/tasks/${id}`)).json.workspaceId as string;
  first.kill('SIGKILL');
  await first.exited;
  const second = await startServerProcess(config);
  t.teardown(() => second.kill('SIGKILL'));
  // A fetch that succeeds after the second server is up (a loaded machine may time one out),
  // then the task is told to stop.
  const upAt = (await logLines(second.url)).length;
  const okAfterRestart = async () => (await logLines(second.url)).slice(upAt).some((l) => l.startsWith('ok '));
  for (let i = 0; i < 300 && !(await okAfterRestart()); i++) await sleep(100);
  writeFileSync(join(dataDir, 'workspaces', workspaceId, 'stop'), '');
  const task = await waitDone(second.url, id);
  t.match(task, { status: 'succeeded', exitCode: 0 });
  const lines = await logLines(second.url);
  t.same(lines.map((l, i) => l === `ok hello /n${i}` || l === `fail ${i}`), lines.map(() => true), 'every round is in the log once, in order');
  t.ok(lines.slice(upAt).some((l) => l.startsWith('ok hello ')), 'after the restart the task reaches its allowed host again');
  const written = await api(second.url, 'GET', `/v1/workspaces/${workspaceId}/files/results.txt`);
  t.equal(written.status, 200);
  t.same(written.text.trim().split('\n'), lines, "the workspace stayed mounted: every write of the task is there");
  t.equal((await api(second.url, 'GET', `/v1/workspaces/${workspaceId}/files/keep.txt`)).text, 'kept');
});

t.test('start-up removes orphan containers and mounts with our labels; other containers are untouched', async (t) => {
  const dataDir = tempData(t);
  const first = await startTestServer({ dataDir });
  const serverId = first.services.serverId;
  await first.close();
  const base = {
    Image: 'sandboxshift/runtime-python:3.11',
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: ['sleep 60'],
    HostConfig: { NetworkMode: 'none', Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 1024 }, { Name: 'nproc', Soft: 1024, Hard: 1024 }] },
  };
  const orphan = await docker.createContainer({ ...base, Labels: { ...TEST_LABEL, 'io.sandboxshift.managed': '1', 'io.sandboxshift.server': serverId, 'io.sandboxshift.task': 'tsk_orphan0000000000' } });
  t.teardown(() => orphan.remove({ force: true }).catch(() => undefined));
  // Not ours: no server label (the suite's own label only, so that its cleanup finds it).
  const foreign = await docker.createContainer({ ...base, Labels: { ...TEST_LABEL } });
  t.teardown(() => foreign.remove({ force: true }).catch(() => undefined));
  await orphan.start();
  await foreign.start();
  // A mount under the workspaces directory that no task owns.
  const stray = join(dataDir, 'workspaces', 'ws_stray000000000000');
  mkdirSync(stray, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', stray]);
  t.ok(mountsUnder(join(dataDir, 'workspaces')).includes(stray));

  const second = await startTestServer({ dataDir });
  t.teardown(() => second.close());
  t.notOk((await taskContainers(socketPath, 'tsk_orphan0000000000')).includes(orphan.id), 'the orphan container was removed');
  t.equal((await foreign.inspect()).State.Running, true, 'the container without our labels still runs');
  t.same(mountsUnder(join(dataDir, 'workspaces')), [], 'the orphan mount was unmounted');
});

t.test('the owned Podman API service killed mid-task comes back; the task completes with its full output', async (t) => {
  const dataDir = tempData(t);
  const srv = await startTestServer({ dataDir, engine: { socket: null } });
  t.teardown(() => srv.close());
  const expected = Array.from({ length: 30 }, (_, i) => `n${i + 1}\n`).join('');
  const { id } = await submit(srv.url, { command: 'for i in $(seq 1 30); do echo n$i; sleep 0.1; done; exit 5' });
  for (let i = 0; i < 100 && !(await api(srv.url, 'GET', `/v1/tasks/${id}/logs`)).text.includes('n3'); i++) await sleep(100);
  const pidFile = `${srv.services.socketPath}.pid`;
  const pid = Number(readFileSync(pidFile, 'utf8'));
  process.kill(pid, 'SIGKILL');
  let back = false;
  for (let i = 0; i < 150 && !back; i++) {
    await sleep(100);
    try {
      back = Number(readFileSync(pidFile, 'utf8')) !== pid && (await api(srv.url, 'GET', '/readyz')).status === 200;
    } catch {
      back = false;
    }
  }
  t.ok(back, 'the server started its Podman service again');
  t.match(await waitDone(srv.url, id), { status: 'failed', exitCode: 5 });
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${id}/logs`)).text, expected, 'with its full output');
  const again = await submit(srv.url, { command: 'echo after' });
  t.match(await waitDone(srv.url, again.id), { status: 'succeeded' }, 'and new tasks run');
});
