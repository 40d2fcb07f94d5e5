import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { fromInstall } from '../paths.js';
import { Readiness } from '../readiness.js';
import { IsolationAvailability } from '../tasks/isolation.js';
import { RUNSC_BINARY, setUpGvisor } from './gvisor.js';
import { runscVersion } from './host-versions.js';
import { writeSandboxHosts } from './hosts.js';
import { KernelLogOomProbe } from './oom.js';
import { PodmanEngine } from './podman.js';

export interface GvisorCheck {
  /** Whether engine.allowedIsolation lists gvisor. */
  allowed: boolean;
  /** `runsc --version`'s version, or null when runsc is not installed. */
  runsc: string | null;
  /** A hardened container (the task spec) started under gVisor and printed the sandbox uid; null: not tried. */
  canStartContainer: boolean | null;
  error: string | null;
}

/**
 * For `sandboxshift images`: is runsc installed, and does a hardened gVisor container start? The
 * second is tried through a temporary gVisor Podman API service of its own (the main service at
 * `mainSocket` runs the container), with the server's own spec, when gVisor is allowed or `force`.
 */
export async function checkGvisor(config: Readonly<Config>, mainSocket: string, force: boolean, log: Logger): Promise<GvisorCheck> {
  const allowed = config.engine.allowedIsolation.includes('gvisor');
  const runsc = await runscVersion(RUNSC_BINARY);
  if (!allowed && !force) return { allowed, runsc, canStartContainer: null, error: null };
  const dir = mkdtempSync(join(tmpdir(), 'sbx-gvisor-check-'));
  const service = await setUpGvisor(
    {
      configured: config.engine.gvisorSocket,
      podmanBinary: config.engine.podmanBinary,
      ownedPath: join(dir, 'gvisor.sock'),
      containersConf: fromInstall('deploy/containers.conf'),
      timeoutMs: config.engine.startTimeoutSeconds * 1000,
    },
    log,
  );
  try {
    if (service.missing) return { allowed, runsc, canStartContainer: false, error: service.missing };
    const engine = PodmanEngine.forSocket(
      mainSocket,
      {
        serverId: 'gvisor-check',
        seccompProfilePath: fromInstall(config.sandbox.seccompProfile),
        hostsFilePath: writeSandboxHosts(join(dir, 'sandbox')),
        tmpfsMb: config.sandbox.tmpfsMb,
        nofile: config.sandbox.nofile,
        nproc: config.sandbox.nproc,
        logMaxBytes: 1024 * 1024,
      },
      new KernelLogOomProbe(),
      log,
      service.socketPath,
    );
    const probe = new Readiness(config, engine, join(dir, 'probe'), log, undefined, undefined, new IsolationAvailability());
    try {
      await probe.probeContainer('gvisor');
      return { allowed, runsc, canStartContainer: true, error: null };
    } catch (err) {
      return { allowed, runsc, canStartContainer: false, error: (err as Error).message };
    }
  } finally {
    await service.owned?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
