import { mkdirSync, chownSync } from 'node:fs';
import { release } from 'node:os';
import type { Logger } from 'pino';
import type { Config, ImagesConfig, Isolation } from './config/schema.js';
import { imageTable } from './detection/detect.js';
import type { ContainerEngine } from './runtime/engine.js';
import { runtimeReport, type RuntimeReport } from './runtime/versions.js';
import { IsolationAvailability } from './tasks/isolation.js';
import { SANDBOX_UID } from './workspace/workspaces.js';

export interface ReadinessReport {
  ready: boolean;
  engine: { reachable: boolean; canStartContainer: boolean; error: string | null; checkedAt: string | null };
  images: { name: string; present: boolean; required: boolean; build: string }[];
  runtime: RuntimeReport;
  /** Each allowed isolation: whether it can start a hardened container (only the default's decides `ready`). */
  isolation: IsolationReport[];
  /** Kubernetes only: the NetworkPolicy self-test. */
  networkPolicy?: NetworkPolicyReport;
}

export interface NetworkPolicyReport {
  check: 'canary' | 'trust';
  enforced: boolean | null;
  error: string | null;
  checkedAt: string | null;
}

export interface IsolationReport {
  name: Isolation;
  default: boolean;
  canStartContainer: boolean;
  error: string | null;
  checkedAt: string | null;
}

interface Probe {
  ok: boolean;
  error: string | null;
  at: number;
}

/**
 * The images /readyz needs: `images.requiredForReady`, or else the default images: the default
 * language's image, the multi image and the images of the languages it carries (with the
 * built-in table: python, node and multi). Every other configured image is optional.
 */
export function requiredImages(images: Readonly<ImagesConfig>): string[] {
  if (images.requiredForReady) return [...images.requiredForReady];
  const names = [images.languages[images.default]!.image];
  if (images.multi) {
    for (const lang of images.multi.languages) names.push(images.languages[lang]!.image);
    names.push(images.multi.image);
  }
  return [...new Set(names)];
}

/** How soon a failed container probe is tried again. */
const FAILED_PROBE_RETRY_MS = 5_000;

/**
 * Ready means: the engine answers, it has been seen to start a hardened container (the same spec
 * tasks get) with the default isolation, and the required images are present. Every other allowed
 * isolation is probed too and listed; one that cannot start the container is marked unusable (its
 * tasks are refused) but does not make the server unready. Probes are cached for `probeTtlMs`.
 */
export class Readiness {
  private readonly probes = new Map<Isolation, Probe>();
  /** Versions do not change while the engine runs: asked once, again only after a failed ask. */
  private runtime: RuntimeReport | null = null;
  /** Set on a Kubernetes server by its NetworkPolicy self-test. */
  networkPolicy: NetworkPolicyReport | null = null;

  constructor(
    private readonly config: Readonly<Config>,
    private readonly engine: ContainerEngine,
    private readonly probeDir: string,
    private readonly log: Logger,
    private readonly probeTtlMs = 30_000,
    private readonly failedProbeRetryMs = FAILED_PROBE_RETRY_MS,
    private readonly isolations = new IsolationAvailability(),
  ) {}

  requiredImages(): string[] {
    return requiredImages(this.config.images);
  }

  probeImage(): string {
    return this.config.engine.readinessImage ?? this.requiredImages()[0]!;
  }

  /** Starts `id -u` in a hardened container of this isolation and checks it prints 65532. */
  async probeContainer(isolation: Isolation = this.config.engine.isolation): Promise<void> {
    mkdirSync(this.probeDir, { recursive: true, mode: 0o755 });
    chownSync(this.probeDir, SANDBOX_UID, SANDBOX_UID);
    let out = '';
    const sandbox = await this.engine.start(
      { image: this.probeImage(), cpus: Math.min(1, this.config.maxima.cpus), memoryMb: 64, pids: 16, isolation },
      {
        taskId: `readiness-probe-${isolation}`,
        command: 'id -u',
        env: {},
        workspaceDir: this.probeDir,
        workspaceReadonly: true,
        stdin: false,
        backstopSeconds: 60,
      },
      { onOutput: (_s, d) => (out += d.toString()) },
    );
    const exit = await sandbox.exit;
    if (exit.exitCode !== 0 || out.trim() !== '65532') {
      throw new Error(`probe container exited ${exit.exitCode} printing ${JSON.stringify(out.slice(0, 200))}`);
    }
  }

  /** Podman, runc, runsc and kernel versions, and warnings about them (a runc without the CVE fixes). */
  async runtimeVersions(): Promise<RuntimeReport> {
    if (this.runtime) return this.runtime;
    try {
      this.runtime = runtimeReport(await this.engine.versions(), release());
      return this.runtime;
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'runtime versions unavailable');
      return runtimeReport(null, release());
    }
  }

  async check(force = false): Promise<ReadinessReport> {
    let reachable = true;
    let error: string | null = null;
    try {
      await this.engine.ping();
    } catch (err) {
      reachable = false;
      error = (err as Error).message;
    }
    const required = new Set(this.requiredImages());
    // The configured table, plus required or probe images that are not in it.
    const builds = new Map([...imageTable(this.config.images)].map(([name, { build }]) => [name, build]));
    for (const name of [...required, this.probeImage()]) if (!builds.has(name)) builds.set(name, '');
    const images: ReadinessReport['images'] = [];
    for (const [name, build] of builds) {
      const present = reachable ? await this.engine.imagePresent(name).catch(() => false) : false;
      images.push({ name, present, required: required.has(name), build });
    }
    const probeImagePresent = images.some((i) => i.name === this.probeImage() && i.present);
    const isolation: IsolationReport[] = [];
    for (const name of this.config.engine.allowedIsolation) {
      isolation.push(await this.checkIsolation(name, reachable, probeImagePresent, force));
    }
    const own = isolation.find((i) => i.default)!;
    const canStart = own.canStartContainer;
    const lastProbe = this.probes.get(own.name);
    error ??= !probeImagePresent ? `image ${this.probeImage()} is missing` : canStart ? null : own.error;
    return {
      ready: canStart && images.every((i) => !i.required || i.present),
      engine: {
        reachable,
        canStartContainer: canStart,
        error,
        checkedAt: lastProbe ? new Date(lastProbe.at).toISOString() : null,
      },
      images,
      runtime: reachable ? await this.runtimeVersions() : runtimeReport(null, release()),
      isolation,
      ...(this.networkPolicy ? { networkPolicy: { ...this.networkPolicy } } : {}),
    };
  }

  /**
   * One isolation's probe (cached). An isolation already found unusable at start-up (no runsc, no
   * service) is not probed; a failed probe makes it unusable for tasks, a passing one usable again.
   */
  private async checkIsolation(name: Isolation, reachable: boolean, probeImagePresent: boolean, force: boolean): Promise<IsolationReport> {
    const isDefault = name === this.config.engine.isolation;
    const setUp = this.isolations.get(name);
    if (setUp.usable || this.probes.has(name)) {
      const last = this.probes.get(name);
      // A failed probe is retried after a few seconds, not the whole TTL: readiness comes back by itself.
      const ttl = last?.ok === false ? Math.min(this.probeTtlMs, this.failedProbeRetryMs) : this.probeTtlMs;
      if (reachable && probeImagePresent && (force || !last || Date.now() - last.at > ttl)) {
        let probe: Probe;
        try {
          await this.probeContainer(name);
          probe = { ok: true, error: null, at: Date.now() };
        } catch (err) {
          probe = { ok: false, error: (err as Error).message, at: Date.now() };
          this.log.warn({ isolation: name, err: probe.error }, 'readiness probe container failed');
        }
        this.probes.set(name, probe);
        if (name !== 'runc') this.isolations.set(name, { usable: probe.ok, reason: probe.ok ? null : `the ${name} probe container failed: ${probe.error}` });
      }
    }
    const probe = this.probes.get(name);
    const canStart = reachable && probeImagePresent && (probe?.ok ?? false);
    const error = !reachable ? 'engine unreachable' : !probeImagePresent ? `image ${this.probeImage()} is missing` : canStart ? null : (probe?.error ?? setUp.reason);
    return { name, default: isDefault, canStartContainer: canStart, error, checkedAt: probe ? new Date(probe.at).toISOString() : null };
  }
}
