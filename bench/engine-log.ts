/**
 * What reading a task's output from the engine's `k8s-file` log costs, against the raw engine.
 *
 *   npm run build && node dist/bench/engine-log.js [--mib 256] [--runs 3] [--socket PATH]
 *
 * Each run starts one container (the runtime-python image, network none) that writes exactly N MiB
 * of 64-byte lines to stdout and times creation → every byte received → exit, three ways:
 *   attach/none    Podman's attach stream, log driver none (the engine keeps no copy);
 *   attach/k8s     the attach stream while the engine also writes its k8s-file log;
 *   follow/k8s     no output attach at all: the k8s-file log read from the host as it grows
 *                  (EngineLogFollower, what the server does).
 * It prints MiB/s per way (median of the runs) and the ratio to attach/none. Traffic goes only to
 * the Podman unix socket. It is a benchmark: it asserts nothing and exits 0 once it has figures.
 */
import Docker from 'dockerode';
import { EngineLogFollower } from '../src/runtime/enginelog.js';
import { StreamDemuxer } from '../src/runtime/demux.js';
import { rawAttach } from '../src/runtime/raw-attach.js';
import { MiB, median, now, parseFlags, table, usage, UsageError, type FlagSpec } from './lib.js';

const FLAGS: FlagSpec[] = [
  { name: 'mib', kind: 'int', help: 'MiB each container writes (default 256)', min: 1, max: 4096 },
  { name: 'runs', kind: 'int', help: 'runs per way (default 3)', min: 1, max: 20 },
  { name: 'socket', kind: 'string', help: 'Podman API socket (default $SANDBOXSHIFT_TEST_SOCKET or $CONTAINER_HOST)' },
  { name: 'image', kind: 'string', help: 'image (default sandboxshift/runtime-python:3.11)' },
];

type Way = 'attach/none' | 'attach/k8s' | 'follow/k8s';


async function once(docker: Docker, image: string, way: Way, mib: number): Promise<{ seconds: number; bytes: number }> {
  const bytes = mib * MiB;
  const logSize = way === 'attach/none' ? undefined : `${Math.max(64, mib * 2)}m`;
  const t0 = now();
  const container = await docker.createContainer({
    Image: image,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [`yes 012345678901234567890123456789012345678901234567890123456789abc | head -c ${bytes}`],
    Labels: { 'io.sandboxshift.test': '1', 'io.sandboxshift.bench': 'engine-log' },
    NetworkDisabled: true,
    HostConfig: {
      NetworkMode: 'none',
      Ulimits: [
        { Name: 'nofile', Soft: 1024, Hard: 1024 },
        { Name: 'nproc', Soft: 1024, Hard: 1024 },
      ],
      LogConfig: logSize ? { Type: 'k8s-file', Config: { 'max-size': logSize } } : { Type: 'none', Config: {} },
    },
  });
  let received = 0;
  try {
    if (way === 'follow/k8s') {
      const logPath = ((await container.inspect()) as unknown as { LogPath: string }).LogPath;
      const follower = new EngineLogFollower(logPath, null, { onOutput: (_s, data) => (received += data.length) });
      await container.start();
      await container.wait();
      await follower.finish();
    } else {
      const sock = await rawAttach(docker, container.id, { stdin: false, stdout: true, stderr: true });
      const closed = new Promise<void>((r) => {
        sock.once('close', () => r());
        sock.once('error', () => r());
      });
      const demux = new StreamDemuxer((_s, data) => (received += data.length));
      sock.on('data', (c: Buffer) => demux.push(c));
      await container.start();
      sock.end();
      await closed;
    }
    return { seconds: (now() - t0) / 1000, bytes: received };
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  let flags;
  try {
    flags = parseFlags(process.argv.slice(2), FLAGS);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message ? `${err.message}\n` : ''}${usage(FLAGS)}\n`);
      process.exit(err.message ? 2 : 0);
    }
    throw err;
  }
  const mib = (flags.get('mib') as number | undefined) ?? 256;
  const runs = (flags.get('runs') as number | undefined) ?? 3;
  const image = (flags.get('image') as string | undefined) ?? 'sandboxshift/runtime-python:3.11';
  const socketPath = (flags.get('socket') as string | undefined) ?? process.env.SANDBOXSHIFT_TEST_SOCKET ?? process.env.CONTAINER_HOST?.replace(/^unix:\/\//, '');
  if (!socketPath) {
    process.stderr.write('no Podman socket: pass --socket or set SANDBOXSHIFT_TEST_SOCKET\n');
    process.exit(2);
  }
  const docker = new Docker({ socketPath, timeout: 0 });
  const ways: Way[] = ['attach/none', 'attach/k8s', 'follow/k8s'];
  const rates = new Map<Way, number[]>(ways.map((w) => [w, []]));
  for (let r = 0; r < runs; r++) {
    for (const way of ways) {
      const { seconds, bytes } = await once(docker, image, way, mib);
      if (bytes !== mib * MiB) process.stderr.write(`${way}: received ${bytes} of ${mib * MiB} bytes\n`);
      rates.get(way)!.push(bytes / MiB / seconds);
    }
  }
  const base = median(rates.get('attach/none')!);
  process.stdout.write(`${mib} MiB per container, ${runs} run(s) per way, median\n\n`);
  process.stdout.write(
    `${table(
      ['way', 'MiB/s', 'vs attach/none', 'runs (MiB/s)'],
      ways.map((w) => {
        const m = median(rates.get(w)!);
        return [w, m.toFixed(0), `${(m / base).toFixed(2)}x`, rates.get(w)!.map((x) => x.toFixed(0)).join(' ')];
      }),
    )}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`engine-log bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
