/**
 * The raw engine the server is compared against, on the same Podman socket: the bare
 * Docker-compatible API path (create, attach, start, end of stream, inspect, remove) driven
 * with dockerode and the server's own hardened container spec, and the `podman run` CLI.
 * Only unix sockets and local processes are touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import Docker from 'dockerode';
import { LABEL_SERVER } from '../src/runtime/labels.js';
import { rawAttach } from '../src/runtime/raw-attach.js';
import { writeSandboxHosts } from '../src/runtime/hosts.js';
import { buildContainerSpec, type SandboxSettings } from '../src/runtime/spec.js';
import { now, sleep } from './lib.js';

export interface RunTiming {
  /** ms from the start of the request to the first output byte, or null when there was none. */
  firstByteMs: number | null;
  /** ms from the start to the container's removal (API) or the CLI's exit. */
  exitMs: number;
  /** Bytes read from the output stream (multiplexed frame headers included for the API path). */
  bytes: number;
}

const FINAL = new Set(['exited', 'dead', 'stopped', 'created', 'configured']);

export class RawApi {
  readonly docker: Docker;
  readonly serverId = `bench-raw-${process.pid}`;
  private readonly settings: SandboxSettings;
  private n = 0;

  constructor(
    readonly socketPath: string,
    root: string,
    private readonly workspaceDir: string,
    readonly image: string,
  ) {
    this.docker = new Docker({ socketPath, timeout: 0 });
    // The server's defaults (sandbox.* in the config schema).
    this.settings = { serverId: this.serverId, seccompProfilePath: join(root, 'deploy', 'seccomp.json'), hostsFilePath: writeSandboxHosts(join(workspaceDir, '..', 'sandbox')), tmpfsMb: 64, nofile: 1024, nproc: 32768, logMaxBytes: 64 * 1024 * 1024, caBundlePath: null };
    mkdirSync(workspaceDir, { recursive: true });
    chownSync(workspaceDir, 65532, 65532);
  }

  /** One container through the bare API path, with the server's spec (and its default limits). */
  async run(command: string, logDriver: 'none' | 'k8s-file' = 'none'): Promise<RunTiming> {
    const spec = buildContainerSpec(
      { taskId: `raw${this.n++}`, image: this.image, command, env: {}, workspaceDir: this.workspaceDir, workspaceReadonly: false, cpus: 1, memoryMb: 512, pids: 256, isolation: 'runc', stdin: false, backstopSeconds: 3600 },
      this.settings,
    );
    (spec.HostConfig as { LogConfig: unknown }).LogConfig = { Type: logDriver, Config: {} };
    const t0 = now();
    const container = await this.docker.createContainer(spec);
    let firstByteMs: number | null = null;
    let bytes = 0;
    try {
      const sock = await this.attach(container.id);
      const ended = new Promise<void>((resolve) => {
        sock.on('data', (d: Buffer) => {
          firstByteMs ??= now() - t0;
          bytes += d.length;
        });
        sock.once('close', () => resolve());
        sock.once('error', () => resolve());
      });
      await container.start();
      sock.end();
      await ended;
      for (let i = 0; i < 2000; i++) {
        const info = await container.inspect();
        if (FINAL.has(info.State.Status)) break;
        await sleep(5);
      }
    } finally {
      await container.remove({ force: true, v: true });
    }
    return { firstByteMs, exitMs: now() - t0, bytes };
  }

  private attach(id: string): Promise<Socket> {
    return rawAttach(this.docker, id, { stdin: false, stdout: true, stderr: true });
  }

  /** Removes whatever this process's raw runs left behind (after an error). */
  async cleanup(): Promise<void> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_SERVER}=${this.serverId}`] } });
    for (const c of list) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    rmSync(this.workspaceDir, { recursive: true, force: true });
  }
}

/** `podman --runtime runc run --rm --network none IMAGE /bin/sh -c CMD`, the project's containers.conf. */
export function cliRun(root: string, image: string, command: string): Promise<RunTiming> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const env = { ...process.env, CONTAINERS_CONF: join(root, 'deploy', 'containers.conf') };
    const child = spawn('podman', ['--runtime', 'runc', 'run', '--rm', '--network', 'none', image, '/bin/sh', '-c', command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let firstByteMs: number | null = null;
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      firstByteMs ??= now() - t0;
      bytes += d.length;
    });
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`podman run exited ${code}: ${stderr.trim()}`));
      else resolve({ firstByteMs, exitMs: now() - t0, bytes });
    });
  });
}

/** A Podman API service of the bench's own (runc, the project's containers.conf), stopped by PID. */
export async function startPodmanService(root: string, socketPath: string): Promise<{ pid: number; stop(): Promise<void> }> {
  rmSync(socketPath, { force: true });
  const child: ChildProcess = spawn('podman', ['--runtime', 'runc', 'system', 'service', '--time=0', `unix://${socketPath}`], {
    cwd: join(socketPath, '..'),
    env: { ...process.env, CONTAINERS_CONF: join(root, 'deploy', 'containers.conf') },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  if (child.pid === undefined) throw new Error('could not spawn podman system service');
  const docker = new Docker({ socketPath });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`podman system service exited with ${child.exitCode}`);
    try {
      await docker.ping();
      break;
    } catch {
      if (i > 200) throw new Error(`podman system service did not answer on ${socketPath} within 20 s`);
      await sleep(100);
    }
  }
  const pid = child.pid;
  return {
    pid,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      process.kill(pid, 'SIGTERM');
      const t = setTimeout(() => child.exitCode === null && process.kill(pid, 'SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The PID of the `podman system service` answering on `socketPath`, found in /proc, or null. */
export function servicePid(socketPath: string): number | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv.includes('service') && argv.some((a) => a === socketPath || a === `unix://${socketPath}`)) return Number(name);
    } catch {
      /* gone */
    }
  }
  return null;
}
