import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import type { Config } from './config/schema.js';
import { imageTable } from './detection/detect.js';
import { IMAGE_RECORD_FILE, readImageRecord, withImageRecord } from './detection/record.js';
import { fromInstall, installDir } from './paths.js';
import { requiredImages } from './readiness.js';
import { checkGvisor, type GvisorCheck } from './runtime/gvisor-check.js';
import { KernelLogOomProbe } from './runtime/oom.js';
import { PodmanEngine } from './runtime/podman.js';
import { chooseSocket, OwnedPodmanService, waitForSocket } from './runtime/service.js';

export class UsageError extends Error {}

export interface ImageStatus {
  name: string;
  languages: string[];
  present: boolean;
  /** A default image: /readyz needs it. */
  required: boolean;
  build: string;
}

export interface ImagesReport {
  socket: string;
  record: { path: string; mode: string | null; error: string | null };
  images: ImageStatus[];
  /** runsc installed, and (when gvisor is allowed, or with --gvisor) whether a hardened gVisor container starts. */
  gvisor: GvisorCheck;
}

interface Io {
  env: NodeJS.ProcessEnv;
  cwd: string;
  out: (s: string) => void;
}

function option(argv: readonly string[], name: string): string | null {
  const i = argv.indexOf(name);
  if (i >= 0) return argv[i + 1] ?? null;
  const eq = argv.find((a) => a.startsWith(`${name}=`));
  return eq ? eq.slice(name.length + 1) : null;
}

/**
 * Which configured images are present on the engine, with the command that builds each missing
 * one. The table is the server's: config (or the embedded defaults) with the data directory's
 * image record on top. The engine: --socket, else the server's own choice (engine.socket,
 * CONTAINER_HOST, DOCKER_HOST, the owned socket under the data directory when a server is
 * running); with none answering, a Podman API service of its own for the duration of the query.
 */
export async function imagesReport(configIn: Readonly<Config>, argv: readonly string[], io: Io): Promise<ImagesReport> {
  const dataDir = resolve(io.cwd, configIn.dataDir);
  const { record, error } = readImageRecord(dataDir);
  const config = withImageRecord(configIn, record);
  const log = pino({ level: 'silent' });

  const ownedPath = join(dataDir, 'podman', 'podman.sock');
  const explicit = option(argv, '--socket');
  const choice = explicit ? { socketPath: explicit.replace(/^unix:\/\//, ''), source: 'flag' } : chooseSocket(config.engine.socket, io.env, ownedPath);
  let socketPath = choice.socketPath;
  let temporary: { service: OwnedPodmanService; dir: string } | null = null;
  if (choice.source === 'owned') {
    try {
      await waitForSocket(socketPath, 500);
    } catch {
      // No server running: a short-lived service of our own, like the server would start.
      const dir = mkdtempSync(join(tmpdir(), 'sbx-images-'));
      socketPath = join(dir, 'podman.sock');
      const service = new OwnedPodmanService(
        {
          podmanBinary: config.engine.podmanBinary,
          runtime: 'runc',
          socketPath,
          containersConf: fromInstall('deploy/containers.conf'),
          timeoutMs: config.engine.startTimeoutSeconds * 1000,
        },
        log,
      );
      temporary = { service, dir };
    }
  }
  try {
    if (temporary) await temporary.service.start();
    else await waitForSocket(socketPath, config.engine.startTimeoutSeconds * 1000);
    const engine = PodmanEngine.forSocket(
      socketPath,
      { serverId: 'images-command', seccompProfilePath: '', hostsFilePath: '', tmpfsMb: 1, nofile: 1024, nproc: 1024, logMaxBytes: 1024 * 1024 },
      new KernelLogOomProbe(),
      log,
    );
    const required = new Set(requiredImages(config.images));
    const images: ImageStatus[] = [];
    for (const [name, { build, languages }] of imageTable(config.images)) {
      images.push({ name, languages, present: await engine.imagePresent(name), required: required.has(name), build });
    }
    for (const name of required) {
      if (!images.some((i) => i.name === name)) images.push({ name, languages: [], present: await engine.imagePresent(name), required: true, build: '' });
    }
    const probeImagePresent = images.some((i) => i.name === (config.engine.readinessImage ?? requiredImages(config.images)[0]) && i.present);
    const gvisor = probeImagePresent
      ? await checkGvisor(config, socketPath, argv.includes('--gvisor'), log)
      : { allowed: config.engine.allowedIsolation.includes('gvisor'), runsc: null, canStartContainer: null, error: 'the probe image is missing' };
    return {
      socket: temporary ? 'a temporary Podman API service' : socketPath,
      record: { path: join(dataDir, IMAGE_RECORD_FILE), mode: record?.mode ?? null, error },
      images,
      gvisor,
    };
  } finally {
    if (temporary) {
      await temporary.service.stop();
      rmSync(temporary.dir, { recursive: true, force: true });
    }
  }
}

/** `sandboxshift images [--config FILE] [--socket PATH] [--json]`: exit 0 when every default image is present, else 1. */
export async function imagesCommand(config: Readonly<Config>, argv: readonly string[], io: Io): Promise<number> {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '--socket') i++;
    else if (a !== '--json' && a !== '--gvisor' && !a.startsWith('--config=') && !a.startsWith('--socket=')) {
      throw new UsageError(`sandboxshift images: unknown argument "${a}" (usage: sandboxshift images [--config FILE] [--socket PATH] [--gvisor] [--json])`);
    }
  }
  const report = await imagesReport(config, argv, io);
  // gVisor decides the exit code only when it is the default isolation (as in /readyz).
  const gvisorOk = config.engine.isolation !== 'gvisor' || report.gvisor.canStartContainer === true;
  const ok = report.images.every((i) => !i.required || i.present) && gvisorOk;
  if (argv.includes('--json')) {
    io.out(`${JSON.stringify({ ...report, ok }, null, 2)}\n`);
    return ok ? 0 : 1;
  }
  const rows = report.images.map((i) => [i.name, i.languages.join(',') || '-', i.present ? 'present' : 'MISSING', i.required ? 'default' : 'optional']);
  const widths = [0, 1, 2, 3].map((c) => Math.max(...[['IMAGE', 'LANGUAGES', 'STATUS', 'KIND'], ...rows].map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((v, c) => v.padEnd(widths[c]!)).join('  ').trimEnd();
  io.out(`${line(['IMAGE', 'LANGUAGES', 'STATUS', 'KIND'])}\n${rows.map(line).join('\n')}\n`);
  const r = report.record;
  io.out(`\nengine: ${report.socket}\nimage record: ${r.mode ? `${r.path} (${r.mode} build)` : r.error ? `${r.path} IGNORED: ${r.error}` : `none (${r.path}): built-in image table`}\n`);
  const missing = report.images.filter((i) => !i.present);
  if (missing.length) {
    io.out(`\nto build the missing images (in ${installDir()}):\n`);
    for (const i of missing) io.out(`  ${i.name}: ${i.build || '(no build command configured)'}\n`);
  }
  const g = report.gvisor;
  const started = g.canStartContainer === null ? 'not tried (gvisor is not in engine.allowedIsolation; --gvisor tries it)' : g.canStartContainer ? 'a hardened container starts' : `CANNOT start a hardened container: ${g.error}`;
  io.out(`\ngVisor: runsc ${g.runsc ?? 'NOT INSTALLED (apt-get install runsc)'}; ${started}\n`);
  io.out(ok ? '\nall default images are present\n' : gvisorOk ? '\nNOT READY: a default image is missing\n' : '\nNOT READY: the default isolation (gvisor) cannot start a container\n');
  return ok ? 0 : 1;
}
