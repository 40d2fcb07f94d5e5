// The HTTP side of the fake kube-apiserver: bearer-token authentication, injected faults, and
// the REST routes for the four kinds in the one namespace it serves.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AttachServer, writeUpgradeError } from './attach.js';
import type { Collector, DeleteOptions } from './gc.js';
import type { Kubelet } from './kubelet.js';
import { applyPatch } from './patch.js';
import { prepareCreate, prepareUpdate } from './resources.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import { KIND_INFO, type Kind, type Store } from './store.js';
import { ApiError, sendJson } from './status.js';
import type { WatchHub } from './watch.js';

export interface Fault {
  method: string;
  path: RegExp;
  status: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
}

export interface ServerDeps {
  store: Store;
  watches: WatchHub;
  gc: Collector;
  kubelet: Kubelet;
  attach: AttachServer;
  token: string;
  faults: Fault[];
  requests: RequestRecord[];
  denyAttachCreate: boolean;
}

const MAX_BODY = 3 * 1024 * 1024;
const GROUP_KINDS: Record<string, Kind[]> = {
  'api/v1': ['pods', 'secrets'],
  'apis/batch/v1': ['jobs'],
  'apis/networking.k8s.io/v1': ['networkpolicies'],
};
const ROUTE = /^\/(api\/v1|apis\/batch\/v1|apis\/networking\.k8s\.io\/v1)\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?\/?$/;

interface Route {
  kind: Kind;
  namespace: string;
  name?: string;
  sub?: string;
}

function parseRoute(path: string): Route | undefined {
  const m = ROUTE.exec(path);
  if (!m) return undefined;
  const kind = m[3] as Kind;
  if (!GROUP_KINDS[m[1]!]!.includes(kind)) return undefined;
  return { kind, namespace: decodeURIComponent(m[2]!), name: m[4] && decodeURIComponent(m[4]), sub: m[5] };
}

function truthy(v: string | undefined): boolean {
  return v === 'true' || v === '1';
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ApiError(413, `Request entity too large: limit is ${MAX_BODY}`, 'RequestEntityTooLarge'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function readJson(req: IncomingMessage): Promise<any> {
  const raw = await readBody(req);
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new ApiError(400, `couldn't get version/kind; json parse error: ${(err as Error).message}`, 'BadRequest');
  }
}

function forbidden(verb: string, resource: string, namespace: string): ApiError {
  return new ApiError(403, `${resource} is forbidden: User "system:serviceaccount:sandboxshift-system:sandboxshift" cannot ${verb} resource "${resource}" in API group "" in the namespace "${namespace}"`, 'Forbidden', { kind: resource });
}

export function createApiServer(deps: ServerDeps): Server {
  const { store } = deps;

  /** Records the request and applies authentication and injected faults; returns an error to answer, if any. */
  function admit(req: IncomingMessage, url: URL): ApiError | undefined {
    const query = Object.fromEntries(url.searchParams.entries());
    deps.requests.push({ method: req.method ?? 'GET', path: url.pathname, query });
    if (req.headers.authorization !== `Bearer ${deps.token}`) return new ApiError(401, 'Unauthorized', 'Unauthorized');
    const i = deps.faults.findIndex((f) => f.method.toUpperCase() === req.method && f.path.test(url.pathname));
    if (i >= 0) {
      const fault = deps.faults.splice(i, 1)[0]!;
      return new ApiError(fault.status, `injected fault: ${req.method} ${url.pathname} answers ${fault.status}`);
    }
    return undefined;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const denied = admit(req, url);
    if (denied) return sendJson(res, denied.code, denied.body());
    const query = Object.fromEntries(url.searchParams.entries());
    const method = req.method ?? 'GET';
    const path = url.pathname;
    if (method === 'GET' && path === '/version') {
      return sendJson(res, 200, { major: '1', minor: '34', gitVersion: 'v1.34.0-fake', platform: 'linux/amd64' });
    }
    if (method === 'GET' && ['/healthz', '/livez', '/readyz'].includes(path)) {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      return void res.end('ok');
    }
    if (method === 'POST' && path === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') {
      const body = await readJson(req);
      const attr = body?.spec?.resourceAttributes ?? {};
      const served = ['pods', 'secrets', 'jobs', 'networkpolicies'].includes(attr.resource);
      const allowed = attr.namespace === store.namespace && served && !(deps.denyAttachCreate && attr.resource === 'pods' && attr.subresource === 'attach' && attr.verb === 'create');
      return sendJson(res, 201, { ...body, apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', status: { allowed } });
    }
    const route = parseRoute(path);
    if (!route) throw new ApiError(404, 'the server could not find the requested resource', 'NotFound');
    if (route.namespace !== store.namespace) throw forbidden(method === 'GET' ? 'get' : method.toLowerCase(), route.kind, route.namespace);
    const { kind, name, sub } = route;
    const info = KIND_INFO[kind];

    if (!name) {
      if (method === 'GET') {
        const match = ((l, f) => (o: any) => l(o) && f(o))(parseLabelSelector(query.labelSelector), parseFieldSelector(query.fieldSelector));
        if (truthy(query.watch)) return deps.watches.serve(kind, match, query, res);
        return sendJson(res, 200, list(kind, match, query));
      }
      if (method === 'POST') {
        checkFieldValidation(query);
        const obj = prepareCreate(kind, await readJson(req), store.namespace);
        if (query.dryRun === 'All') return sendJson(res, 201, { ...obj, apiVersion: info.apiVersion, kind: info.kind });
        return sendJson(res, 201, store.create(kind, obj));
      }
      throw new ApiError(405, `the server does not allow this method on the requested resource`, 'MethodNotAllowed');
    }

    if (sub === 'log' && kind === 'pods' && method === 'GET') return serveLog(name, query, res);
    if (sub === 'attach' && kind === 'pods') throw new ApiError(400, 'Upgrade request required', 'BadRequest');
    if (sub !== undefined && sub !== 'status') throw new ApiError(404, 'the server could not find the requested resource', 'NotFound');
    if (sub === 'status' && kind !== 'pods' && kind !== 'jobs') throw new ApiError(404, 'the server could not find the requested resource', 'NotFound');

    switch (method) {
      case 'GET':
        return sendJson(res, 200, store.mustGet(kind, name));
      case 'PUT': {
        checkFieldValidation(query);
        const stored = store.mustGet(kind, name);
        const next = prepareUpdate(kind, stored, await readJson(req), sub);
        return sendJson(res, 200, replace(kind, name, next));
      }
      case 'PATCH': {
        checkFieldValidation(query);
        const stored = store.mustGet(kind, name);
        const patched = applyPatch(String(req.headers['content-type'] ?? ''), stored, await readJson(req));
        const next = prepareUpdate(kind, stored, patched, sub);
        return sendJson(res, 200, replace(kind, name, next));
      }
      case 'DELETE': {
        if (sub) throw new ApiError(405, 'the server does not allow this method on the requested resource', 'MethodNotAllowed');
        const body = (await readJson(req)) ?? {};
        const opts: DeleteOptions = {
          propagationPolicy: query.propagationPolicy ?? body.propagationPolicy,
          gracePeriodSeconds: query.gracePeriodSeconds !== undefined ? Number(query.gracePeriodSeconds) : body.gracePeriodSeconds,
          orphanDependents: query.orphanDependents !== undefined ? truthy(query.orphanDependents) : body.orphanDependents,
          preconditions: body.preconditions,
        };
        const result = deps.gc.delete(kind, name, opts);
        return sendJson(res, 200, result.body, result.warning ? { Warning: `299 - "${result.warning}"` } : {});
      }
      default:
        throw new ApiError(405, 'the server does not allow this method on the requested resource', 'MethodNotAllowed');
    }
  }

  function checkFieldValidation(query: Record<string, string>): void {
    const v = query.fieldValidation;
    if (v !== undefined && !['Strict', 'Warn', 'Ignore'].includes(v)) {
      throw new ApiError(400, `fieldValidation: Unsupported value: "${v}": supported values: "Ignore", "Warn", "Strict"`, 'BadRequest');
    }
  }

  function replace(kind: Kind, name: string, next: any): any {
    return store.update(kind, name, (o) => {
      for (const key of Object.keys(o)) delete o[key];
      Object.assign(o, structuredClone(next));
    });
  }

  function list(kind: Kind, match: (o: any) => boolean, query: Record<string, string>): any {
    const info = KIND_INFO[kind];
    let items = store.list(kind).filter(match).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    for (const item of items) {
      delete item.kind;
      delete item.apiVersion;
    }
    const metadata: Record<string, unknown> = { resourceVersion: String(store.currentRv()) };
    if (query.continue) {
      let start: string;
      try {
        start = JSON.parse(Buffer.from(query.continue, 'base64url').toString('utf8')).start;
      } catch {
        throw new ApiError(400, 'continue key is not valid: incorrect encoded start resourceVersion', 'BadRequest');
      }
      items = items.filter((i) => i.metadata.name > start);
    }
    const limit = Number(query.limit);
    if (Number.isInteger(limit) && limit > 0 && items.length > limit) {
      const remaining = items.length - limit;
      items = items.slice(0, limit);
      metadata.continue = Buffer.from(JSON.stringify({ start: items[items.length - 1].metadata.name })).toString('base64url');
      metadata.remainingItemCount = remaining;
    }
    return { kind: `${info.kind}List`, apiVersion: info.apiVersion, metadata, items };
  }

  function serveLog(name: string, query: Record<string, string>, res: ServerResponse): void {
    const pod = store.mustGet('pods', name);
    const container = query.container || pod.spec.containers[0].name;
    if (container !== pod.spec.containers[0].name) throw new ApiError(400, `container ${container} is not valid for pod ${name}`, 'BadRequest');
    const log = deps.kubelet.podLog(name);
    const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
    if (!log || (waiting && !deps.kubelet.container(name))) {
      const reason = waiting?.reason ?? 'ContainerCreating';
      throw new ApiError(400, `container "${container}" in pod "${name}" is waiting to start: ${reason}`, 'BadRequest');
    }
    log.serve(query, res);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      const e = err instanceof ApiError ? err : new ApiError(500, String((err as Error)?.stack ?? err), 'InternalError');
      if (res.headersSent) return void res.destroy();
      sendJson(res, e.code, e.body());
    });
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://fake');
    const denied = admit(req, url);
    if (denied) return writeUpgradeError(socket, denied);
    const route = parseRoute(url.pathname);
    if (!route || route.kind !== 'pods' || !route.name || route.sub !== 'attach') {
      return writeUpgradeError(socket, new ApiError(404, 'the server could not find the requested resource', 'NotFound'));
    }
    if (route.namespace !== store.namespace) return writeUpgradeError(socket, forbidden('create', 'pods/attach', route.namespace));
    try {
      deps.attach.handle(req, socket, head, route.name, Object.fromEntries(url.searchParams.entries()));
    } catch (err) {
      writeUpgradeError(socket, err instanceof ApiError ? err : new ApiError(500, String(err), 'InternalError'));
    }
  });

  return server;
}

