import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { Logger } from 'pino';
import { fromInstall } from '../paths.js';
import { OwnedPodmanService, waitForSocket } from './service.js';

/**
 * gVisor tasks are created through a Podman API service of their own whose default OCI runtime is
 * this wrapper (Podman 4.3 ignores a per-container runtime sent over its API: the compat
 * HostConfig.Runtime and the libpod oci_runtime field). The wrapper adds the runsc flags every
 * task needs. Podman records the runtime by this path in each container, so the runc service
 * starts, attaches to, stops and removes gVisor containers too: only their creation differs.
 */
export const GVISOR_RUNTIME = 'deploy/gvisor/runsc';

/** The runsc binary the wrapper runs (Debian's package: apt-get install runsc). */
export const RUNSC_BINARY = '/usr/bin/runsc';

export function gvisorRuntimePath(): string {
  return fromInstall(GVISOR_RUNTIME);
}

/** Why gVisor cannot be used on this machine, or null when its binaries are in place. */
export async function gvisorMissing(runsc = RUNSC_BINARY, wrapper = gvisorRuntimePath()): Promise<string | null> {
  try {
    await access(runsc, constants.X_OK);
  } catch {
    return `runsc is not installed (${runsc} not found; install it with: apt-get install runsc)`;
  }
  try {
    await access(wrapper, constants.X_OK);
  } catch {
    return `the runsc wrapper ${wrapper} is missing or not executable`;
  }
  return null;
}

export interface GvisorService {
  /** The socket gVisor containers are created through, or null when gVisor is unusable. */
  socketPath: string | null;
  /** The service the server started for it (stopped with the server), or null. */
  owned: OwnedPodmanService | null;
  /** Why gVisor is unusable (null: usable). */
  missing: string | null;
}

/**
 * The Podman API service that creates gVisor containers: `engine.gvisorSocket` when configured,
 * else one the server starts (runtime: the wrapper, the project's containers.conf, the same
 * storage as the main service). Failing to get one leaves gVisor unusable, not the server.
 */
export async function setUpGvisor(
  opts: { configured: string | null; podmanBinary: string; ownedPath: string; containersConf: string; timeoutMs: number },
  log: Logger,
): Promise<GvisorService> {
  if (opts.configured) {
    const socketPath = opts.configured.replace(/^unix:\/\//, '');
    try {
      await waitForSocket(socketPath, opts.timeoutMs);
      return { socketPath, owned: null, missing: null };
    } catch (err) {
      return { socketPath: null, owned: null, missing: `engine.gvisorSocket does not answer: ${(err as Error).message}` };
    }
  }
  const missing = await gvisorMissing();
  if (missing) return { socketPath: null, owned: null, missing };
  const owned = new OwnedPodmanService(
    { podmanBinary: opts.podmanBinary, runtime: gvisorRuntimePath(), socketPath: opts.ownedPath, containersConf: opts.containersConf, timeoutMs: opts.timeoutMs },
    log,
  );
  try {
    await owned.start();
    return { socketPath: opts.ownedPath, owned, missing: null };
  } catch (err) {
    return { socketPath: null, owned: null, missing: `the gVisor Podman API service did not start: ${(err as Error).message}` };
  }
}
