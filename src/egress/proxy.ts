import { chmodSync, chownSync, mkdirSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { createServer, type BlockList, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { destinationReason, localInterfaceAddresses, type ResolvedAddress, type Resolver } from './addresses.js';
import type { DecisionSink, EgressDecision } from './decisions.js';
import { checkHost, hostAllowed, parsePattern, type Pattern } from './policy.js';
import { parseClientHello, sniMatches } from './client-hello.js';
import { parseAuthority, parseRequestHead, upstreamHead, type ParsedHead } from './request-head.js';
import { relayRequest } from './request-relay.js';
import { connectTo, reply, replyProxyAuth, withTimeout } from './sockets.js';
import { TaskEgress, type Conn } from './task-egress.js';
import { TcpListener, type TcpAddress, type TcpOptions } from './tcp.js';
import { upstreamProxyHead, upstreamTunnel, connectUpstream, type UpstreamProxy } from './upstream.js';

export { TaskEgress } from './task-egress.js';

export interface ProxySettings {
  ports: readonly number[];
  maxConnectionsPerTask: number;
  idleTimeoutSeconds: number;
  headerTimeoutSeconds: number;
  connectTimeoutSeconds: number;
  maxHeaderBytes: number;
  maxDecisionsPerTask: number;
}

/** UID/GID the task runs as: the socket must be connectable by it and by nobody else. */
const SANDBOX_UID = 65532;
/** The socket's name in the task's directory (the container sees it at /run/sandboxshift/egress/egress.sock). */
const SOCKET_NAME = 'egress.sock';
/** sockaddr_un.sun_path holds 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;
/** Bounds on the first bytes read from a CONNECT client before its SNI is judged. */
const CLIENT_HELLO_MAX = 16384;
const CLIENT_HELLO_SECONDS = 10;

/**
 * The server's egress proxy. Each task with an allowlist gets its own listener on a Unix socket
 * (bind-mounted into its container, reached through the in-image relay), or, for tasks that reach
 * the server over the network (Kubernetes pods), a per-task credential on the shared TCP listener;
 * either way every connection belongs to exactly one task and is judged against that task's
 * allowlist only. It speaks CONNECT and absolute-URI HTTP, resolves names itself, refuses
 * destinations that are not the public internet (unless in the operator's test ranges), and
 * connects to the very address it checked.
 */
export class EgressProxy {
  private tcp: TcpListener | null = null;

  constructor(
    private readonly dir: string,
    private readonly settings: ProxySettings,
    private readonly resolve: Resolver,
    private readonly allowedRanges: BlockList,
    private readonly sink: DecisionSink,
    private readonly log: Logger,
    /** The host's own addresses, read at each decision (interfaces change). */
    private readonly localAddresses: () => ReadonlySet<string> = localInterfaceAddresses,
    /** The operator's upstream proxy (egress.upstreamProxy), or null to connect directly. */
    private readonly upstreamProxy: UpstreamProxy | null = null,
  ) {}

  /**
   * Start-up: socket directories of a previous run are removed, except those of tasks in `keep`
   * (adopted: their containers have the directory mounted and reach the socket re-created in it).
   */
  prepare(keep: ReadonlySet<string> = new Set()): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // Root-only, also when a previous run left it (each task's directory is bind-mounted on its own).
    chmodSync(this.dir, 0o700);
    for (const name of readdirSync(this.dir)) {
      if (!keep.has(name)) rmSync(join(this.dir, name), { recursive: true, force: true });
    }
    const probe = this.socketPath('tsk_' + 'x'.repeat(16));
    if (Buffer.byteLength(probe) > MAX_SOCKET_PATH) {
      throw new Error(`egress socket paths under ${this.dir} would exceed ${MAX_SOCKET_PATH} bytes; use a shorter dataDir`);
    }
  }

  /** The task's socket directory: mounted into its container as a whole. */
  socketDir(taskId: string): string {
    return join(this.dir, taskId);
  }

  socketPath(taskId: string): string {
    return join(this.socketDir(taskId), SOCKET_NAME);
  }

  /**
   * Listens for one task; resolves once its socket exists and only UID 65532 can connect. The
   * directory is created if missing and kept if present (a container may have it mounted).
   */
  async open(taskId: string, allow: readonly string[]): Promise<SocketTaskEgress> {
    const dir = this.socketDir(taskId);
    mkdirSync(dir, { recursive: true, mode: 0o500 });
    chownSync(dir, SANDBOX_UID, SANDBOX_UID);
    chmodSync(dir, 0o500);
    const egress = new SocketTaskEgress(taskId, dir, this.socketPath(taskId), allow.map(parsePattern), this);
    await egress.listen();
    return egress;
  }

  /**
   * Starts the TCP listener that tasks reach over the network (egress.tcp.listen); resolves once
   * it listens. The credential key is read from (or created in) `opts.keyFile`.
   */
  async startTcp(opts: TcpOptions): Promise<TcpAddress> {
    if (this.tcp) throw new Error('the egress TCP listener is already started');
    const l = new TcpListener(this, this.settings, this.log);
    const address = await l.start(opts);
    this.tcp = l;
    return address;
  }

  /**
   * Serves one task on the TCP listener: its proxyUrl carries the credentials derived for it,
   * which are accepted until close() (and again after a restart only if the task is opened again).
   */
  async openTcp(taskId: string, allow: readonly string[]): Promise<TaskEgress> {
    if (!this.tcp) throw new Error('the egress proxy has no TCP listener (egress.tcp.listen is not set)');
    return this.tcp.open(taskId, allow.map(parsePattern));
  }

  /** Stops the TCP listener: pending connections and every TCP task's tunnels end. */
  async closeTcp(): Promise<void> {
    const l = this.tcp;
    this.tcp = null;
    await l?.close();
  }

  /**
   * @internal the per-connection state machine, shared by every task's listener. `first`: bytes
   * the TCP listener already read (a complete request head and what followed it).
   */
  handle(task: TaskEgress, client: Socket, first: Buffer = Buffer.alloc(0)): void {
    const s = this.settings;
    // First thing: a client that resets the connection must never become an unhandled 'error'.
    client.on('error', () => undefined);
    if (task.conns.size >= s.maxConnectionsPerTask) {
      this.log.warn({ taskId: task.taskId, limit: s.maxConnectionsPerTask }, 'egress: too many connections');
      reply(client, 503, 'too_many_connections', `at most ${s.maxConnectionsPerTask} proxy connections at once (egress.maxConnectionsPerTask)`);
      return;
    }
    const conn: Conn = { client, upstream: null, decisionId: null, decision: null, up: 0, down: 0, done: false, phase: 'head' };
    task.conns.add(conn);
    client.once('close', () => this.end(task, conn));
    // One handler for the connection's life; each phase sets the timer's length.
    client.on('timeout', () => {
      if (conn.phase === 'head') reply(client, 408, 'header_timeout', `no complete request head within ${s.headerTimeoutSeconds} s`);
      else if (conn.phase === 'tunnel') this.end(task, conn);
      // connecting: the lookup and each connect attempt have their own bounds (connectTimeoutSeconds);
      // hello: the ClientHello wait has its own (see checkClientHello)
    });
    client.setTimeout(s.headerTimeoutSeconds * 1000);
    let buf = first;
    // EOF before a complete head: nothing to answer (after the head, a half-close is normal).
    const onEnd = () => this.end(task, conn);
    client.once('end', onEnd);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const head = parseRequestHead(buf, s.maxHeaderBytes);
      if (head.kind === 'incomplete') return;
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
      conn.phase = 'connecting';
      this.serve(task, conn, head, buf.subarray(head.kind === 'error' ? buf.length : head.headBytes)).catch((err: unknown) => {
        this.log.error({ taskId: task.taskId, err }, 'egress: connection failed');
        this.end(task, conn);
      });
    };
    client.on('data', onData);
    if (first.length > 0) {
      onData(Buffer.alloc(0));
      // The listener paused the client once it had the head; a head still incomplete reads on.
      if (conn.phase === 'head') client.resume();
    }
  }

  private async serve(task: TaskEgress, conn: Conn, head: ParsedHead, rest: Buffer): Promise<void> {
    if (head.kind === 'incomplete') return;
    if (head.kind === 'error') {
      this.log.info({ taskId: task.taskId, reason: head.reason }, 'egress: malformed request');
      return reply(conn.client, head.status, 'bad_request', head.reason);
    }
    // TCP tasks: every request head on the connection carries the task's credentials.
    const refused = task.credentialRefusal(head.headers);
    if (refused) {
      this.log.info({ taskId: task.taskId, reason: refused.reason }, 'egress: proxy credentials refused');
      return replyProxyAuth(conn.client, refused);
    }
    const deny = (status: number, reason: string, host: string, address: string | null = null) => {
      this.decide(task, { host, port: head.port, allowed: false, reason, address });
      reply(conn.client, status, reason, `${host}:${head.port}: ${reason}`);
    };
    const checked = checkHost(head.host);
    const shown = head.host.slice(0, 253);
    if (!checked.ok && checked.reason !== 'port_not_allowed') return deny(403, checked.reason, shown);
    const host = checked.host;
    if (!hostAllowed(host, task.allow)) return deny(403, 'not_allowlisted', host);
    // A second port inside the authority (`name:443:8443`) is no allowed port either.
    if (!checked.ok || !this.settings.ports.includes(head.port)) return deny(403, 'port_not_allowed', host);
    if (head.kind === 'forward') {
      const hosts = head.headers.filter(([n]) => n.toLowerCase() === 'host').map(([, v]) => v);
      const named = hosts.map((v) => parseAuthority(v, -1)).map((a) => (a ? { ...a, c: checkHost(a.host) } : null));
      // Host must name the URI's host (and its port, when it gives one): no second destination hidden in the head.
      if (hosts.length > 1 || named.some((a) => !a || !a.c.ok || a.c.host !== host || (a.port !== -1 && a.port !== head.port))) return deny(403, 'host_mismatch', host);
    }

    if (this.upstreamProxy) return this.serveViaUpstream(task, conn, head, rest, host, deny);

    let addresses: ResolvedAddress[];
    try {
      addresses = await withTimeout(this.resolve(host), this.settings.connectTimeoutSeconds * 1000);
    } catch {
      return deny(502, 'resolve_failed', host);
    }
    if (addresses.length === 0) return deny(502, 'resolve_failed', host);
    const local = this.localAddresses();
    const why = (a: ResolvedAddress) => destinationReason(a.address, this.allowedRanges, local);
    const usable = addresses.filter((a) => why(a) === null);
    if (usable.length === 0) return deny(403, `forbidden_address:${why(addresses[0]!)}`, host, addresses[0]!.address);
    // Connect to an address checked above: no second lookup, so a name cannot rebind in between.
    let upstream: Socket | null = null;
    let address = '';
    for (const a of usable) {
      if (conn.done) return;
      upstream = await connectTo(a, head.port, this.settings.connectTimeoutSeconds * 1000);
      address = a.address;
      if (upstream) break;
    }
    if (conn.done) {
      upstream?.destroy();
      return;
    }
    if (!upstream) return deny(502, 'connect_failed', host, usable[0]!.address);
    this.tunnel(task, conn, head, rest, host, upstream, address, false);
  }

  /**
   * Through the operator's upstream proxy: the address policy applies wherever local DNS answers
   * (a name it cannot resolve is left to the upstream); CONNECT goes by name, plain HTTP in
   * absolute-URI form.
   */
  private async serveViaUpstream(
    task: TaskEgress,
    conn: Conn,
    head: Extract<ParsedHead, { kind: 'connect' | 'forward' }>,
    rest: Buffer,
    host: string,
    deny: (status: number, reason: string, host: string, address?: string | null) => void,
  ): Promise<void> {
    const up = this.upstreamProxy!;
    const timeoutMs = this.settings.connectTimeoutSeconds * 1000;
    const addresses = await withTimeout(this.resolve(host), timeoutMs).catch(() => [] as ResolvedAddress[]);
    const local = this.localAddresses();
    const reasons = addresses.map((a) => destinationReason(a.address, this.allowedRanges, local));
    if (addresses.length > 0 && reasons.every((r) => r !== null)) return deny(403, `forbidden_address:${reasons[0]}`, host, addresses[0]!.address);
    const address = addresses.find((_, i) => reasons[i] === null)?.address ?? null;
    if (conn.done) return;
    if (head.kind === 'connect') {
      const t = await upstreamTunnel(up, host, head.port, timeoutMs);
      if (conn.done) {
        if ('socket' in t) t.socket.destroy();
        return;
      }
      if (!('socket' in t)) return deny(502, t.status === null ? 'upstream_unreachable' : `upstream_refused:${t.status}`, host, address);
      if (t.rest.length) conn.client.write(t.rest);
      return this.tunnel(task, conn, head, rest, host, t.socket, address, true);
    }
    const sock = await connectUpstream(up, timeoutMs);
    if (conn.done) {
      sock?.destroy();
      return;
    }
    if (!sock) return deny(502, 'upstream_unreachable', host, address);
    this.tunnel(task, conn, head, rest, host, sock, address, true);
  }

  /** The connection is decided and connected: record it, then relay both ways with idle bounds. */
  private tunnel(
    task: TaskEgress,
    conn: Conn,
    head: Extract<ParsedHead, { kind: 'connect' | 'forward' }>,
    rest: Buffer,
    host: string,
    upstream: Socket,
    address: string | null,
    viaUpstreamProxy: boolean,
  ): void {
    conn.upstream = upstream;
    const { client } = conn;
    upstream.on('error', () => undefined);
    if (head.kind === 'connect') {
      upstream.once('close', () => this.end(task, conn));
      conn.phase = 'hello';
      client.setTimeout(0);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      return this.checkClientHello(task, conn, head.port, Buffer.from(rest), host, upstream, address);
    }
    conn.phase = 'tunnel';
    conn.decisionId = this.decide(task, { host, port: head.port, allowed: true, reason: 'allowlisted', address }, conn);
    // Idle in both directions: Node resets a socket's timer on reads and on writes.
    const idle = this.settings.idleTimeoutSeconds * 1000;
    client.setTimeout(idle);
    upstream.setTimeout(idle, () => this.end(task, conn));
    upstream.on('data', (c: Buffer) => (conn.down += c.length));
    const h = viaUpstreamProxy ? upstreamProxyHead(head, this.upstreamProxy!, upstreamHead(head)) : upstreamHead(head);
    conn.up += h.length;
    upstream.write(h);
    relayRequest({
      client,
      upstream,
      framing: head.body,
      first: rest,
      maxHeaderBytes: this.settings.maxHeaderBytes,
      onUp: (bytes) => (conn.up += bytes),
      onResponseEnd: () => this.closeDecision(task, conn),
      onNext: (next, nextRest) => {
        conn.phase = 'connecting';
        this.serve(task, conn, next, nextRest).catch((err: unknown) => {
          this.log.error({ taskId: task.taskId, err }, 'egress: connection failed');
          this.end(task, conn);
        });
      },
      // Gracefully, so the end of the response reaches the client; the timeout bounds a client that never reads.
      onEnd: () => client.end(() => this.end(task, conn)),
    });
  }

  /**
   * After CONNECT: the client's first bytes (at most CLIENT_HELLO_MAX, within CLIENT_HELLO_SECONDS
   * or the idle timeout when that is shorter) are read before anything reaches the destination.
   * On 443 they must be a TLS ClientHello whose SNI names the CONNECT host (`sni_mismatch`
   * otherwise; no SNI, not TLS, malformed, cut short or too slow: `sni_missing`). On other ports a
   * ClientHello carrying an SNI must match it too and a partial one must complete; other
   * protocols, and clients silent for that long (the server may speak first), pass.
   */
  private checkClientHello(task: TaskEgress, conn: Conn, port: number, first: Buffer, host: string, upstream: Socket, address: string | null): void {
    const { client } = conn;
    let buf = first;
    let settled = false;
    const settle = (reason: string | null) => {
      if (settled || conn.done) return;
      settled = true;
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
      if (reason) {
        this.decide(task, { host, port, allowed: false, reason, address });
        // A fatal TLS alert (access_denied) when the client speaks TLS; then the tunnel closes.
        if (buf[0] === 22) client.write(Buffer.from([21, 3, 3, 0, 2, 2, 49]));
        client.end();
        setTimeout(() => this.end(task, conn), 100).unref();
        return;
      }
      this.relay(task, conn, port, host, upstream, address, buf);
    };
    const judge = () => {
      const r = parseClientHello(buf, CLIENT_HELLO_MAX);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'hello' && r.sni !== null) return settle(sniMatches(r.sni, host) ? null : 'sni_mismatch');
      if (port === 443) return settle('sni_missing');
      if (r.kind === 'malformed') return settle('sni_missing');
      return settle(null);
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      judge();
    };
    // EOF before a verdict: nothing, or a ClientHello cut short (anything else was judged on arrival).
    // (Having sent nothing, the client's half-close reaches the destination: pipe() passes on an
    // end that already happened.)
    const onEnd = () => settle(port === 443 || buf.length > 0 ? 'sni_missing' : null);
    const waitMs = Math.min(CLIENT_HELLO_SECONDS, this.settings.idleTimeoutSeconds) * 1000;
    const timer = setTimeout(() => settle(port === 443 || buf.length > 0 ? 'sni_missing' : null), waitMs);
    client.on('data', onData);
    client.once('end', onEnd);
    client.resume();
    if (buf.length) judge();
  }

  /** A CONNECT tunnel whose first bytes passed: record it, forward them, then relay. */
  private relay(task: TaskEgress, conn: Conn, port: number, host: string, upstream: Socket, address: string | null, first: Buffer): void {
    const { client } = conn;
    conn.phase = 'tunnel';
    conn.decisionId = this.decide(task, { host, port, allowed: true, reason: 'allowlisted', address }, conn);
    const idle = this.settings.idleTimeoutSeconds * 1000;
    client.setTimeout(idle);
    upstream.setTimeout(idle, () => this.end(task, conn));
    client.on('data', (c: Buffer) => (conn.up += c.length));
    upstream.on('data', (c: Buffer) => (conn.down += c.length));
    if (first.length) {
      conn.up += first.length;
      upstream.write(first);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  private decide(task: TaskEgress, d: Omit<EgressDecision, 'time' | 'bytesUp' | 'bytesDown'>, conn?: Conn): number | null {
    const decision: EgressDecision = { time: new Date().toISOString(), ...d, bytesUp: 0, bytesDown: 0 };
    if (conn) conn.decision = decision;
    this.log.info({ taskId: task.taskId, egress: decision }, d.allowed ? 'egress allowed' : 'egress denied');
    try {
      return this.sink.addEgressDecision(task.taskId, decision, this.settings.maxDecisionsPerTask);
    } catch (err) {
      // The store is closing (shutdown): the decision is still in the log above.
      this.log.warn({ taskId: task.taskId, err }, 'egress decision not stored');
      return null;
    }
  }

  /** @internal Ends a connection once: both sockets destroyed, byte counts recorded. */
  end(task: TaskEgress, conn: Conn): void {
    if (conn.done) return;
    conn.done = true;
    conn.client.destroy();
    conn.upstream?.destroy();
    task.conns.delete(conn);
    this.closeDecision(task, conn);
  }

  /** The connection's current destination is done with: its byte counts are final. */
  private closeDecision(task: TaskEgress, conn: Conn): void {
    const d = conn.decision;
    conn.upstream = null;
    conn.decision = null;
    if (!d) return;
    try {
      if (conn.decisionId !== null) this.sink.setEgressBytes(conn.decisionId, conn.up, conn.down);
    } catch (err) {
      // Runs from socket events: never let a closing store throw out of one.
      this.log.warn({ taskId: task.taskId, err }, 'egress byte counts not stored');
    }
    this.log.info({ taskId: task.taskId, host: d.host, port: d.port, bytesUp: conn.up, bytesDown: conn.down }, 'egress connection closed');
    conn.decisionId = null;
    conn.up = 0;
    conn.down = 0;
  }
}

/** A task reached through its own Unix socket (bind-mounted into its container). */
export class SocketTaskEgress extends TaskEgress {
  readonly proxyUrl = null;
  private readonly server: Server;
  private closed = false;

  constructor(
    taskId: string,
    readonly socketDir: string,
    readonly socketPath: string,
    allow: readonly Pattern[],
    proxy: EgressProxy,
  ) {
    super(taskId, allow, proxy);
    this.server = createServer({ allowHalfOpen: true }, (client) => proxy.handle(this, client));
  }

  /** @internal */
  async listen(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.server.on('error', () => undefined);
    try {
      chownSync(this.socketPath, SANDBOX_UID, SANDBOX_UID);
      chmodSync(this.socketPath, 0o600);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /**
   * Stops listening, closes every tunnel (recording its bytes) and removes the socket and its
   * directory; `keepDir` keeps the directory (the task is left running for the next start, which
   * listens in it again). Sync, idempotent.
   */
  close(opts: { keepDir?: boolean } = {}): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    this.endAll();
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone (server.close may have removed it)
    }
    if (!opts.keepDir) rmSync(this.socketDir, { recursive: true, force: true });
  }
}
