/**
 * Egress benchmark: what an allowlist costs a task (start-up, and bytes through relay + proxy).
 *
 *   npm run build && npm run bench -- egress [--runs 10] [--mib 100] [--socket PATH]
 *
 * Starts the real server as a child process (temporary data directory, 127.0.0.1), and an HTTP
 * server of its own on 127.0.0.1 that the tasks reach as `bench.test` (egress.testHosts). Prints:
 * submit → final status of `true` without and with an allowlist (interleaved, medians) next to
 * `podman run --rm --network none` of the same image; and the download rate of --mib MiB from
 * inside a task through relay and proxy next to the same download on the host without a proxy.
 * A benchmark, not a test: figures only. Traffic stays on 127.0.0.1 and the Podman socket.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmtMs, fmtRatio, median, MiB, now, parseFlags, repoRoot, sleep, startServer, table, timedRun, usage, UsageError, type FlagSpec } from './lib.js';

const FLAGS: readonly FlagSpec[] = [
  { name: 'runs', kind: 'int', min: 1, max: 100, help: 'tasks per path for the start-up part (default 10)' },
  { name: 'mib', kind: 'int', min: 1, max: 4096, help: 'MiB downloaded through the proxy (default 100)' },
  { name: 'socket', kind: 'string', help: 'Podman API socket (default: $CONTAINER_HOST, else /run/sbx-dev/podman.sock)' },
];
const IMAGE = 'sandboxshift/runtime-python:3.11';

async function main(): Promise<void> {
  let flags: Map<string, string | number | boolean>;
  try {
    flags = parseFlags(process.argv.slice(2), FLAGS);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n${usage(FLAGS)}\n`);
      process.exit(2);
    }
    throw err;
  }
  const runs = (flags.get('runs') as number | undefined) ?? 10;
  const mib = (flags.get('mib') as number | undefined) ?? 100;
  const socket = ((flags.get('socket') as string | undefined) ?? process.env.CONTAINER_HOST ?? '/run/sbx-dev/podman.sock').replace(/^unix:\/\//, '');
  if (!existsSync(socket)) throw new Error(`no Podman socket at ${socket} (use --socket)`);

  const chunk = Buffer.alloc(MiB, 'x');
  const upstream = http.createServer((req, res) => {
    const n = Number(/n=(\d+)/.exec(req.url ?? '')?.[1] ?? 1);
    res.setHeader('content-length', n * MiB);
    let sent = 0;
    const more = () => {
      while (sent < n) {
        sent++;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const port = (upstream.address() as AddressInfo).port;

  const tmp = mkdtempSync(join(tmpdir(), 'sbx-bench-egress-'));
  const configPath = join(tmp, 'sandboxshift.yaml');
  writeFileSync(
    configPath,
    JSON.stringify({
      dataDir: join(tmp, 'data'),
      listen: { host: '127.0.0.1', port: 0 },
      engine: { socket },
      egress: { testHosts: { 'bench.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [80, 443, port] },
    }),
  );
  const server = await startServer({ root: repoRoot(), configPath, env: process.env, logPath: join(tmp, 'server.log'), timeoutMs: 60_000 });
  try {
    const run = async (body: Record<string, unknown>) => {
      const t0 = now();
      const res = await fetch(`${server.url}/v1/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const { id } = (await res.json()) as { id: string };
      for (;;) {
        const task = (await (await fetch(`${server.url}/v1/tasks/${id}`)).json()) as { status: string };
        if (!['queued', 'running'].includes(task.status)) {
          const logs = await (await fetch(`${server.url}/v1/tasks/${id}/logs?stream=stdout`)).text();
          return { ms: now() - t0, status: task.status, stdout: logs };
        }
        await sleep(10);
      }
    };
    const none: number[] = [];
    const allow: number[] = [];
    const raw: number[] = [];
    await run({ command: 'true' }); // warm-up
    for (let i = 0; i < runs; i++) {
      none.push((await run({ command: 'true' })).ms);
      allow.push((await run({ command: 'true', network: { allow: ['bench.test'] } })).ms);
      const r = await timedRun('podman', ['--url', `unix://${socket}`, 'run', '--rm', '--network', 'none', IMAGE, 'true'], process.env, false, 60_000);
      raw.push(r.ms);
    }

    const py = `import time,urllib.request; t=time.monotonic(); n=len(urllib.request.urlopen("http://bench.test:${port}/?n=${mib}").read()); print(n, time.monotonic()-t)`;
    const inTask = await run({ command: `python3 -c '${py}'`, network: { allow: ['bench.test'] }, resources: { memoryMb: Math.max(512, mib * 3) } });
    const [bytesText, secondsText] = inTask.stdout.trim().split(' ');
    const proxied = Number(bytesText) / MiB / Number(secondsText);
    const t0 = now();
    const direct = (await (await fetch(`http://127.0.0.1:${port}/?n=${mib}`)).arrayBuffer()).byteLength / MiB / ((now() - t0) / 1000);

    process.stdout.write(
      `egress benchmark: ${runs} runs per path, ${mib} MiB download, image ${IMAGE}\n\n` +
        table(
          ['path', 'median', 'ratio'],
          [
            ['task `true`, no allowlist (submit → final status)', fmtMs(median(none)), fmtRatio(median(none), median(raw))],
            ['task `true`, allowlist (proxy socket + relay)', fmtMs(median(allow)), fmtRatio(median(allow), median(raw))],
            ['raw `podman run --rm --network none … true`', fmtMs(median(raw)), '1.00x'],
          ],
        ) +
        '\n\n' +
        table(
          ['download', 'MiB/s', 'ratio'],
          [
            [`in a task via relay + proxy (${inTask.status})`, proxied.toFixed(0), fmtRatio(proxied, direct)],
            ['on the host, direct (Node fetch)', direct.toFixed(0), '1.00x'],
          ],
        ) +
        '\n',
    );
  } finally {
    await server.stop();
    upstream.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/egress: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
