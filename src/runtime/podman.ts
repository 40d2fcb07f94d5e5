import type { Socket } from 'node:net';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import type { Isolation } from '../config/schema.js';
import {
  EngineError,
  type AdoptOptions,
  type ContainerEngine,
  type OwnContainer,
  type RunningSandbox,
  type SandboxExit,
  type SandboxHandlers,
  type SandboxJob,
  type SandboxShape,
  type EngineVersions,
  type PooledSandbox,
  type PoolSlot,
} from './engine.js';
import { EngineLogFollower } from './enginelog.js';
import { conmonExitDir, ExitWatcher } from './exit-watch.js';
import { debianChangelogCves, runscVersion } from './host-versions.js';
import { LABEL_HOST_UID, LABEL_SERVER, LABEL_SLOT, LABEL_STDIN, LABEL_TASK } from './labels.js';
import { rawAttach } from './raw-attach.js';
import { removeContainer } from './remove.js';
import { SecretFiles } from './secret-file.js';
import { STDIN_FIFO, StdinFifos } from './stdin-fifo.js';
import { attachSink, fifoSink, type StdinSink } from './stdin-sink.js';
import type { OomProbe } from './oom.js';
import { buildContainerSpec, buildPooledSpec, CONTAINER_USER, EGRESS_SOCKET, forcedEnv, type SandboxSettings } from './spec.js';
import { encodeJob, MAX_JOB_BYTES, WAITER_SCRIPT } from './waiter.js';
import { toSpecGenerator } from './specgen.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Longest single wait on the engine before its state is read again. */
const WAIT_SLICE_MS = 5000;
/** How often Podman checks a waited-on container's state. */
const WAIT_INTERVAL = '50ms';


const FINAL_STATES = new Set(['exited', 'dead', 'stopped', 'created', 'configured']);

type HttpError = Error & { statusCode?: number; json?: unknown };

function describe(err: unknown): string {
  const e = err as HttpError;
  const json = e.json as { message?: string; cause?: string } | undefined;
  return json?.message ?? json?.cause ?? e.message ?? String(err);
}

function isUnavailable(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT';
}

/**
 * ContainerEngine over Podman's Docker-compatible API, through dockerode. Containers are created
 * through the service of their isolation (`creators`: runc through the main one, gVisor through a
 * service whose default runtime is runsc); everything else goes through the main service, which
 * runs each container with the runtime recorded in it.
 */
export class PodmanEngine implements ContainerEngine {
  /** conmon's exit directory, watched (undefined until the first container told where it is). */
  private exits: ExitWatcher | null | undefined;
  private exitLookups = 0;
  /** Removals of exited containers still under way (they run after the exit was reported). */
  private readonly removals = new Map<string, Promise<void>>();
  private readonly secretFiles: SecretFiles | null;
  private readonly stdinFifos: StdinFifos | null;

  constructor(
    private readonly docker: Docker,
    private readonly settings: SandboxSettings,
    private readonly oom: OomProbe,
    private readonly log: Logger,
    private readonly creators: Partial<Record<Isolation, Docker>> = {},
  ) {
    this.secretFiles = settings.secretsDir ? new SecretFiles(settings.secretsDir) : null;
    this.stdinFifos = settings.stdinDir ? new StdinFifos(settings.stdinDir) : null;
  }

  /** `gvisorSocket`: the Podman API service that creates gVisor containers (null: none). */
  static forSocket(socketPath: string, settings: SandboxSettings, oom: OomProbe, log: Logger, gvisorSocket: string | null = null): PodmanEngine {
    const creators = gvisorSocket ? { gvisor: new Docker({ socketPath: gvisorSocket, timeout: 0 }) } : {};
    return new PodmanEngine(new Docker({ socketPath, timeout: 0 }), settings, oom, log, creators);
  }

  private creator(isolation: Isolation): Docker {
    if (isolation === 'runc') return this.creators.runc ?? this.docker;
    const docker = this.creators[isolation];
    if (!docker) throw new EngineError(`no Podman API service creates ${isolation} containers on this server`, true);
    return docker;
  }

  async ping(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw new EngineError(`engine unreachable: ${describe(err)}`, true);
    }
  }

  async imagePresent(image: string): Promise<boolean> {
    // Asked on every submission, never cached: the answer also tells that the engine is up
    // (a submission while it is down is refused with ENGINE_UNAVAILABLE, not accepted to fail).
    try {
      await this.docker.getImage(image).inspect();
      return true;
    } catch (err) {
      if ((err as HttpError).statusCode === 404) return false;
      throw new EngineError(`image inspect failed: ${describe(err)}`, isUnavailable(err));
    }
  }

  async imageLabels(image: string): Promise<Record<string, string> | null> {
    try {
      const info = await this.docker.getImage(image).inspect();
      return (info.Config?.Labels as Record<string, string> | null | undefined) ?? {};
    } catch (err) {
      if ((err as HttpError).statusCode === 404) return null;
      throw new EngineError(`image inspect failed: ${describe(err)}`, isUnavailable(err));
    }
  }

  async versions(): Promise<EngineVersions> {
    let version: Docker.DockerVersion;
    let info: { Runtimes?: Record<string, { path?: string }> };
    try {
      [version, info] = await Promise.all([this.docker.version(), this.docker.info() as Promise<typeof info>]);
    } catch (err) {
      throw new EngineError(`version query failed: ${describe(err)}`, isUnavailable(err));
    }
    const components = (version.Components ?? []) as { Name: string; Version: string; Details?: { Package?: string } }[];
    const runcComponent = components.find((c) => c.Name === 'OCI Runtime (runc)');
    const pkg = runcComponent?.Details?.Package ?? null;
    return {
      podman: components.find((c) => c.Name === 'Podman Engine')?.Version ?? version.Version ?? null,
      runc: runcComponent ? { text: runcComponent.Version, package: pkg, packageCves: await debianChangelogCves(pkg) } : null,
      runsc: await runscVersion(info.Runtimes?.runsc?.path ?? null),
    };
  }

  async start(shape: SandboxShape, job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox> {
    if (job.workspaceView) job = { ...job, workspaceDir: await job.workspaceView(), workspaceView: undefined };
    const secretsFile = this.writeSecrets(shape, job);
    let stdinDir: string | null = null;
    try {
      stdinDir = this.makeStdinFifo(job, job.hostUid);
    } catch (err) {
      this.secretFiles?.remove(job.taskId);
      throw err;
    }
    const cleanUp = () => {
      this.secretFiles?.remove(job.taskId);
      if (stdinDir) this.stdinFifos?.remove(job.taskId);
    };
    const spec = toSpecGenerator(buildContainerSpec({ ...shape, ...job }, this.settings, secretsFile, stdinDir), job.backstopSeconds);
    let container: Docker.Container;
    try {
      container = this.docker.getContainer(await this.createLibpod(this.creator(shape.isolation), spec));
    } catch (err) {
      cleanUp();
      throw new EngineError(`create failed: ${describe(err)}`, isUnavailable(err));
    }
    const id = container.id;
    let logPath: string;
    let sink: StdinSink | null = null;
    try {
      logPath = await this.logPath(id);
      // Stdin through the task's pipe (opened read-write: it never waits for the relay), or an
      // attach (stdin only) before the start: attaching runs `runc create`, so OCI errors
      // surface here. Output is read from the engine's log, never from the attach.
      if (stdinDir) {
        const writer = this.stdinFifos!.open(job.taskId);
        if (!writer) throw new EngineError('the stdin pipe of the task is missing');
        sink = fifoSink(writer);
      } else if (job.stdin) sink = attachSink(await this.attachStdin(id));
    } catch (err) {
      sink?.close();
      await this.remove(id);
      cleanUp();
      throw new EngineError(`attach failed: ${describe(err)}`, isUnavailable(err));
    }
    const follower = new EngineLogFollower(logPath, null, handlers);
    try {
      await container.start();
    } catch (err) {
      sink?.close();
      await follower.stop();
      await this.remove(id);
      cleanUp();
      throw new EngineError(`start failed: ${describe(err)}`, isUnavailable(err));
    }
    await this.watchExits(id);
    return this.follow(id, follower, sink, job.taskId);
  }

  /**
   * The task's stdin pipe directory, or null when its stdin (if any) goes through the attach. The
   * pipe belongs to the user the container runs as: `hostUid` (65532 inside its namespace) for a
   * container with a host UID of its own, else the container user.
   */
  private makeStdinFifo(job: SandboxJob, hostUid: number | null | undefined): string | null {
    if (!job.stdin || job.stdinRelay === undefined || !this.stdinFifos) return null;
    const user = hostUid !== undefined && hostUid !== null ? `${hostUid}:${hostUid}` : CONTAINER_USER;
    try {
      return this.stdinFifos.create(job.taskId, user);
    } catch (err) {
      throw new EngineError(`the stdin pipe could not be made: ${(err as Error).message}`);
    }
  }

  /**
   * The task's secrets file (null without secrets), owned by the host UID the container's user is. Names
   * the container's configuration sets (the proxy and CA variables, HOME) keep their values.
   */
  private writeSecrets(shape: SandboxShape, job: SandboxJob): string | null {
    const secrets = job.secretEnv ?? {};
    if (Object.keys(secrets).length === 0) return null;
    if (!this.secretFiles) throw new EngineError('this engine has no directory for secrets files (sandbox.secretsDir)');
    const plain = buildContainerSpec({ ...shape, ...job }, this.settings);
    const taken = new Set(plain.Env.map((e) => e.slice(0, e.indexOf('='))));
    const entries = Object.fromEntries(Object.entries(secrets).filter(([k]) => !taken.has(k)));
    try {
      // A task with a host UID of its own reads the file as that UID (65532 inside its namespace).
      const owner = job.hostUid !== undefined && job.hostUid !== null ? `${job.hostUid}:${job.hostUid}` : plain.User;
      return this.secretFiles.write(job.taskId, entries, owner);
    } catch (err) {
      throw new EngineError(`the secrets file could not be written: ${(err as Error).message}`);
    }
  }

  /**
   * Learns conmon's exit directory from the first running container (its conmon's command line)
   * and watches it. A few tries at most; without it exits are read from the engine's state.
   */
  private async watchExits(id: string): Promise<void> {
    if (this.exits !== undefined || this.exitLookups >= 3) return;
    this.exitLookups += 1;
    const dir = await new Promise<string | null>((resolve) => {
      this.docker.modem.dial(
        { path: `/v4.0.0/libpod/containers/${id}/json?`, method: 'GET', options: {}, statusCodes: { 200: true, 404: 'no such container', 500: 'server error' } },
        (err: unknown, data: unknown) => {
          const pid = (data as { State?: { ConmonPid?: number } } | undefined)?.State?.ConmonPid;
          resolve(err || !pid ? null : conmonExitDir(pid));
        },
      );
    });
    if (dir === null) return;
    const watcher = new ExitWatcher(dir);
    if (watcher.watching) this.exits = watcher;
  }

  /** Resolves once every removal started so far has ended. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.removals.values()]);
  }

  /** Resolves once the background removal of the container (if any) has ended. */
  async whenRemoved(id: string): Promise<void> {
    await this.removals.get(id);
  }

  /** Removes an exited container in the background (its exit is reported without waiting). */
  private removeLater(id: string): void {
    const p = this.remove(id).finally(() => this.removals.delete(id));
    this.removals.set(id, p);
  }

  async prestart(shape: SandboxShape, slot: PoolSlot): Promise<PooledSandbox> {
    const spec = toSpecGenerator(buildPooledSpec(shape, slot, WAITER_SCRIPT, this.settings), slot.backstopSeconds);
    let id: string;
    try {
      id = await this.createLibpod(this.creator(shape.isolation), spec);
    } catch (err) {
      throw new EngineError(`create failed: ${describe(err)}`, isUnavailable(err));
    }
    const container = this.docker.getContainer(id);
    let logPath: string;
    let sock: Socket;
    try {
      logPath = await this.logPath(id);
      sock = await this.attachStdin(id);
      await container.start();
    } catch (err) {
      await this.remove(id);
      throw new EngineError(`start failed: ${describe(err)}`, isUnavailable(err));
    }
    await this.watchExits(id);
    let alive = true;
    let taken = false;
    let piped: string | null = null;
    sock.on('error', () => undefined);
    sock.on('close', () => (alive = false));
    const startedAt = Date.now();
    return {
      containerId: id,
      startedAt,
      get alive() {
        return alive && !sock.destroyed;
      },
      // The member's user, which the task's is once it takes the member.
      stdinPipe: (job) => (piped = this.makeStdinFifo(job, slot.hostUid)),
      handoff: async (job, handlers) => {
        if (taken) throw new EngineError('a pre-started sandbox takes one job only');
        // Stdin through the pipe: its relay first, as on a cold sandbox's entrypoint.
        const pipe = piped !== null;
        const line = encodeJob(
          job.command,
          job.env,
          forcedEnv(this.settings, job.egress),
          [...(pipe ? [job.stdinRelay!, '--stdin', STDIN_FIFO, '--'] : []), ...(job.egress ? [job.egress.relay, String(job.egress.port), EGRESS_SOCKET, '--'] : [])],
          job.secretEnv ?? {},
        );
        if (Buffer.byteLength(line) > MAX_JOB_BYTES) throw new EngineError('the job is too large for a pre-started sandbox');
        if (!alive || sock.destroyed) throw new EngineError('the pre-started sandbox has ended');
        const writer = pipe ? this.stdinFifos!.open(job.taskId) : null;
        if (pipe && !writer) throw new EngineError('the stdin pipe of the task is missing');
        taken = true;
        const follower = new EngineLogFollower(logPath, null, handlers);
        sock.write(line);
        if (writer) {
          // The attach carried the job; the task reads the pipe.
          sock.end();
          return this.follow(id, follower, fifoSink(writer), job.taskId);
        }
        const running = this.follow(id, follower, attachSink(sock), job.taskId);
        if (!job.stdin) running.endStdin();
        return running;
      },
      discard: async () => {
        taken = true;
        sock.destroy();
        await this.remove(id);
      },
    };
  }

  /** Podman's own create endpoint (the only one that takes the container `timeout`). */
  private createLibpod(docker: Docker, spec: Record<string, unknown>): Promise<string> {
    return new Promise((resolve, reject) => {
      docker.modem.dial(
        {
          path: '/v4.0.0/libpod/containers/create',
          method: 'POST',
          options: spec,
          statusCodes: { 201: true, 400: 'bad parameter', 404: 'no such image', 409: 'conflict', 500: 'server error' },
        },
        (err: unknown, data: unknown) => (err ? reject(err) : resolve((data as { Id: string }).Id)),
      );
    });
  }

  async adopt(containerId: string, opts: AdoptOptions, handlers: SandboxHandlers): Promise<RunningSandbox | null> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(containerId).inspect();
    } catch (err) {
      if ((err as HttpError).statusCode === 404) return null;
      throw new EngineError(`inspect failed: ${describe(err)}`, isUnavailable(err));
    }
    const logPath = (info as unknown as { LogPath?: string }).LogPath ?? '';
    const labels = info.Config?.Labels ?? {};
    // A pre-started container's labels were set before it had a task: the caller names it.
    const taskId = labels[LABEL_TASK] || opts.taskId || '';
    let sink: StdinSink | null = null;
    if (opts.stdin && info.State.Running) {
      // A pre-started container's task has a pipe when one was made for it at the handoff.
      const fifo = labels[LABEL_STDIN] === 'fifo';
      // The relay in the container still holds the pipe: open it again and go on writing.
      const writer = (fifo || labels[LABEL_SLOT]) && taskId && this.stdinFifos ? this.stdinFifos.open(taskId) : null;
      if (writer) sink = fifoSink(writer);
      else if (fifo) this.log.warn({ containerId, taskId }, 'the stdin pipe of an adopted task is missing: its stdin stays as it is');
      else {
        const sock = await this.attachStdin(containerId).catch(() => null);
        if (sock) sink = attachSink(sock);
      }
    }
    const follower = new EngineLogFollower(logPath, opts.from, handlers);
    return this.follow(containerId, follower, sink, taskId, info.State.Running);
  }

  private async logPath(id: string): Promise<string> {
    const info = await this.docker.getContainer(id).inspect();
    const path = (info as unknown as { LogPath?: string }).LogPath;
    if (!path) throw new EngineError('the engine reports no log path for the container');
    return path;
  }

  /**
   * The running sandbox over a started (or adopted) container, its log follower and its stdin (if
   * any). `started`: the container is known to have run (just started, or found running), so its
   * exit file will come.
   */
  private follow(id: string, follower: EngineLogFollower, sink: StdinSink | null, taskId: string, started = true): RunningSandbox {
    const container = this.docker.getContainer(id);
    let stdinOpen = sink !== null;
    let stopping: Promise<void> | null = null;
    const detached = new AbortController();
    const exit = this.waitExit(container, detached.signal, started).then(async (state) => {
      if (state === 'detached') return new Promise<SandboxExit>(() => undefined);
      await follower.finish();
      sink?.close();
      if (state === 'vanished') {
        this.forgetSecrets(taskId);
        return { exitCode: null, oomKills: 0, finishedAt: null, vanished: true };
      }
      // Kills of any process in the container's memory cgroup, whatever the exit code: a child can
      // be killed while PID 1 goes on and exits 0.
      const oomKills = Math.max(state.oomFlag ? 1 : 0, this.oom.oomKills(id));
      // The container has exited: nothing reads its secrets file or its stdin pipe any more.
      this.forgetSecrets(taskId);
      this.removeLater(id);
      return { exitCode: state.exitCode, oomKills, finishedAt: state.finishedAt, vanished: false };
    });
    return {
      containerId: id,
      exit,
      writeStdin: (data) => {
        if (!stdinOpen || !sink) return false;
        return sink.write(data);
      },
      endStdin: () => {
        if (!stdinOpen) return;
        stdinOpen = false;
        sink?.end();
      },
      stop: (graceSeconds) => {
        stopping ??= this.stopContainer(container, graceSeconds);
        return stopping;
      },
      detach: async () => {
        detached.abort();
        stdinOpen = false;
        await sink?.detach();
        await follower.stop();
      },
    };
  }

  private forgetSecrets(taskId: string): void {
    if (!taskId) return;
    try {
      this.secretFiles?.remove(taskId);
      this.stdinFifos?.remove(taskId);
    } catch (err) {
      this.log.warn({ taskId, err: (err as Error).message }, 'secrets file or stdin pipe could not be removed');
    }
  }

  /** Stops a container; retried while the engine does not answer (its service is restarted). */
  private async stopContainer(container: Docker.Container, graceSeconds: number): Promise<void> {
    for (let attempt = 0; attempt < 120; attempt++) {
      try {
        await container.stop({ t: graceSeconds });
        return;
      } catch (err) {
        // 304: already stopped; 404: already gone.
        const code = (err as HttpError).statusCode;
        if (code === 304 || code === 404) return;
        if (isUnavailable(err)) {
          await sleep(500);
          continue;
        }
        this.log.warn({ containerId: container.id, err: describe(err) }, 'stop failed, sending SIGKILL');
        await container.kill({ signal: 'SIGKILL' }).catch(() => undefined);
        return;
      }
    }
  }

  /**
   * Waits for the container to exit and reads its exit state. While the engine does not answer
   * (its API service died and is being restarted) it keeps asking: the container runs on.
   */
  private async waitExit(
    container: Docker.Container,
    signal: AbortSignal,
    started: boolean,
  ): Promise<{ exitCode: number | null; oomFlag: boolean; finishedAt: Date | null } | 'vanished' | 'detached'> {
    let failures = 0;
    while (!signal.aborted) {
      const recorded = this.exits?.read(container.id);
      if (recorded) return { exitCode: recorded.exitCode, oomFlag: false, finishedAt: recorded.finishedAt };
      // With conmon's exit directory watched, the exit file is awaited without asking the engine;
      // its state is read only when none came within a slice (a container that vanished, or whose
      // conmon died before writing one).
      if (this.exits && started && failures === 0 && (await this.exitFile(container.id, signal))) continue;
      try {
        const info = await container.inspect({ abortSignal: signal } as object);
        // Podman passes through "stopping" (Running false, ExitCode still 0) before "exited".
        if (!info.State.Running && (info.State.Status === 'created' || info.State.Status === 'configured')) {
          return { exitCode: null, oomFlag: false, finishedAt: null }; // never ran
        }
        if (!info.State.Running && FINAL_STATES.has(info.State.Status)) {
          const finished = info.State.FinishedAt ? new Date(info.State.FinishedAt) : null;
          return {
            exitCode: info.State.ExitCode,
            oomFlag: info.State.OOMKilled,
            finishedAt: finished && finished.getFullYear() > 1 ? finished : null,
          };
        }
        if (info.State.Running) {
          started = true;
          if (!this.exits) await this.waitBriefly(container, signal);
        } else await sleep(50);
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if ((err as HttpError).statusCode === 404) return 'vanished';
        failures += 1;
        if (!isUnavailable(err) && failures > 20) {
          this.log.warn({ containerId: container.id, err: describe(err) }, 'exit state unreadable');
          return { exitCode: null, oomFlag: false, finishedAt: null };
        }
        await sleep(isUnavailable(err) ? 500 : 100);
      }
    }
    return 'detached';
  }

  /**
   * Resolves true once conmon wrote the container's exit file, false after WAIT_SLICE_MS or on
   * `signal` without one.
   */
  private exitFile(id: string, signal: AbortSignal): Promise<boolean> {
    const exits = this.exits!;
    return new Promise<boolean>((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), WAIT_SLICE_MS);
      const unsubscribe = exits.subscribe(id, () => {
        if (exits.read(id)) done(true);
      });
      signal.addEventListener('abort', onAbort, { once: true });
      // Written before the subscription: no event will come for it.
      if (exits.read(id)) done(true);
    });
  }

  /**
   * The engine's wait, given up after WAIT_SLICE_MS (then the state is read again): a wait whose
   * connection died with the API service may otherwise never settle.
   */
  private async waitBriefly(container: Docker.Container, signal: AbortSignal): Promise<void> {
    const slice = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let onAbort = () => undefined as void;
    // A request aborted through its signal does not always settle: race it instead.
    let unsubscribe = () => undefined as void;
    const over = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, WAIT_SLICE_MS);
      onAbort = () => resolve();
      signal.addEventListener('abort', onAbort, { once: true });
      // conmon's exit file: the exit is known before the engine's own wait notices it.
      if (this.exits) unsubscribe = this.exits.subscribe(container.id, () => resolve());
    });
    try {
      // Written between the caller's look and the subscription: no event will come.
      if (!this.exits?.read(container.id)) await Promise.race([this.libpodWait(container.id, slice.signal), over]);
    } finally {
      clearTimeout(timer);
      unsubscribe();
      signal.removeEventListener('abort', onAbort);
      slice.abort();
    }
  }

  /**
   * Podman's own wait, which checks every WAIT_INTERVAL (its Docker-compatible wait busy-polls a
   * core for as long as it waits).
   */
  private libpodWait(id: string, signal: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        {
          path: `/v4.0.0/libpod/containers/${id}/wait?`,
          method: 'POST',
          abortSignal: signal,
          options: { _query: { condition: ['stopped', 'exited'], interval: WAIT_INTERVAL } },
          statusCodes: { 200: true, 400: 'bad parameter', 404: 'no such container', 500: 'server error' },
        },
        (err: unknown, data: unknown) => (err ? reject(err) : resolve(data)),
      );
    });
  }

  /** Attach to stdin only (the output comes from the engine's log). */
  private attachStdin(id: string): Promise<Socket> {
    return rawAttach(this.docker, id, { stdin: true, stdout: false, stderr: false });
  }

  async listOurs(): Promise<OwnContainer[]> {
    let list: Docker.ContainerInfo[];
    try {
      list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_SERVER}=${this.settings.serverId}`] } });
    } catch (err) {
      throw new EngineError(`list failed: ${describe(err)}`, isUnavailable(err));
    }
    return list.map((c) => {
      const uid = Number(c.Labels?.[LABEL_HOST_UID] ?? NaN);
      return {
        containerId: c.Id,
        taskId: c.Labels?.[LABEL_TASK] ?? '',
        running: c.State === 'running',
        slot: c.Labels?.[LABEL_SLOT] || null,
        hostUid: Number.isSafeInteger(uid) ? uid : null,
      };
    });
  }

  async remove(id: string): Promise<void> {
    try {
      await removeContainer(this.docker, id);
    } catch (err) {
      this.log.warn({ containerId: id, err: describe(err) }, 'remove failed');
    }
  }
}
