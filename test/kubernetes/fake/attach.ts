// pods/attach over WebSocket, as kube-apiserver serves client-node: subprotocols
// v5.channel.k8s.io (adds the CLOSE signal, channel 255) and v4.channel.k8s.io; binary frames
// whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { OutputSink } from './container.js';
import type { Kubelet } from './kubelet.js';
import type { Store } from './store.js';
import { ApiError, notFound } from './status.js';

const PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, status: 3, resize: 4, close: 255 } as const;

export function writeUpgradeError(socket: Duplex, err: ApiError, extraHeaders: Record<string, string> = {}): void {
  const body = JSON.stringify(err.body());
  const reason = err.reason ?? 'Error';
  const headers = { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close', ...extraHeaders };
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${err.code} ${reason}\r\n${head}\r\n${body}`);
}

export class AttachServer {
  private readonly wss: WebSocketServer;
  private readonly open = new Set<WebSocket>();

  constructor(
    private readonly store: Store,
    private readonly kubelet: Kubelet,
    private readonly denyAttachCreate: boolean,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (offered: Set<string>) => [...offered].find((p) => PROTOCOLS.includes(p)) ?? false,
    });
  }

  handle(req: IncomingMessage, socket: Duplex, head: Buffer, podName: string, query: Record<string, string>): void {
    try {
      this.check(req, podName, query);
    } catch (err) {
      if (err instanceof ApiError) return writeUpgradeError(socket, err);
      throw err;
    }
    const want = { stdin: query.stdin === 'true' || query.stdin === '1', stdout: query.stdout === 'true' || query.stdout === '1', stderr: query.stderr === 'true' || query.stderr === '1' };
    const run = this.kubelet.container(podName)!;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const v5 = ws.protocol === 'v5.channel.k8s.io';
      this.open.add(ws);
      const sink: OutputSink = {
        output: (stream, chunk) => {
          if (!want[stream] || ws.readyState !== ws.OPEN) return;
          ws.send(Buffer.concat([Buffer.from([CHANNEL[stream]]), chunk]));
        },
        exit: () => {
          if (ws.readyState !== ws.OPEN) return;
          ws.send(Buffer.concat([Buffer.from([CHANNEL.status]), Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' }))]));
          ws.close(1000);
        },
      };
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        const buf = isBinary ? data : Buffer.from(data.toString('utf8'));
        if (buf.length === 0) return;
        const channel = buf[0];
        if (channel === CHANNEL.stdin && want.stdin) run.writeStdin(buf.subarray(1));
        else if (channel === CHANNEL.close && v5 && buf[1] === CHANNEL.stdin && want.stdin) run.closeStdin(sink);
      });
      ws.on('error', () => undefined);
      ws.on('close', () => {
        this.open.delete(ws);
        run.detach(sink);
      });
      if (!run.attach(sink, want.stdin)) sink.exit();
    });
  }

  private check(req: IncomingMessage, podName: string, query: Record<string, string>): void {
    if (!PROTOCOLS.some((p) => String(req.headers['sec-websocket-protocol'] ?? '').split(/\s*,\s*/).includes(p))) {
      throw new ApiError(400, 'unable to upgrade connection: none of the offered subprotocols is supported (v5.channel.k8s.io, v4.channel.k8s.io)', 'BadRequest');
    }
    if (this.denyAttachCreate) {
      throw new ApiError(403, `pods "${podName}" is forbidden: User "system:serviceaccount:sandboxshift-system:sandboxshift" cannot create resource "pods/attach" in API group "" in the namespace "${this.store.namespace}"`, 'Forbidden', { name: podName, kind: 'pods' });
    }
    const pod = this.store.get('pods', podName);
    if (!pod) throw notFound('pods', '', podName);
    const names = pod.spec.containers.map((c: any) => c.name);
    const container = query.container || (names.length === 1 ? names[0] : '');
    if (!container) throw new ApiError(400, `a container name must be specified for pod ${podName}, choose one of: [${names.join(' ')}]`, 'BadRequest');
    if (container !== names[0]) throw new ApiError(400, `container ${container} is not valid for pod ${podName}`, 'BadRequest');
    if (!['true', '1'].includes(query.stdin ?? '') && !['true', '1'].includes(query.stdout ?? '') && !['true', '1'].includes(query.stderr ?? '')) {
      throw new ApiError(400, 'you must specify at least one of stdin, stdout, stderr', 'BadRequest');
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') {
      throw new ApiError(400, `cannot attach to a container in a completed pod; current phase is ${phase}`, 'BadRequest');
    }
    const run = this.kubelet.container(podName);
    if (!run || run.spawnError) throw new ApiError(500, `unable to upgrade connection: container not found ("${container}")`, 'InternalError');
  }

  /** Closes every open attach connection abruptly (no close frame), as a broken network does. */
  dropAll(): void {
    for (const ws of [...this.open]) ws.terminate();
  }

  close(): void {
    for (const ws of [...this.open]) ws.terminate();
    this.wss.close();
  }
}
