import { createHash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { EgressDecision } from '../egress/decisions.js';
import type { WorkspaceRecord } from '../store/sqlite.js';
import type { TaskTransition } from '../tasks/lifecycle.js';
import type { TaskRecord } from '../tasks/model.js';
import type { AuditLog } from './log.js';
import { canonicalJson, type AuditEntry } from './record.js';

/** The seams the audit log and the metrics are fed from. */
export interface ObservedSources {
  /** TaskLifecycle: every status transition of every task. */
  lifecycle: EventEmitter<{ transition: [TaskTransition] }>;
  /** The egress proxy's decisions (ObservedDecisions). */
  decisions: EventEmitter<{ decision: [taskId: string, decision: Readonly<EgressDecision>] }>;
  /** Workspaces: records created and removed. */
  workspaces: EventEmitter<{ created: [Readonly<WorkspaceRecord>]; deleted: [Readonly<WorkspaceRecord>, 'request' | 'expired'] }>;
  /** A task's record by id (who an egress decision belongs to). */
  taskOf(id: string): Readonly<TaskRecord> | null;
}

/** A request answered 401: who tried, and what. */
export interface AuthFailure {
  clientAddress: string;
  method: string;
  /** The path without its query string. */
  path: string;
}

/** The audit entry of a task transition: submitted (→ queued), started (→ running), finished. */
export function taskEntry({ task, from, to }: TaskTransition): AuditEntry {
  const who = { tenant: task.tenant, keyId: task.keyId, taskId: task.id };
  if (from === null && to === 'queued') {
    return {
      event: 'task.submitted',
      ...who,
      command: task.command,
      setup: task.setup,
      image: task.image.name,
      workspaceId: task.workspaceId,
      workspaceReadonly: task.workspaceReadonly,
      limits: { ...task.resources, timeoutSeconds: task.timeoutSeconds },
      allowlist: [...task.network.allow],
      unrestricted: task.network.unrestricted,
      stdin: task.stdin,
      // Names only: environment values may be secrets.
      envNames: Object.keys(task.env).sort(),
      secretEnvNames: [...(task.secretEnvKeys ?? [])],
    };
  }
  if (to === 'running') return { event: 'task.started', ...who, image: task.image.name, workspaceId: task.workspaceId };
  if (to === 'queued') return { event: 'task.requeued', ...who, from };
  return {
    event: 'task.finished',
    ...who,
    status: to,
    reason: task.reason,
    exitCode: task.exitCode,
    durationMs: task.durationMs,
    oomKills: task.oomKills,
    stdoutBytes: task.output.stdoutBytes,
    stderrBytes: task.output.stderrBytes,
  };
}

/** The start-up record: a hash of the whole effective configuration and a summary without secrets. */
export function configEntry(config: Readonly<Config>, serverId: string): AuditEntry {
  return {
    event: 'config.loaded',
    tenant: null,
    keyId: null,
    serverId,
    configSha256: createHash('sha256').update(canonicalJson(config), 'utf8').digest('hex'),
    listen: { host: config.listen.host, port: config.listen.port },
    dataDir: config.dataDir,
    apiKeys: config.auth.keys.map((k) => ({ id: k.id, tenant: k.tenant, role: k.role })),
    concurrency: config.queue.concurrency,
    maxQueued: config.queue.maxQueued,
    egressDefaultAllow: [...config.egress.defaultAllow],
    upstreamProxy: config.egress.upstreamProxy !== null,
  };
}

/**
 * Writes the audit log from the seams: task transitions, egress decisions, workspace records,
 * 401 answers and start-up. A record that cannot be written is logged as an error; the request
 * or task it describes goes on.
 */
export class AuditRecorder {
  constructor(
    readonly log: AuditLog,
    private readonly logger: Logger,
  ) {}

  get path(): string {
    return this.log.path;
  }

  record(entry: AuditEntry): void {
    try {
      this.log.append(entry);
    } catch (err) {
      this.logger.error({ err, event: entry.event, audit: this.log.path }, 'audit record could not be written');
    }
  }

  attach(s: ObservedSources): void {
    s.lifecycle.on('transition', (t) => this.record(taskEntry(t)));
    s.decisions.on('decision', (taskId, d) => {
      const task = s.taskOf(taskId);
      this.record({
        event: 'egress.decision',
        tenant: task?.tenant ?? null,
        keyId: task?.keyId ?? null,
        taskId,
        host: d.host,
        port: d.port,
        allowed: d.allowed,
        reason: d.reason,
        address: d.address,
      });
    });
    s.workspaces.on('created', (w) => this.record({ event: 'workspace.created', ...workspaceWho(w), files: w.files, bytes: w.bytes, ephemeral: w.ephemeral }));
    s.workspaces.on('deleted', (w, cause) => this.record({ event: 'workspace.deleted', ...workspaceWho(w), cause }));
  }

  authFailed(f: AuthFailure): void {
    this.record({ event: 'auth.failed', tenant: null, keyId: null, clientAddress: f.clientAddress, method: f.method, path: f.path });
  }

  configLoaded(config: Readonly<Config>, serverId: string): void {
    this.record(configEntry(config, serverId));
  }
}

function workspaceWho(w: Readonly<WorkspaceRecord>) {
  // A record carries the key that made it once workspaces record one.
  const keyId = (w as { keyId?: string | null }).keyId ?? null;
  return { tenant: w.tenant, keyId, workspaceId: w.id };
}
