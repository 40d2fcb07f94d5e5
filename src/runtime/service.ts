import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import { EngineError } from './engine.js';

export interface SocketChoice {
  socketPath: string;
  /** Where the path came from, for the log. */
  source: 'config' | 'CONTAINER_HOST' | 'DOCKER_HOST' | 'owned';
}

function unixPath(value: string, what: string): string {
  if (value.startsWith('unix://')) return value.slice('unix://'.length);
  if (value.startsWith('/')) return value;
  throw new EngineError(`${what} must be a unix socket (unix:///path or /path), got "${value}"`);
}

/** Ordered socket discovery: config, then CONTAINER_HOST, then DOCKER_HOST, else an owned service. */
export function chooseSocket(configured: string | null, env: NodeJS.ProcessEnv, ownedPath: string): SocketChoice {
  if (configured) return { socketPath: unixPath(configured, 'engine.socket'), source: 'config' };
  if (env.CONTAINER_HOST) return { socketPath: unixPath(env.CONTAINER_HOST, 'CONTAINER_HOST'), source: 'CONTAINER_HOST' };
  if (env.DOCKER_HOST) return { socketPath: unixPath(env.DOCKER_HOST, 'DOCKER_HOST'), source: 'DOCKER_HOST' };
  return { socketPath: ownedPath, source: 'owned' };
}

export async function waitForSocket(socketPath: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const docker = new Docker({ socketPath });
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new EngineError(`podman system service exited with code ${child.exitCode}`, true);
    try {
      await docker.ping();
      return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new EngineError(`Podman API at ${socketPath} did not answer within ${timeoutMs} ms (${last})`, true);
}

/**
 * A Podman API service the server starts and owns: runc, the project's
 * containers.conf through CONTAINERS_CONF, a socket under the data directory. Stopped by PID.
 */
export class OwnedPodmanService {
  private child: ChildProcess | null = null;

  constructor(
    private readonly opts: { podmanBinary: string; runtime: string; socketPath: string; containersConf: string; timeoutMs: number },
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const { podmanBinary, runtime, socketPath, containersConf, timeoutMs } = this.opts;
    mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
    await this.endLeftover();
    rmSync(socketPath, { force: true });
    const args = ['--runtime', runtime, 'system', 'service', '--time=0', `unix://${socketPath}`];
    this.log.info({ podman: podmanBinary, args, containersConf }, 'starting owned Podman API service');
    const child = spawn(podmanBinary, args, {
      // conmon writes an `oom` marker into its working directory when a container is OOM-killed:
      // keep that out of the operator's current directory.
      cwd: dirname(socketPath),
      env: { ...process.env, CONTAINERS_CONF: containersConf },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    if (child.pid !== undefined) writeFileSync(this.pidFile, `${child.pid}\n`);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const spawnFailed = new Promise<never>((_, reject) =>
      child.once('error', (err) =>
        reject(new EngineError(`cannot run ${podmanBinary}: ${err.message}. Install it with: apt-get install podman runc`, true)),
      ),
    );
    try {
      await Promise.race([waitForSocket(socketPath, timeoutMs, child), spawnFailed]);
    } catch (err) {
      await this.stop();
      throw new EngineError(`${(err as Error).message}${stderr ? `; podman said: ${stderr.trim()}` : ''}`, true);
    }
    this.log.info({ socketPath, pid: child.pid }, 'owned Podman API service is answering');
  }

  private get pidFile(): string {
    return `${this.opts.socketPath}.pid`;
  }

  /**
   * A server killed without its shutdown leaves its service running. The PID it recorded is ended
   * only if that process is still the service on this socket (a PID may have been reused).
   */
  private async endLeftover(): Promise<void> {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(this.pidFile, 'utf8'), 10);
    } catch {
      return;
    }
    const isOurs = () => {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return cmd.includes('service') && cmd.includes(`unix://${this.opts.socketPath}`);
      } catch {
        return false;
      }
    };
    if (Number.isSafeInteger(pid) && pid > 1 && isOurs()) {
      this.log.warn({ pid, socketPath: this.opts.socketPath }, 'ending the Podman API service a previous run left behind');
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 50 && isOurs(); i++) await new Promise((r) => setTimeout(r, 100));
      if (isOurs()) process.kill(pid, 'SIGKILL');
    }
    rmSync(this.pidFile, { force: true });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    rmSync(this.pidFile, { force: true });
    if (!child || child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
