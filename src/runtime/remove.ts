import type Docker from 'dockerode';

/** Waits before each retry of a removal that failed with EBUSY; the first try has no wait. */
export const REMOVE_RETRY_DELAYS_MS = [100, 300, 1000] as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Podman 4.3 answers a forced removal of a running container with a 500 "unlinkat
 * …/userdata/shm: device or resource busy" when the container's conmon, which runs in a mount
 * namespace of its own holding a copy of the shm mount, has not exited yet. The container is left
 * stopped and whole, and the same removal a moment later, once conmon is gone, succeeds.
 */
export function isBusyRemoval(err: unknown): boolean {
  const e = err as Error & { statusCode?: number; json?: { message?: string; cause?: string } };
  const text = `${e?.json?.message ?? ''} ${e?.json?.cause ?? ''} ${e?.message ?? ''}`;
  return e?.statusCode === 500 && text.includes('device or resource busy');
}

/**
 * Force-removes a container with its anonymous volumes, retrying the busy-mount race above.
 * A missing container counts as removed; any other error is thrown.
 */
export async function removeContainer(docker: Pick<Docker, 'getContainer'>, id: string, delays: readonly number[] = REMOVE_RETRY_DELAYS_MS): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await docker.getContainer(id).remove({ force: true, v: true });
      return;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return;
      if (attempt >= delays.length || !isBusyRemoval(err)) throw err;
      await sleep(delays[attempt] ?? 0);
    }
  }
}
