import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { AuditLog } from './audit/log.js';
import { AuditRecorder } from './audit/recorder.js';
import { CombinedKeys } from './auth/directory.js';
import { KeyStore } from './auth/key-store.js';
import { ConfigKeys, type KeyDirectory } from './auth/keys.js';
import type { Config } from './config/schema.js';
import { buildRangeList, createResolver } from './egress/addresses.js';
import { ObservedDecisions } from './egress/observed.js';
import { listenAddress } from './egress/listen-address.js';
import { EgressProxy } from './egress/proxy.js';
import { loadUpstreamProxy, type UpstreamProxy } from './egress/upstream.js';
import { Metrics } from './metrics/metrics.js';
import { fromInstall } from './paths.js';
import { IMAGE_RECORD_FILE, readImageRecord, withImageRecord } from './detection/record.js';
import { Readiness } from './readiness.js';
import type { ContainerEngine } from './runtime/engine.js';
import { writeSandboxHosts } from './runtime/hosts.js';
import { HostUidPool } from './runtime/host-uids.js';
import { ownSigpendingLimit, raiseKernelLimits, requiredKernelLimits, taskSigpending } from './runtime/kernel-limits.js';
import { KernelLogOomProbe } from './runtime/oom.js';
import { PodmanEngine } from './runtime/podman.js';
import { runCanary } from './runtime/kubernetes/canary.js';
import { KubernetesEngine, type KubernetesSettings } from './runtime/kubernetes/engine.js';
import { setUpGvisor, type GvisorService } from './runtime/gvisor.js';
import { PooledEngine } from './pool/engine.js';
import { SlotMounts } from './pool/mounts.js';
import { WarmPool, type PoolShape } from './pool/pool.js';
import { chooseSocket, OwnedPodmanService, waitForSocket } from './runtime/service.js';
import { DATABASE_FILE, SqliteStore } from './store/sqlite.js';
import { IsolationAvailability } from './tasks/isolation.js';
import { TaskManager } from './tasks/manager.js';
import { SqliteTaskStore } from './tasks/sqlite-store.js';
import { SecretVault } from './tasks/vault.js';
import { StdinFifos } from './runtime/stdin-fifo.js';
import { SecretFiles } from './runtime/secret-file.js';
import { buildCaBundle } from './trust/ca-bundle.js';
import { RetentionSweeper } from './tasks/retention.js';
import { WorkspaceSweeper } from './workspace/lifecycle.js';
import { tenantLimits } from './tenants/limits.js';
import { buildCHelper, buildIdmapHelper } from './workspace/idmap.js';
import { hostCommands } from './workspace/host-commands.js';
import { Workspaces } from './workspace/workspaces.js';

export interface Services {
  config: Readonly<Config>;
  serverId: string;
  socketPath: string;
  engine: PooledEngine;
  store: SqliteStore;
  /** The task records (a table of the same database). */
  tasks: SqliteTaskStore;
  /** API keys: the configuration's, then the database's (looked up on every request). */
  keys: KeyDirectory;
  workspaces: Workspaces;
  /** Where intake spools zip uploads and clones git repositories (<dataDir>/tmp). */
  intakeTmpDir: string;
  /** The CA bundle tasks and git intake trust (tasks.caBundle plus the public CAs), or null. */
  caBundlePath: string | null;
  /** The operator's upstream proxy (egress.upstreamProxy), or null. */
  upstreamProxy: UpstreamProxy | null;
  manager: TaskManager;
  /** Pre-started sandboxes (pool.size, pool.shapes). */
  pool: WarmPool;
  readiness: Readiness;
  /** The audit log, fed from the task lifecycle, egress decisions and workspaces (and 401s by the app). */
  audit: AuditRecorder;
  /** The Prometheus metrics, fed from the same seams. */
  metrics: Metrics;
  /**
   * First half of a shutdown: new work is refused (503 SHUTTING_DOWN), running tasks are left
   * running (shutdown.leaveRunning) or stopped, and task logs are released so streams end.
   */
  drain(): Promise<void>;
  close(): Promise<void>;
}

export interface ServiceOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Extra labels on every container (the test suite marks its own). */
  extraLabels?: Record<string, string>;
}

/**
 * Wires the server's parts from a config: data directory, SQLite store, engine (an owned Podman
 * API service when no socket is given), workspaces, task manager. Each step is logged.
 */
export async function startServices(config: Readonly<Config>, log: Logger, opts: ServiceOptions = {}): Promise<Services> {
  // What start-up has created so far, undone in reverse if a later step fails.
  const undo: (() => unknown)[] = [];
  try {
    return await assemble(config, log, opts, undo);
  } catch (err) {
    for (const step of undo.reverse()) await step();
    throw err;
  }
}

async function assemble(config: Readonly<Config>, log: Logger, opts: ServiceOptions, undo: (() => unknown)[]): Promise<Services> {
  const env = opts.env ?? process.env;
  const dataDir = resolve(opts.cwd ?? process.cwd(), config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  log.info({ dataDir }, 'data directory ready');
  // Mounts and unmounts through the compiled host helper (system calls, no mount(8) per call).
  try {
    hostCommands.use(await buildCHelper(fromInstall('deploy/host-helper/host_helper.c'), [fromInstall('.build'), join(dataDir, 'bin')], 'host-helper'));
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'the host helper cannot be built (a C compiler is needed: apt-get install gcc libc6-dev): host commands go through bash and mount(8)');
  }
  // The tags this machine's image build really produced (scripts/setup.sh records them), on top
  // of the built-in image table: every part below sees the same effective table.
  const imageRecord = readImageRecord(dataDir);
  if (imageRecord.error) log.warn({ error: imageRecord.error }, 'image record ignored');
  else if (imageRecord.record) log.info({ mode: imageRecord.record.mode }, `image record ${IMAGE_RECORD_FILE} applied`);
  config = withImageRecord(config, imageRecord.record);

  const store = new SqliteStore(join(dataDir, DATABASE_FILE));
  undo.push(() => store.close());
  const tasks = new SqliteTaskStore(store);
  // The key table of the same database, which `sandboxshift keys` changes from its own process.
  const keys = new CombinedKeys(new ConfigKeys(config.auth.keys), KeyStore.on(store.database));
  const serverId = store.meta('serverId', () => `srv_${randomBytes(8).toString('hex')}`);
  log.info({ serverId }, 'database open');
  const audit = new AuditRecorder(AuditLog.forConfig(config, opts.cwd ?? process.cwd()), log);
  audit.configLoaded(config, serverId);
  log.info({ audit: audit.path }, 'audit log open');

  // On Kubernetes there is no Podman at all: no API service, no gVisor service, no pool.
  const onKube = config.engine.kind === 'kubernetes';
  const choice = onKube ? { source: 'none' as const, socketPath: '' } : chooseSocket(config.engine.socket, env, join(dataDir, 'podman', 'podman.sock'));
  let owned: OwnedPodmanService | null = null;
  if (onKube) {
    log.info({ namespace: config.engine.kubernetes.namespace, kubeconfig: config.engine.kubernetes.kubeconfig ?? 'in-cluster' }, 'engine: Kubernetes');
  } else if (choice.source === 'owned') {
    owned = new OwnedPodmanService(
      {
        podmanBinary: config.engine.podmanBinary,
        runtime: 'runc',
        socketPath: choice.socketPath,
        containersConf: fromInstall('deploy/containers.conf'),
        timeoutMs: config.engine.startTimeoutSeconds * 1000,
      },
      log,
    );
    await owned.start();
    undo.push(() => owned?.stop());
  } else {
    log.info({ socket: choice.socketPath, source: choice.source }, 'using existing Podman API socket');
    await waitForSocket(choice.socketPath, config.engine.startTimeoutSeconds * 1000);
  }
  if (!onKube) log.info({ socket: choice.socketPath }, 'engine answers');
  // gVisor, when the operator allows it: a Podman API service that creates its containers.
  const isolations = new IsolationAvailability();
  let gvisor: GvisorService | null = null;
  if (!onKube && config.engine.allowedIsolation.includes('gvisor')) {
    gvisor = await setUpGvisor(
      {
        configured: config.engine.gvisorSocket,
        podmanBinary: config.engine.podmanBinary,
        ownedPath: join(dataDir, 'podman', 'gvisor.sock'),
        containersConf: fromInstall('deploy/containers.conf'),
        timeoutMs: config.engine.startTimeoutSeconds * 1000,
      },
      log,
    );
    const owned = gvisor.owned;
    if (owned) undo.push(() => owned.stop());
    isolations.set('gvisor', { usable: gvisor.missing === null, reason: gvisor.missing });
    if (gvisor.missing) log.warn({ reason: gvisor.missing }, 'gVisor isolation is allowed but unusable: tasks asking for it get 503 ISOLATION_UNAVAILABLE');
    else log.info({ socket: gvisor.socketPath }, 'gVisor isolation ready (containers created through its own Podman API service)');
  }

  // Operator CAs (tasks.caBundle): checked and combined with the public CAs before any task runs.
  let caBundlePath: string | null = null;
  if (config.tasks.caBundle) {
    const bundle = buildCaBundle(resolve(opts.cwd ?? process.cwd(), config.tasks.caBundle), config.tasks.publicCaFile, join(dataDir, 'trust'));
    caBundlePath = bundle.path;
    log.info({ ...bundle, file: config.tasks.caBundle }, 'CA bundle for tasks built');
  }

  // Kernel limits and host UIDs are this host's: a Kubernetes task runs on a node.
  if (!onKube) {
    raiseKernelLimits(
      requiredKernelLimits({
        concurrency: config.queue.concurrency,
        maxPids: config.maxima.pids,
        nofile: config.sandbox.nofile,
        maxMemoryMb: config.maxima.memoryMb,
      }),
      log,
    );
  }
  // Per-task host UIDs: a user namespace per task, its workspace seen through an idmapped view.
  const uns = config.sandbox.userNamespaces;
  let idmapHelper: string | null = null;
  if (uns.enabled && !onKube) {
    try {
      // Kept beside the install (one build for every server run from it), else in the data directory.
      idmapHelper = await buildIdmapHelper(fromInstall('deploy/idmap-mount/idmap_mount.c'), [fromInstall('.build'), join(dataDir, 'bin')]);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'the idmapped-mount helper cannot be built (a C compiler is needed: apt-get install gcc libc6-dev): every task runs as host UID 65532');
    }
  }
  const uids = idmapHelper ? new HostUidPool(uns.firstHostUid, uns.slots) : null;
  const hostSigpending = ownSigpendingLimit();
  const sigpending = uids && hostSigpending ? taskSigpending(hostSigpending, config.queue.concurrency) : null;
  if (uids) log.info({ firstHostUid: uns.firstHostUid, slots: uns.slots, sigpending }, 'each runc task runs as a host UID of its own');
  // Secrets files for task containers live on a host tmpfs, per server (its tasks' only).
  const secretsDir = join(config.sandbox.secretsDir, serverId);
  // Stdin pipes of tasks whose image's relay reads them: per task, under the data directory.
  const stdinDir = join(dataDir, 'stdin');
  const kube = onKube ? new KubernetesEngine(kubernetesSettings(config, serverId, dataDir, opts), log) : null;
  if (kube) undo.push(() => kube.close());
  const podman: ContainerEngine & { idle(): Promise<void> } =
    kube ??
    PodmanEngine.forSocket(
      choice.socketPath,
      {
        serverId,
        seccompProfilePath: fromInstall(config.sandbox.seccompProfile),
        hostsFilePath: writeSandboxHosts(join(dataDir, 'sandbox')),
        tmpfsMb: config.sandbox.tmpfsMb,
        nofile: config.sandbox.nofile,
        nproc: config.sandbox.nproc,
        sigpending,
        logMaxBytes: config.sandbox.engineLogMb * 1024 * 1024,
        extraLabels: opts.extraLabels ?? {},
        caBundlePath,
        secretsDir,
        stdinDir,
      },
      new KernelLogOomProbe(),
      log,
      gvisor?.socketPath ?? null,
    );
  const workspaces = new Workspaces(
    join(dataDir, 'workspaces'),
    store,
    config.workspaces,
    undefined,
    (tenant) => tenantLimits(config, tenant).workspaceBytes,
    idmapHelper,
  );
  // Warm pool: pre-started sandboxes per shape, each with an empty workspace on its slot; the
  // task manager sees the pooled engine. With per-task host UIDs each member holds a UID slot of
  // its own (never one of the queue.concurrency slots cold tasks may need) and its task takes it.
  const slotMounts = new SlotMounts(join(dataDir, 'pool'));
  const pool = new WarmPool(podman, slotMounts, workspaces, onKube ? { ...poolSettings(config), shapes: [] } : poolSettings(config), log, uids, config.queue.concurrency);
  const engine = new PooledEngine(podman, pool, slotMounts, workspaces, join(dataDir, 'pool', 'claims'), RESERVED_MS, log, uids);
  // Egress proxy: per-task socket directories under the data directory.
  const upstreamProxy = config.egress.upstreamProxy ? loadUpstreamProxy(config.egress.upstreamProxy) : null;
  if (upstreamProxy) log.info({ host: upstreamProxy.host, port: upstreamProxy.port, credentials: upstreamProxy.authorization !== null }, 'egress goes through an upstream proxy');
  const decisions = new ObservedDecisions(store);
  const egress = new EgressProxy(
    join(dataDir, 'egress'),
    config.egress,
    createResolver(config.egress.testHosts),
    buildRangeList(config.egress.allowPrivateRanges),
    decisions,
    log,
    undefined,
    upstreamProxy,
  );
  // The TCP listener for tasks that reach the proxy over the network, with per-task credentials.
  const tcpListen = config.egress.tcp.listen === null ? null : listenAddress(config.egress.tcp.listen);
  if (tcpListen) {
    await egress.startTcp({ ...tcpListen, advertiseUrl: config.egress.tcp.advertiseUrl, keyFile: join(dataDir, 'egress-tcp.key'), maxPendingConnections: config.egress.tcp.maxPendingConnections });
    undo.push(() => egress.closeTcp());
  }
  const logsDir = join(dataDir, 'tasks');
  const vault = new SecretVault(join(dataDir, 'secrets'), join(dataDir, 'secrets.key'));
  const manager = new TaskManager(config, engine, tasks, workspaces, logsDir, log, undefined, egress, isolations, engine, vault, uids);
  // Audit and metrics hear every transition, decision and workspace change from here on.
  const sources = { lifecycle: manager.lifecycle, decisions, workspaces, taskOf: (id: string) => tasks.getTask(id) };
  audit.attach(sources);
  const metrics = new Metrics();
  metrics.attach(sources, () => manager.stats().queued);
  metrics.observePool(() => ({ ready: pool.stats().ready, handoffs: engine.handoffs, coldStarts: engine.missed }));
  // Recovery: containers of tasks recorded running are adopted with their workspace mount and
  // egress directory; containers, mounts and sockets that no such task owns are removed.
  const plan = manager.plan(await engine.listOurs());
  for (const c of plan.orphans) await engine.remove(c.containerId);
  log.info({ adopted: plan.adopt.size, removed: plan.orphans.length }, 'containers of this server: adopted and orphans removed');
  // Pre-started containers of an earlier run went with the orphans; their slots' mounts go now,
  // except those of pre-started containers running an adopted task.
  const adoptedContainers = new Set([...plan.adopt.values()].map((c) => c.containerId));
  engine.forgetClaims(adoptedContainers);
  const slotsUnmounted = await slotMounts.prepare(engine.slotsOf(adoptedContainers), pool.enabled);
  if (slotsUnmounted > 0) log.info({ unmounted: slotsUnmounted }, 'pool slots of an earlier run unmounted');
  undo.push(() => engine.close().then(() => podman.idle()));
  const adoptedTasks = [...plan.adopt.keys()].map((id) => tasks.getTask(id)!);
  // Workspaces are loop-mounted ext4 images: undo what a crashed server left mounted, except the
  // mounts of adopted tasks.
  log.info(await workspaces.start(new Set(adoptedTasks.map((t) => t.workspaceId))), 'workspace storage ready');
  undo.push(() => workspaces.close());
  // Intake spool files and git clone directories that a crash left in <dataDir>/tmp (only this
  // server uses it; rm never follows links).
  const intakeTmp = join(dataDir, 'tmp');
  const strays = existsSync(intakeTmp) ? readdirSync(intakeTmp) : [];
  for (const name of strays) rmSync(join(intakeTmp, name), { recursive: true, force: true });
  if (strays.length > 0) log.info({ removed: strays.length }, 'intake leftovers removed from the data directory');
  egress.prepare(new Set(adoptedTasks.map((t) => t.id)));
  new SecretFiles(secretsDir).sweep(new Set(adoptedTasks.map((t) => t.id)));
  new StdinFifos(stdinDir).sweep(new Set(adoptedTasks.map((t) => t.id)));
  manager.recover(plan);
  engine.startPool();
  owned?.onRestart(() => log.info('owned Podman API service restarted; running tasks continue'));
  const sweeper = new WorkspaceSweeper(workspaces, (id) => manager.workspaceBusy(id), config.workspaces, log);
  sweeper.start();
  // Finished tasks past retention.taskDays: record, log directory, egress decisions.
  const retention = new RetentionSweeper(tasks, logsDir, config.retention, log);
  retention.start();
  const readiness = new Readiness(config, engine, join(dataDir, 'probe'), log, undefined, undefined, isolations);
  if (kube) await checkNetworkPolicy(kube, config, readiness, log);
  let draining: Promise<Set<string>> | undefined;

  return {
    config,
    serverId,
    socketPath: choice.socketPath,
    engine,
    store,
    tasks,
    keys,
    workspaces,
    intakeTmpDir: intakeTmp,
    caBundlePath,
    upstreamProxy,
    manager,
    pool,
    readiness,
    audit,
    metrics,
    drain() {
      sweeper.stop();
      retention.stop();
      draining ??= manager.close();
      return draining.then(() => undefined);
    },
    async close() {
      sweeper.stop();
      retention.stop();
      draining ??= manager.close();
      const kept = await draining;
      await sweeper.idle();
      await retention.idle();
      // Idle pre-started sandboxes go; the slots of tasks left running stay mounted.
      await engine.close();
      await podman.idle();
      await kube?.close();
      await slotMounts.close(engine.heldSlots());
      await workspaces.close(kept);
      await egress.closeTcp();
      store.close();
      await gvisor?.owned?.stop();
      await owned?.stop();
    },
  };
}

/** The Kubernetes engine's settings from the config (workspaces stay on this server's storage and are streamed). */
function kubernetesSettings(config: Readonly<Config>, serverId: string, dataDir: string, opts: ServiceOptions): KubernetesSettings {
  const k = config.engine.kubernetes;
  return {
    serverId,
    namespace: k.namespace,
    kubeconfig: k.kubeconfig === null ? null : resolve(opts.cwd ?? process.cwd(), k.kubeconfig),
    runtimeClassName: k.runtimeClassName,
    hostUsers: k.hostUsers,
    ttlSecondsAfterFinished: k.ttlSecondsAfterFinished,
    tmpfsMb: config.sandbox.tmpfsMb,
    workspaceMb: config.workspaces.quotaMb,
    graceSeconds: Math.max(1, config.sandbox.stopGraceSeconds),
    startAllowanceSeconds: k.startAllowanceSeconds,
    images: k.images,
    extraLabels: kubeLabels(opts.extraLabels ?? {}),
    maxWorkspaceBytes: k.maxWorkspaceBytes,
    spoolDir: join(dataDir, 'kubernetes'),
    writeBack: { paths: config.workspaces, archive: config.workspaces.archive },
    podStartTimeoutMs: k.podStartTimeoutSeconds * 1000,
  };
}

/** Extra labels as Kubernetes label keys and values (anything else is left off). */
function kubeLabels(labels: Record<string, string>): Record<string, string> {
  const key = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
  const value = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
  return Object.fromEntries(Object.entries(labels).filter(([k, v]) => key.test(k) && value.test(v)));
}

/** The NetworkPolicy self-test (or the operator's word for it), recorded for admission and /readyz. */
async function checkNetworkPolicy(kube: KubernetesEngine, config: Readonly<Config>, readiness: Readiness, log: Logger): Promise<void> {
  const k = config.engine.kubernetes;
  if (k.networkPolicyCheck === 'trust') {
    log.warn('engine.kubernetes.networkPolicyCheck is trust: NetworkPolicy enforcement is not tested; the operator vouches for the network plugin');
    readiness.networkPolicy = { check: 'trust', enforced: null, error: null, checkedAt: null };
    return;
  }
  const image = k.canaryImage ?? config.images.languages[config.images.default]!.image;
  const result = await runCanary(kube, k.canaryTarget!, image, log);
  kube.setEgressRefusal(result.refusal);
  readiness.networkPolicy = { check: 'canary', enforced: result.enforced, error: result.refusal, checkedAt: result.checkedAt };
}

/** A pre-started sandbox reserved by a task that did not start within this time is given back. */
const RESERVED_MS = 60_000;

/** The pool's shapes: the default shape (default image and limits) with pool.size, then pool.shapes. */
function poolSettings(config: Readonly<Config>) {
  const shapes: PoolShape[] = [
    {
      image: config.images.languages[config.images.default]!.image,
      cpus: config.defaults.cpus,
      memoryMb: config.defaults.memoryMb,
      pids: config.defaults.pids,
      isolation: 'runc',
      size: config.pool.size,
    },
    ...config.pool.shapes.map((s) => ({ ...s, isolation: 'runc' as const })),
  ];
  return {
    shapes,
    maxIdleSeconds: config.pool.maxIdleSeconds,
    backstopSeconds: config.maxima.timeoutSeconds + config.sandbox.backstopSeconds + config.pool.maxIdleSeconds,
    retryMs: 5000,
  };
}
