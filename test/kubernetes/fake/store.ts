// The object store: one namespace's objects per kind, a global resourceVersion, and the event
// history watches resume from (bounded, as etcd's compaction bounds it).
import { randomUUID } from 'node:crypto';
import { alreadyExists, notFound } from './status.js';

export type Kind = 'jobs' | 'pods' | 'secrets' | 'networkpolicies';
export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  kind: Kind;
  type: EventType;
  object: any;
  /** The object before this change (for MODIFIED), so a filtered watch can turn it into ADDED/DELETED. */
  previous?: any;
  rv: number;
}

export const KIND_INFO: Record<Kind, { group: string; apiVersion: string; kind: string }> = {
  jobs: { group: 'batch', apiVersion: 'batch/v1', kind: 'Job' },
  pods: { group: '', apiVersion: 'v1', kind: 'Pod' },
  secrets: { group: '', apiVersion: 'v1', kind: 'Secret' },
  networkpolicies: { group: 'networking.k8s.io', apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy' },
};

const HISTORY_LIMIT = 5000;

export class Store {
  private rv = 0;
  /** Watches from a resourceVersion below this answer 410 Gone. */
  private floor = 0;
  private readonly objects: Record<Kind, Map<string, any>> = {
    jobs: new Map(),
    pods: new Map(),
    secrets: new Map(),
    networkpolicies: new Map(),
  };
  private readonly history: StoreEvent[] = [];
  private readonly listeners = new Set<(ev: StoreEvent) => void>();

  constructor(readonly namespace: string) {}

  currentRv(): number {
    return this.rv;
  }

  /** Makes every resourceVersion handed out so far too old to watch from. */
  expire(): void {
    this.rv++;
    this.floor = this.rv;
  }

  /** The events after `rv`, or null when `rv` is older than what is kept. */
  eventsSince(rv: number): StoreEvent[] | null {
    if (rv < this.floor) return null;
    const oldest = this.history[0];
    if (oldest && rv < oldest.rv - 1 && this.history.length >= HISTORY_LIMIT) return null;
    return this.history.filter((e) => e.rv > rv);
  }

  subscribe(fn: (ev: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get(kind: Kind, name: string): any | undefined {
    const obj = this.objects[kind].get(name);
    return obj === undefined ? undefined : structuredClone(obj);
  }

  mustGet(kind: Kind, name: string): any {
    const obj = this.get(kind, name);
    if (obj === undefined) throw notFound(kind, KIND_INFO[kind].group, name);
    return obj;
  }

  list(kind: Kind): any[] {
    return [...this.objects[kind].values()].map((o) => structuredClone(o));
  }

  create(kind: Kind, input: any): any {
    const obj = structuredClone(input);
    const name = obj.metadata.name as string;
    if (this.objects[kind].has(name)) throw alreadyExists(kind, KIND_INFO[kind].group, name);
    obj.apiVersion = KIND_INFO[kind].apiVersion;
    obj.kind = KIND_INFO[kind].kind;
    obj.metadata.namespace = this.namespace;
    obj.metadata.uid = obj.metadata.uid ?? randomUUID();
    obj.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    if (kind === 'jobs') obj.metadata.generation = 1;
    return this.commit(kind, 'ADDED', obj, undefined);
  }

  /** Applies `mutate` to a copy of the stored object and stores the result. */
  update(kind: Kind, name: string, mutate: (obj: any) => void): any {
    const previous = this.objects[kind].get(name);
    if (previous === undefined) throw notFound(kind, KIND_INFO[kind].group, name);
    const next = structuredClone(previous);
    mutate(next);
    // An update that changes nothing is a no-op, as on the real server: no new resourceVersion, no event.
    if (JSON.stringify(next) === JSON.stringify(previous)) return structuredClone(previous);
    if (kind === 'jobs' && JSON.stringify(next.spec) !== JSON.stringify(previous.spec)) {
      next.metadata.generation = (previous.metadata.generation ?? 1) + 1;
    }
    return this.commit(kind, 'MODIFIED', next, previous);
  }

  remove(kind: Kind, name: string): any | undefined {
    const previous = this.objects[kind].get(name);
    if (previous === undefined) return undefined;
    this.objects[kind].delete(name);
    const gone = structuredClone(previous);
    return this.commit(kind, 'DELETED', gone, previous);
  }

  private commit(kind: Kind, type: EventType, obj: any, previous: any): any {
    obj.metadata.resourceVersion = String(++this.rv);
    if (type !== 'DELETED') this.objects[kind].set(obj.metadata.name, obj);
    const ev: StoreEvent = { kind, type, object: obj, previous, rv: this.rv };
    this.history.push(ev);
    if (this.history.length > HISTORY_LIMIT) this.history.shift();
    for (const fn of [...this.listeners]) fn(ev);
    return structuredClone(obj);
  }
}
