// The Kubernetes API rights a source tree needs, read from the client-node calls it makes: what
// the shipped Role must grant, exactly. A call this table does not know fails the test, so that
// a new kind of call cannot slip past it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** `group/resource verb`, "" being the core group: `/pods list`, `batch/jobs create`. */
export type Right = string;

const VERBS: Record<string, string[]> = {
  create: ['create'],
  read: ['get'],
  list: ['list'],
  patch: ['patch'],
  replace: ['update'],
  delete: ['delete'],
  deleteCollection: ['deletecollection'],
};

/** The object of a client-node method `<verb>Namespaced<Object>`. */
const OBJECTS: Record<string, string> = {
  Job: 'batch/jobs',
  JobStatus: 'batch/jobs/status',
  Pod: '/pods',
  PodLog: '/pods/log',
  PodStatus: '/pods/status',
  Secret: '/secrets',
  ConfigMap: '/configmaps',
  NetworkPolicy: 'networking.k8s.io/networkpolicies',
  Lease: 'coordination.k8s.io/leases',
  Event: '/events',
};

/** Helper classes of client-node and the subresource rights they use. */
const HELPERS: Record<string, Right[]> = {
  Attach: ['/pods/attach get', '/pods/attach create'],
  Log: ['/pods/log get'],
  Exec: ['/pods/exec get', '/pods/exec create'],
  PortForward: ['/pods/portforward get', '/pods/portforward create'],
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The rights the calls in `files` need, and calls it could not place. */
export function rightsOfSource(texts: readonly string[]): { rights: Set<Right>; unknown: string[] } {
  const rights = new Set<Right>();
  const unknown: string[] = [];
  for (const text of texts) {
    for (const m of text.matchAll(/\.(create|read|list|patch|replace|delete|deleteCollection)Namespaced([A-Z][A-Za-z]*)\(/g)) {
      const obj = OBJECTS[m[2]!];
      if (!obj) unknown.push(m[0]);
      else for (const v of VERBS[m[1]!]!) rights.add(`${obj} ${v}`);
    }
    // Cluster-scoped or all-namespace calls: the Role cannot grant them, so they must not exist.
    for (const m of text.matchAll(/\.(create|read|list|patch|replace|delete)(?!Namespaced)[A-Z][A-Za-z]*ForAllNamespaces\(|\.(list|read|create|delete)Namespace\(/g)) unknown.push(m[0]);
    // An informer lists and watches the path it is given: a namespaced core collection.
    for (const m of text.matchAll(/makeInformer(?:<[^>(]*>)?\(/g)) {
      const path = /^makeInformer(?:<[^>(]*>)?\([^,]+,\s*[`'"]\/api\/v1\/namespaces\/\$\{[^}]+\}\/([a-z]+)[`'"]/.exec(text.slice(m.index));
      if (!path) unknown.push('makeInformer with a path this test cannot read');
      else for (const v of ['list', 'watch']) rights.add(`/${path[1]} ${v}`);
    }
    for (const m of text.matchAll(/new (Attach|Log|Exec|PortForward|Watch|Metrics|Cp)\(/g)) {
      const r = HELPERS[m[1]!];
      if (!r) unknown.push(m[0]);
      else for (const x of r) rights.add(x);
    }
  }
  return { rights, unknown };
}

/** The rights of the engine's source under `dir` (null when it does not exist). */
export function rightsOfDir(dir: string): { rights: Set<Right>; unknown: string[] } | null {
  if (!existsSync(dir)) return null;
  return rightsOfSource(tsFiles(dir).map((f) => readFileSync(f, 'utf8')));
}

/** The rights a Role's rules grant (each group × resource × verb). */
export function rightsOfRole(rules: readonly { apiGroups?: string[]; resources?: string[]; verbs?: string[] }[]): Set<Right> {
  const out = new Set<Right>();
  for (const r of rules) for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) for (const v of r.verbs ?? []) out.add(`${g}/${res} ${v}`);
  return out;
}
