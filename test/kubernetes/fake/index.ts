// An in-process fake kube-apiserver and kubelet on loopback, driven by the real
// @kubernetes/client-node in tests: batch/v1 Jobs with a Job controller, Pods run for real by a
// fake kubelet, Secrets, NetworkPolicies, list+watch, pods/log, pods/attach, deletion with
// propagation and garbage collection, bearer-token auth, and injectable faults.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AttachServer } from './attach.js';
import { Collector } from './gc.js';
import { JobController } from './jobs.js';
import { Kubelet } from './kubelet.js';
import type { LogEdit } from './podlog.js';
import { createApiServer, type Fault, type RequestRecord } from './server.js';
import { Store, type Kind } from './store.js';
import { WatchHub } from './watch.js';

export interface FakeKubeOptions {
  /** The only namespace served; default 'sandboxshift-tasks'. */
  namespace?: string;
  /** pods/attach answers 403 (RBAC: get without create). */
  denyAttachCreate?: boolean;
  /** Pods selected by a NetworkPolicy with Egress in its policyTypes run in an empty network namespace (loopback only). */
  enforceNetworkPolicy?: boolean;
  /** The kubelet runs containers as this (default from securityContext, else 65532). */
  runAs?: { uid: number; gid: number };
}

export interface FakeKube {
  url: string;
  kubeconfigPath: string;
  namespace: string;
  close(): Promise<void>;
  faults: {
    dropWatches(): void;
    expireWatches(): void;
    dropAttaches(): void;
    failNext(method: string, path: RegExp, status: number): void;
    /** What pods/log serves from now on goes through `edit` (null: as logged). */
    editLog(edit: LogEdit | null): void;
  };
  /** The host process group of a pod's container (every process of it), while the kubelet has it. */
  processGroup(pod: string): number | undefined;
  objects(kind: 'jobs' | 'pods' | 'secrets' | 'networkpolicies'): any[];
  requests: Array<{ method: string; path: string; query: Record<string, string> }>;
}

function kubeconfig(url: string, token: string, namespace: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: fake',
    '  cluster:',
    `    server: ${url}`,
    // client-node 1.x refuses a plain-http server unless TLS verification is marked skipped.
    '    insecure-skip-tls-verify: true',
    'users:',
    '- name: fake',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: fake',
    '  context:',
    '    cluster: fake',
    '    user: fake',
    `    namespace: ${namespace}`,
    'current-context: fake',
    '',
  ].join('\n');
}

export async function startFakeKube(opts: FakeKubeOptions = {}): Promise<FakeKube> {
  const namespace = opts.namespace ?? 'sandboxshift-tasks';
  const baseDir = mkdtempSync(join(tmpdir(), 'fake-kube-'));
  const token = randomBytes(24).toString('hex');
  const store = new Store(namespace);
  const api = { host: '127.0.0.1', port: 0 };
  const logEdit: { fn: LogEdit | null } = { fn: null };
  const kubelet = new Kubelet(store, { baseDir, enforceNetworkPolicy: opts.enforceNetworkPolicy === true, runAs: opts.runAs, api, logEdit });
  const gc = new Collector(store, (name) => kubelet.isLive(name));
  const jobs = new JobController(store, gc);
  const watches = new WatchHub(store);
  const attach = new AttachServer(store, kubelet, opts.denyAttachCreate === true);
  const faults: Fault[] = [];
  const requests: RequestRecord[] = [];
  const server = createApiServer({ store, watches, gc, kubelet, attach, token, faults, requests, denyAttachCreate: opts.denyAttachCreate === true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  api.port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${api.port}`;
  const kubeconfigPath = join(baseDir, 'kubeconfig');
  writeFileSync(kubeconfigPath, kubeconfig(url, token, namespace), { mode: 0o600 });
  let closing: Promise<void> | undefined;
  // A test process that ends without close() (a failed assertion before the teardown ran, an
  // uncaught error) still leaves no container processes and no files behind.
  const onExit = (): void => {
    kubelet.killAllNow();
    rmSync(baseDir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  return {
    url,
    kubeconfigPath,
    namespace,
    requests,
    objects: (kind: Kind) => store.list(kind),
    faults: {
      dropWatches: () => watches.dropAll(),
      expireWatches: () => store.expire(),
      dropAttaches: () => attach.dropAll(),
      failNext: (method, path, status) => {
        faults.push({ method, path, status });
      },
      editLog: (edit) => {
        logEdit.fn = edit;
      },
    },
    processGroup: (pod) => kubelet.container(pod)?.processGroup,
    close: () => {
      closing ??= (async () => {
        process.removeListener('exit', onExit);
        jobs.close();
        gc.close();
        watches.dropAll();
        attach.close();
        await kubelet.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        // a killed container may still be writing into a volume for a moment: retry ENOTEMPTY
        rmSync(baseDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
      })();
      return closing;
    },
  };
}
