import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { KubernetesEngine } from './engine.js';

/** Exit statuses of the canary command. */
const REACHED = 0;
// Not 1: an interpreter that fails (a traceback) exits 1, which must read as no answer.
const BLOCKED = 4;
const NO_TOOL = 3;

/**
 * The canary's command: a TCP connect to `host:port` with python3 (else bash's /dev/tcp), exit 0
 * when it connected, 1 when not, 3 when the image has neither. The target is a validated host:port.
 */
export function canaryCommand(target: string): string {
  const sep = target.lastIndexOf(':');
  const host = target.slice(0, sep).replace(/^\[|\]$/g, '');
  const port = Number(target.slice(sep + 1));
  const py = `import socket,sys\ns=socket.socket(socket.AF_INET6 if ":" in "${host}" else socket.AF_INET)\ns.settimeout(3)\nsys.exit(${REACHED} if s.connect_ex(("${host}",${port}))==0 else ${BLOCKED})`;
  return [
    `if command -v python3 >/dev/null 2>&1; then exec python3 -c '${py}'; fi`,
    `if command -v bash >/dev/null 2>&1; then if timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port}' 2>/dev/null; then exit ${REACHED}; fi; exit ${BLOCKED}; fi`,
    `exit ${NO_TOOL}`,
  ].join('\n');
}

export interface CanaryResult {
  /** True: the pod could not reach the target (policy enforced); false: it could; null: not known. */
  enforced: boolean | null;
  /** Why tasks with an allowlist are refused, or null. */
  refusal: string | null;
  checkedAt: string;
}

/**
 * The NetworkPolicy self-test: a pod labelled like every task pod (so the same default-deny policy
 * selects it) tries a TCP connect to `target`. Reaching it means the cluster's network plugin does
 * not enforce NetworkPolicy; not knowing counts as not enforced.
 */
export async function runCanary(engine: KubernetesEngine, target: string, image: string, log: Logger): Promise<CanaryResult> {
  const dir = join(engine.settings.spoolDir, 'canary');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o755 });
  const checkedAt = new Date().toISOString();
  let out = '';
  let code: number | null;
  try {
    const sandbox = await engine.start(
      { image, cpus: 0.1, memoryMb: 64, pids: 16, isolation: 'runc' },
      { taskId: `canary-${Date.now()}`, command: canaryCommand(target), env: {}, workspaceDir: dir, workspaceReadonly: true, stdin: false, backstopSeconds: 30 },
      { onOutput: (_s, d) => (out = (out + d.toString()).slice(-500)) },
    );
    code = (await sandbox.exit).exitCode;
  } catch (err) {
    const reason = `the NetworkPolicy self-test could not run: ${(err as Error).message}; tasks with an allowlist are refused until it passes`;
    log.warn({ target }, reason);
    return { enforced: null, refusal: reason, checkedAt };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (code === BLOCKED) {
    log.info({ target }, 'NetworkPolicy self-test: the canary pod could not reach its target (policy enforced)');
    return { enforced: true, refusal: null, checkedAt };
  }
  if (code === REACHED) {
    const reason = `the cluster does not enforce NetworkPolicy: a canary pod under the task pods' default-deny policy reached ${target}, so an allowlist could not be held`;
    log.error({ target }, reason);
    return { enforced: false, refusal: reason, checkedAt };
  }
  const reason = `the NetworkPolicy self-test gave no answer (canary exit ${code}${code === NO_TOOL ? ': its image has neither python3 nor bash' : ''}${out ? `, output ${JSON.stringify(out.trim())}` : ''}); tasks with an allowlist are refused`;
  log.warn({ target }, reason);
  return { enforced: null, refusal: reason, checkedAt };
}
