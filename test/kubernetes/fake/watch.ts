// list+watch responses: chunked JSON lines, headers flushed at once (client-node's fetch resolves
// only when they arrive), 410 Gone as an ERROR event carrying a Status, as kube-apiserver does.
import type { ServerResponse } from 'node:http';
import type { Kind, Store, StoreEvent } from './store.js';
import { ApiError, statusBody } from './status.js';

export class WatchHub {
  private readonly open = new Set<ServerResponse>();

  constructor(private readonly store: Store) {}

  serve(kind: Kind, match: (obj: any) => boolean, query: Record<string, string>, res: ServerResponse): void {
    const rvParam = query.resourceVersion ?? '';
    let backlog: StoreEvent[] | null = [];
    if (rvParam !== '' && rvParam !== '0') {
      const rv = Number(rvParam);
      if (!Number.isInteger(rv) || rv < 0) throw new ApiError(400, `invalid resource version: ${rvParam}`, 'BadRequest');
      backlog = this.store.eventsSince(rv);
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const send = (type: string, object: unknown): void => {
      res.write(JSON.stringify({ type, object }) + '\n');
    };
    if (backlog === null) {
      const message = `too old resource version: ${rvParam} (${this.store.currentRv()})`;
      send('ERROR', statusBody(410, message, 'Expired'));
      res.end();
      return;
    }
    if (rvParam === '' || rvParam === '0') {
      for (const obj of this.store.list(kind)) if (match(obj)) send('ADDED', obj);
    }
    const deliver = (ev: StoreEvent): void => {
      if (ev.kind !== kind) return;
      const now = match(ev.object);
      if (ev.type === 'MODIFIED') {
        const before = ev.previous !== undefined && match(ev.previous);
        if (before && now) send('MODIFIED', ev.object);
        else if (now) send('ADDED', ev.object);
        else if (before) send('DELETED', ev.object);
      } else if (now) send(ev.type, ev.object);
    };
    for (const ev of backlog) deliver(ev);
    const unsubscribe = this.store.subscribe(deliver);
    this.open.add(res);
    const timeout = Number(query.timeoutSeconds);
    const timer = Number.isFinite(timeout) && timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on('close', () => {
      unsubscribe();
      this.open.delete(res);
      if (timer) clearTimeout(timer);
    });
  }

  /** Ends every open watch cleanly, as the server does when a watch times out. */
  dropAll(): void {
    for (const res of [...this.open]) res.end();
  }
}
