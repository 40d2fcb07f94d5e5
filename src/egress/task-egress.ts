import type { Socket } from 'node:net';
import type { EgressDecision } from './decisions.js';
import type { Pattern } from './policy.js';

/** @internal One client connection of a task and the destination it is currently relayed to. */
export interface Conn {
  client: Socket;
  upstream: Socket | null;
  decisionId: number | null;
  decision: EgressDecision | null;
  up: number;
  down: number;
  done: boolean;
  /**
   * head: reading the request; connecting: resolving and connecting (own timeouts); hello: after
   * CONNECT, reading the client's first bytes (own timeout); tunnel: relaying.
   */
  phase: 'head' | 'connecting' | 'hello' | 'tunnel';
}

/** Why a request head's proxy credentials are refused (answered 407 with this reason and text). */
export interface CredentialRefusal {
  reason: 'proxy_auth_missing' | 'proxy_auth_malformed' | 'proxy_auth_refused';
  message: string;
}

/** What ends a task's connections: the proxy's per-connection state machine. */
export interface ConnectionOwner {
  end(task: TaskEgress, conn: Conn): void;
}

/**
 * One task's egress: its allowlist, its open connections, and how its clients reach the proxy (a
 * Unix socket of its own, or the shared TCP listener with the task's credentials).
 */
export abstract class TaskEgress {
  /** @internal */ readonly conns = new Set<Conn>();
  /** The proxy URL with the task's credentials (TCP tasks), or null (the task reaches its own socket). */
  abstract readonly proxyUrl: string | null;

  constructor(
    readonly taskId: string,
    readonly allow: readonly Pattern[],
    protected readonly owner: ConnectionOwner,
  ) {}

  get connections(): number {
    return this.conns.size;
  }

  /**
   * Null when a request head may be served for this task; otherwise why not. A socket task's
   * clients are identified by the socket itself; a TCP task's present its credentials in every
   * request head.
   */
  credentialRefusal(_headers: readonly (readonly [string, string])[]): CredentialRefusal | null {
    return null;
  }

  /** Ends every open connection (recording its bytes). */
  protected endAll(): void {
    for (const c of [...this.conns]) this.owner.end(this, c);
  }

  /** Stops serving the task and closes its connections; sync and idempotent. */
  abstract close(opts?: { keepDir?: boolean }): void;
}
