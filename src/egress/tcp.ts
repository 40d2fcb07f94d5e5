import { lookup } from 'node:dns/promises';
import { createServer, isIP, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { credentialUrl, deriveCredential, loadCredentialKey, presentedCredential, tokenMatches, type TaskCredential } from './credentials.js';
import type { Pattern } from './policy.js';
import type { EgressProxy, ProxySettings } from './proxy.js';
import { parseRequestHead } from './request-head.js';
import { reply, replyProxyAuth } from './sockets.js';
import { TaskEgress, type CredentialRefusal } from './task-egress.js';

export interface TcpOptions {
  /** Address to bind (an IP address; `0.0.0.0` or `::` for every interface). */
  host: string;
  /** Port to bind (0: any free port, for tests). */
  port: number;
  /**
   * The URL tasks use to reach the listener, `http://host:port`; null: the bound address. A host
   * name in it is resolved once, here (task pods have no DNS): their proxy URLs hold the address.
   */
  advertiseUrl: string | null;
  /** Resolves the advertised host name (default: the system resolver). */
  lookup?: (host: string) => Promise<string>;
  /** The credential key file (created 0600 when missing). */
  keyFile: string;
  /** Connections that have not yet presented a complete request head, at most (more: 503). */
  maxPendingConnections: number;
}

export interface TcpAddress {
  host: string;
  port: number;
  /** As configured (or the bound address). */
  advertiseUrl: string;
  /** What task proxy URLs are built on: advertiseUrl with its host resolved to an address. */
  proxyBase: string;
}

const systemLookup = async (host: string) => (await lookup(host)).address;

/** The stable texts of a 407: what clients and operators see in the body. */
export const REFUSALS: Readonly<Record<CredentialRefusal['reason'], string>> = {
  proxy_auth_missing: "this proxy needs the task's credentials (Proxy-Authorization: Basic, as in the task's HTTP_PROXY/HTTPS_PROXY URL)",
  proxy_auth_malformed: 'the Proxy-Authorization field is malformed',
  proxy_auth_refused: 'the proxy credentials are not those of a running task (wrong, or the task has ended)',
};

function refusal(fields: readonly (readonly [string, string])[]): { refusal: CredentialRefusal } | { user: string; token: string } {
  const p = presentedCredential(fields);
  if (p.kind === 'missing') return { refusal: { reason: 'proxy_auth_missing', message: REFUSALS.proxy_auth_missing } };
  if (p.kind === 'malformed') return { refusal: { reason: 'proxy_auth_malformed', message: `${REFUSALS.proxy_auth_malformed}: ${p.why}` } };
  return p;
}

/** `http://host:port` with a host name replaced by the address it resolves to. */
async function resolvedUrl(url: string, resolve: (host: string) => Promise<string>): Promise<string> {
  const u = new URL(url);
  const bare = u.hostname.replace(/^\[|\]$/g, '');
  if (isIP(bare)) return `http://${u.host}`;
  const address = await resolve(bare);
  const host = isIP(address) === 6 ? `[${address}]` : address;
  return `http://${host}:${u.port || '80'}`;
}

const REFUSED: CredentialRefusal = { reason: 'proxy_auth_refused', message: REFUSALS.proxy_auth_refused };

/** A task served on the TCP listener, identified by the credentials in its proxy URL. */
export class TcpTaskEgress extends TaskEgress {
  private closed = false;

  constructor(
    taskId: string,
    allow: readonly Pattern[],
    proxy: EgressProxy,
    /** @internal */ readonly credential: TaskCredential,
    readonly proxyUrl: string,
    private readonly listener: TcpListener,
  ) {
    super(taskId, allow, proxy);
  }

  override credentialRefusal(fields: readonly (readonly [string, string])[]): CredentialRefusal | null {
    const p = refusal(fields);
    if ('refusal' in p) return p.refusal;
    if (this.closed || p.user !== this.credential.user || !tokenMatches(this.credential.token, p.token)) return REFUSED;
    return null;
  }

  /** Revokes the credentials (later connections get 407) and ends the task's connections. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener.forget(this);
    this.endAll();
  }
}

/**
 * The egress proxy's TCP listener. A connection's first request head (bounded in size by
 * egress.maxHeaderBytes and in total time by egress.headerTimeoutSeconds) must carry the
 * credentials of a task the proxy serves; the connection then belongs to that task and goes
 * through the same per-connection state machine as a socket task's. Anything else is answered
 * (407, 400, 408, 431, 503) and closed.
 */
export class TcpListener {
  private readonly server: Server;
  /** Open tasks by credential user (lower-case task ids may coincide; tokens never do). */
  private readonly byUser = new Map<string, TcpTaskEgress[]>();
  private readonly pending = new Set<Socket>();
  private key: Buffer | null = null;
  private address: TcpAddress | null = null;
  private maxPending = 0;

  constructor(
    private readonly proxy: EgressProxy,
    private readonly settings: ProxySettings,
    private readonly log: Logger,
  ) {
    this.server = createServer({ allowHalfOpen: true }, (client) => this.accept(client));
  }

  async start(opts: TcpOptions): Promise<TcpAddress> {
    this.key = loadCredentialKey(opts.keyFile);
    this.maxPending = opts.maxPendingConnections;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: opts.host, port: opts.port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.server.on('error', (err) => this.log.error({ err }, 'egress TCP listener error'));
    const a = this.server.address() as AddressInfo;
    const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    const advertiseUrl = opts.advertiseUrl ?? `http://${shown}:${a.port}`;
    let proxyBase: string;
    try {
      proxyBase = await resolvedUrl(advertiseUrl, opts.lookup ?? systemLookup);
    } catch (err) {
      await new Promise((r) => this.server.close(r));
      throw new Error(`egress.tcp.advertiseUrl ${advertiseUrl}: its host does not resolve (${(err as Error).message})`);
    }
    this.address = { host: a.address, port: a.port, advertiseUrl, proxyBase };
    this.log.info(this.address, 'egress TCP listener ready');
    return this.address;
  }

  open(taskId: string, allow: readonly Pattern[]): TcpTaskEgress {
    if (!this.key || !this.address) throw new Error('the egress TCP listener is not started');
    // One registration per task: opening it again (a re-attach) replaces the earlier one.
    for (const t of this.byUser.get(taskId.toLowerCase()) ?? []) if (t.taskId === taskId) t.close();
    const credential = deriveCredential(this.key, taskId);
    const task = new TcpTaskEgress(taskId, allow, this.proxy, credential, credentialUrl(this.address.proxyBase, credential), this);
    this.byUser.set(credential.user, [...(this.byUser.get(credential.user) ?? []), task]);
    return task;
  }

  /** @internal called by TcpTaskEgress.close(). */
  forget(task: TcpTaskEgress): void {
    const rest = (this.byUser.get(task.credential.user) ?? []).filter((t) => t !== task);
    if (rest.length > 0) this.byUser.set(task.credential.user, rest);
    else this.byUser.delete(task.credential.user);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.pending) s.destroy();
    this.pending.clear();
    for (const list of [...this.byUser.values()]) for (const t of list) t.close();
    await closed;
  }

  private accept(client: Socket): void {
    client.on('error', () => undefined);
    const s = this.settings;
    if (this.pending.size >= this.maxPending) {
      this.log.warn({ limit: this.maxPending }, 'egress TCP listener: too many connections without a request head');
      return reply(client, 503, 'too_many_connections', `at most ${this.maxPending} connections may be waiting to send a request head (egress.tcp.maxPendingConnections)`);
    }
    this.pending.add(client);
    let buf = Buffer.alloc(0);
    const settle = () => {
      clearTimeout(timer);
      this.pending.delete(client);
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
    };
    // The whole head within the bound, however slowly it trickles in.
    const timer = setTimeout(() => {
      settle();
      reply(client, 408, 'header_timeout', `no complete request head within ${s.headerTimeoutSeconds} s`);
    }, s.headerTimeoutSeconds * 1000);
    const onEnd = () => {
      settle();
      client.destroy();
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const head = parseRequestHead(buf, s.maxHeaderBytes);
      if (head.kind === 'incomplete') return;
      settle();
      if (head.kind === 'error') return reply(client, head.status, 'bad_request', head.reason);
      const found = this.find(head.headers);
      if ('refusal' in found) {
        this.log.info({ remote: client.remoteAddress, reason: found.refusal.reason }, 'egress: proxy credentials refused');
        return replyProxyAuth(client, found.refusal);
      }
      this.proxy.handle(found.task, client, buf);
    };
    client.once('close', () => {
      clearTimeout(timer);
      this.pending.delete(client);
    });
    client.on('data', onData);
    client.once('end', onEnd);
  }

  private find(fields: readonly (readonly [string, string])[]): { task: TcpTaskEgress } | { refusal: CredentialRefusal } {
    const p = refusal(fields);
    if ('refusal' in p) return p;
    const task = (this.byUser.get(p.user) ?? []).find((t) => tokenMatches(t.credential.token, p.token));
    return task ? { task } : { refusal: REFUSED };
  }
}
