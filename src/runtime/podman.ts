import type { Socket } from 'node:net';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import {
  EngineError,
  type ContainerEngine,
  type RunningSandbox,
  type SandboxExit,
  type SandboxHandlers,
  type SandboxRequest,
  type EngineVersions,
} from './engine.js';
import { debianChangelogCves, runscVersion } from './host-versions.js';
import { StreamDemuxer } from './demux.js';
import { LABEL_SERVER } from './labels.js';
import type { OomProbe } from './oom.js';
import { buildContainerSpec, type SandboxSettings } from './spec.js';

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

/** ContainerEngine over Podman's Docker-compatible API, through dockerode. */
export class PodmanEngine implements ContainerEngine {
  constructor(
    private readonly docker: Docker,
    private readonly settings: SandboxSettings,
    private readonly oom: OomProbe,
    private readonly log: Logger,
  ) {}

  static forSocket(socketPath: string, settings: SandboxSettings, oom: OomProbe, log: Logger): PodmanEngine {
    return new PodmanEngine(new Docker({ socketPath, timeout: 0 }), settings, oom, log);
  }

  async ping(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw new EngineError(`engine unreachable: ${describe(err)}`, true);
    }
  }

  async imagePresent(image: string): Promise<boolean> {
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

  async start(req: SandboxRequest, handlers: SandboxHandlers): Promise<RunningSandbox> {
    const spec = buildContainerSpec(req, this.settings);
    let container: Docker.Container;
    try {
      container = await this.docker.createContainer(spec);
    } catch (err) {
      throw new EngineError(`create failed: ${describe(err)}`, isUnavailable(err));
    }
    const id = container.id;
    let sock: Socket;
    try {
      // Attach before start: attaching runs `runc create`, so OCI errors surface here.
      sock = await this.attach(id, req.stdin);
    } catch (err) {
      await this.remove(id);
      throw new EngineError(`attach failed: ${describe(err)}`, isUnavailable(err));
    }
    const demux = new StreamDemuxer((stream, data) => handlers.onOutput(stream, data));
    const ended = new Promise<void>((resolve) => {
      sock.on('data', (chunk: Buffer) => demux.push(chunk));
      sock.once('close', () => resolve());
      sock.once('error', () => resolve());
    });
    try {
      await container.start();
    } catch (err) {
      sock.destroy();
      await this.remove(id);
      throw new EngineError(`start failed: ${describe(err)}`, isUnavailable(err));
    }
    if (!req.stdin) sock.end();
    let stdinOpen = req.stdin;
    let stopping: Promise<void> | null = null;
    const exit = ended.then(() => this.finish(container));
    return {
      containerId: id,
      exit,
      writeStdin: (data) => {
        if (!stdinOpen || sock.destroyed) return false;
        sock.write(data);
        return true;
      },
      endStdin: () => {
        if (!stdinOpen) return;
        stdinOpen = false;
        if (!sock.destroyed) sock.end(); // half-close: EOF for the task, output keeps flowing
      },
      stop: (graceSeconds) => {
        stopping ??= container.stop({ t: graceSeconds }).then(
          () => undefined,
          (err: HttpError) => {
            // 304: already stopped; 404: already gone. Anything else: force-kill the init.
            if (err.statusCode === 304 || err.statusCode === 404) return;
            this.log.warn({ containerId: id, err: describe(err) }, 'stop failed, sending SIGKILL');
            return container.kill({ signal: 'SIGKILL' }).then(
              () => undefined,
              () => undefined,
            );
          },
        );
        return stopping;
      },
    };
  }

  /** Raw hijacked attach that sends no body: docker-modem would otherwise write its options
   * JSON into the container's stdin. */
  private attach(id: string, stdin: boolean): Promise<Socket> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        {
          path: `/containers/${id}/attach?`,
          method: 'POST',
          options: { _query: { stream: true, stdout: true, stderr: true, stdin } },
          isStream: true,
          hijack: true,
          openStdin: false,
          file: Buffer.alloc(0),
          headers: { 'Content-Type': 'application/vnd.docker.raw-stream' },
          statusCodes: { 101: true, 200: true, 404: 'no such container', 409: 'container not running', 500: 'server error' },
        },
        (err: unknown, sock: unknown) => (err ? reject(err) : resolve(sock as Socket)),
      );
    });
  }

  /** After the attach stream ended: read the exit code, check for OOM, remove the container. */
  private async finish(container: Docker.Container): Promise<SandboxExit> {
    let exitCode: number | null = null;
    let oomFlag = false;
    try {
      for (let i = 0; i < 600; i++) {
        const info = await container.inspect();
        // Podman passes through "stopping" (Running false, ExitCode still 0) before "exited".
        if (FINAL_STATES.has(info.State.Status)) {
          exitCode = info.State.ExitCode;
          oomFlag = info.State.OOMKilled;
          break;
        }
        // The attach stream can close before the state is updated: poll briefly.
        await new Promise((r) => setTimeout(r, 50));
      }
    } catch (err) {
      this.log.warn({ containerId: container.id, err: describe(err) }, 'inspect after exit failed');
    }
    // Kills of any process in the container's memory cgroup, whatever the exit code: a child can
    // be killed while PID 1 goes on and exits 0.
    const oomKills = Math.max(oomFlag ? 1 : 0, this.oom.oomKills(container.id));
    await this.remove(container.id);
    return { exitCode, oomKills };
  }

  private async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      if ((err as HttpError).statusCode !== 404) this.log.warn({ containerId: id, err: describe(err) }, 'remove failed');
    }
  }

  async reapOrphans(): Promise<number> {
    const list = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL_SERVER}=${this.settings.serverId}`] },
    });
    for (const c of list) await this.remove(c.Id);
    return list.length;
  }
}
