// The fake kubelet: runs each pod's first container for real (see launcher.ts), reports
// Pending → Running → Succeeded/Failed with container states, enforces activeDeadlineSeconds,
// stops a deleted pod (SIGTERM to its main process, SIGKILL to its whole process group when the
// main process ends or the grace period does) and then removes the pod object. Output goes to the pod's log and to the attach sessions open at that moment.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { constants as osConstants } from 'node:os';
import { launch } from './launcher.js';
import { buildEnv, ConfigError, expand, identity, prepareVolumes } from './podconfig.js';
import { PodLog, type LogEdit, type StreamName } from './podlog.js';
import { matchesLabelSelector } from './selectors.js';
import type { Store, StoreEvent } from './store.js';
import { ContainerRun } from './container.js';

export interface KubeletOptions {
  baseDir: string;
  enforceNetworkPolicy: boolean;
  runAs?: { uid: number; gid: number };
  api: { host: string; port: number };
  /** The fault applied to what pods/log serves (see faults.editLog). */
  logEdit?: { fn: LogEdit | null };
}

const CONFIG_RETRY_MS = 200;

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

/** One pod's life on the node. */
class PodRuntime {
  run: ContainerRun | undefined;
  readonly log: PodLog;
  timers: NodeJS.Timeout[] = [];
  deadlineExceeded = false;
  stopping = false;
  /** The grace period of the delete being carried out. */
  grace = Infinity;
  gone = false;
  finished = false;
  constructor(readonly name: string, readonly uid: string, readonly dir: string, logEdit?: { fn: LogEdit | null }) {
    this.log = new PodLog(name, logEdit);
  }
}

export class Kubelet {
  private readonly pods = new Map<string, PodRuntime>();
  private closed = false;

  constructor(private readonly store: Store, private readonly opts: KubeletOptions) {
    store.subscribe((ev) => {
      if (ev.kind === 'pods') this.onPodEvent(ev);
    });
  }

  /** The container run of a pod (for attach), undefined before it started or after the pod went. */
  container(name: string): ContainerRun | undefined {
    return this.pods.get(name)?.run;
  }

  podLog(name: string): PodLog | undefined {
    return this.pods.get(name)?.log;
  }

  /** True while the pod has processes the kubelet must stop before the pod object can go. */
  isLive(name: string): boolean {
    const rt = this.pods.get(name);
    return rt !== undefined && rt.run !== undefined && !rt.run.exited;
  }

  /** For a process that exits without close(): SIGKILL every pod's group, synchronously. */
  killAllNow(): void {
    for (const rt of this.pods.values()) rt.run?.kill('SIGKILL');
  }

  async close(): Promise<void> {
    this.closed = true;
    const waits: Array<Promise<void>> = [];
    for (const rt of this.pods.values()) {
      for (const t of rt.timers) clearTimeout(t);
      if (rt.run) {
        rt.run.kill('SIGKILL');
        waits.push(rt.run.closed);
      }
    }
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 3000))]);
    for (const rt of this.pods.values()) rmSync(rt.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    this.pods.clear();
  }

  private onPodEvent(ev: StoreEvent): void {
    const pod = ev.object;
    const name = pod.metadata.name as string;
    let rt = this.pods.get(name);
    if (rt && rt.uid !== pod.metadata.uid) rt = undefined;
    if (ev.type === 'ADDED' && !rt && !this.closed) {
      const created = new PodRuntime(name, pod.metadata.uid, join(this.opts.baseDir, 'pods', pod.metadata.uid), this.opts.logEdit);
      this.pods.set(name, created);
      setImmediate(() => this.schedule(created));
      return;
    }
    if (!rt) return;
    if (ev.type === 'DELETED') {
      rt.gone = true;
      for (const t of rt.timers) clearTimeout(t);
      if (rt.run && !rt.run.exited) rt.run.kill('SIGKILL');
      const cleanup = (): void => {
        if (this.pods.get(name) === rt) this.pods.delete(name);
        rmSync(rt!.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
      };
      if (rt.run) void rt.run.closed.then(cleanup);
      else cleanup();
      return;
    }
    const grace = pod.metadata.deletionGracePeriodSeconds;
    if (pod.metadata.deletionTimestamp && rt.stopping && rt.run && !rt.run.exited && typeof grace === 'number' && grace < rt.grace) {
      // a second delete with a shorter grace period shortens the wait, as on a real node
      rt.grace = grace;
      this.stop(rt, grace);
      return;
    }
    if (pod.metadata.deletionTimestamp && !rt.stopping) {
      rt.stopping = true;
      rt.grace = grace ?? 30;
      if (rt.run && !rt.run.exited) this.stop(rt, pod.metadata.deletionGracePeriodSeconds ?? 30);
      else if (rt.finished || !rt.run) this.removeSoon(rt);
    }
  }

  private removeSoon(rt: PodRuntime): void {
    setImmediate(() => {
      const pod = this.store.get('pods', rt.name);
      if (pod && pod.metadata.uid === rt.uid) this.store.remove('pods', rt.name);
    });
  }

  private update(rt: PodRuntime, mutate: (pod: any) => void): any | undefined {
    if (rt.gone || this.closed) return undefined;
    const pod = this.store.get('pods', rt.name);
    if (!pod || pod.metadata.uid !== rt.uid) return undefined;
    return this.store.update('pods', rt.name, mutate);
  }

  private schedule(rt: PodRuntime): void {
    const pod = this.update(rt, (p) => {
      p.spec.nodeName ??= 'fake-node';
      p.status = {
        ...p.status,
        phase: 'Pending',
        hostIP: '127.0.0.1',
        hostIPs: [{ ip: '127.0.0.1' }],
        podIP: '127.0.0.1',
        podIPs: [{ ip: '127.0.0.1' }],
        startTime: now(),
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: now() },
          { type: 'Initialized', status: 'True', lastTransitionTime: now() },
          { type: 'ContainersReady', status: 'False', reason: 'ContainersNotReady', lastTransitionTime: now() },
          { type: 'Ready', status: 'False', reason: 'ContainersNotReady', lastTransitionTime: now() },
        ],
        containerStatuses: p.spec.containers.map((c: any) => ({
          name: c.name,
          image: c.image,
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: { waiting: { reason: 'ContainerCreating' } },
          lastState: {},
        })),
      };
    });
    if (!pod) return;
    const deadline = pod.spec.activeDeadlineSeconds;
    if (typeof deadline === 'number' && deadline > 0) {
      rt.timers.push(setTimeout(() => this.deadline(rt), deadline * 1000));
    }
    this.tryStart(rt);
  }

  private deadline(rt: PodRuntime): void {
    if (rt.finished || rt.gone) return;
    rt.deadlineExceeded = true;
    if (rt.run && !rt.run.exited) {
      const pod = this.store.get('pods', rt.name);
      this.stop(rt, pod?.spec.terminationGracePeriodSeconds ?? 30);
      return;
    }
    rt.finished = true;
    this.update(rt, (p) => {
      p.status.phase = 'Failed';
      p.status.reason = 'DeadlineExceeded';
      p.status.message = 'Pod was active on the node longer than the specified deadline';
    });
  }

  private stop(rt: PodRuntime, grace: number): void {
    const run = rt.run;
    if (!run || run.exited) return;
    if (grace <= 0) {
      run.kill('SIGKILL');
      return;
    }
    // SIGTERM goes to the main process, as a runtime's stop does; the group goes with it when it exits.
    run.signalMain('SIGTERM');
    rt.timers.push(setTimeout(() => run.kill('SIGKILL'), grace * 1000));
  }

  private tryStart(rt: PodRuntime): void {
    if (rt.gone || rt.finished || rt.deadlineExceeded || this.closed) return;
    const pod = this.store.get('pods', rt.name);
    if (!pod || pod.metadata.uid !== rt.uid) return;
    if (pod.metadata.deletionTimestamp) {
      rt.stopping = true;
      this.removeSoon(rt);
      return;
    }
    const container = pod.spec.containers[0];
    let spec;
    try {
      const env = buildEnv(this.store, pod, container, this.opts.api);
      const id = identity(pod, container, this.opts.runAs);
      mkdirSync(join(rt.dir, 'root'), { recursive: true });
      const mounts = prepareVolumes(this.store, pod, container, rt.dir, id.fsGroup);
      const argv = [...(container.command ?? []), ...(container.args ?? [])].map((a: string) => expand(String(a), env));
      if (argv.length === 0) throw new ConfigError('the fake kubelet needs containers[0].command or args (it has no image entrypoint)');
      const drop: string[] = container.securityContext?.capabilities?.drop ?? [];
      spec = {
        rootDir: join(rt.dir, 'root'),
        isolateNetwork: this.isolated(pod),
        workingDir: container.workingDir ?? '/',
        uid: id.uid,
        gid: id.gid,
        groups: id.groups,
        dropAllCapabilities: drop.includes('ALL') || id.uid !== 0,
        noNewPrivileges: container.securityContext?.allowPrivilegeEscalation === false,
        mounts,
        argv,
        env,
        stdin: container.stdin === true,
      };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.update(rt, (p) => {
        p.status.containerStatuses[0].state = { waiting: { reason: 'CreateContainerConfigError', message: err.message } };
      });
      rt.timers.push(setTimeout(() => this.tryStart(rt), CONFIG_RETRY_MS));
      return;
    }
    const containerId = `containerd://${randomBytes(32).toString('hex')}`;
    const run = new ContainerRun(launch(spec), container.stdin === true, container.stdinOnce === true, (stream: StreamName, chunk: Buffer) => {
      rt.log.append(stream, chunk);
    });
    rt.run = run;
    run.started.then(
      () => this.running(rt, containerId),
      () => undefined,
    );
    void run.closed.then(() => this.finish(rt, containerId));
  }

  private isolated(pod: any): boolean {
    if (!this.opts.enforceNetworkPolicy) return false;
    return this.store
      .list('networkpolicies')
      .some((np) => (np.spec.policyTypes ?? []).includes('Egress') && matchesLabelSelector(np.spec.podSelector, pod.metadata.labels));
  }

  private running(rt: PodRuntime, containerId: string): void {
    if (rt.run?.exited) return;
    const startedAt = now();
    this.update(rt, (p) => {
      p.status.phase = 'Running';
      for (const c of p.status.conditions) {
        if (c.type === 'ContainersReady' || c.type === 'Ready') {
          c.status = 'True';
          delete c.reason;
          c.lastTransitionTime = startedAt;
        }
      }
      const cs = p.status.containerStatuses[0];
      cs.state = { running: { startedAt } };
      cs.ready = true;
      cs.started = true;
      cs.containerID = containerId;
      cs.imageID = `${cs.image}@sha256:${'0'.repeat(64)}`;
    });
  }

  private finish(rt: PodRuntime, containerId: string): void {
    rt.finished = true;
    for (const t of rt.timers) clearTimeout(t);
    rt.log.end();
    const run = rt.run!;
    const signal = run.signal ? osConstants.signals[run.signal as keyof typeof osConstants.signals] : undefined;
    const exitCode = run.spawnError ? 128 : (run.exitCode ?? 128 + (signal ?? 9));
    const finishedAt = now();
    const succeeded = exitCode === 0 && !rt.deadlineExceeded;
    this.update(rt, (p) => {
      p.status.phase = succeeded ? 'Succeeded' : 'Failed';
      if (rt.deadlineExceeded) {
        p.status.reason = 'DeadlineExceeded';
        p.status.message = 'Pod was active on the node longer than the specified deadline';
      }
      for (const c of p.status.conditions) {
        if (c.type === 'ContainersReady' || c.type === 'Ready') {
          c.status = 'False';
          c.reason = succeeded ? 'PodCompleted' : 'PodFailed';
          c.lastTransitionTime = finishedAt;
        }
      }
      const cs = p.status.containerStatuses[0];
      const startedAt = cs.state.running?.startedAt ?? finishedAt;
      cs.state = {
        terminated: {
          exitCode,
          reason: run.spawnError ? 'StartError' : exitCode === 0 ? 'Completed' : 'Error',
          ...(run.spawnError ? { message: run.spawnError.message } : {}),
          startedAt,
          finishedAt,
          containerID: containerId,
        },
      };
      cs.ready = false;
      cs.started = false;
      cs.containerID = containerId;
    });
    const pod = this.store.get('pods', rt.name);
    if (pod && pod.metadata.uid === rt.uid && pod.metadata.deletionTimestamp) this.removeSoon(rt);
  }
}
