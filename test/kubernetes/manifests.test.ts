// What deploy/kubernetes/ ships: every manifest parses, the kustomization lists them all, the task
// namespace is held to Pod Security `restricted`, the Role grants exactly what the Kubernetes
// engine calls (nothing cluster-wide, no wildcard), task pods may reach nothing but the egress
// proxy, the proxy nothing private, and the server's configuration in the ConfigMap is one the
// server accepts and agrees with the other objects.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseAllDocuments, parse } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { listenAddress } from '../../src/egress/listen-address.js';
import { installDir } from '../../src/paths.js';
import { rightsOfDir, rightsOfRole } from './manifests-rbac.js';

type Obj = any;

const root = installDir();
const dir = join(root, 'deploy', 'kubernetes');
const SYSTEM = 'sandboxshift-system';
const TASKS = 'sandboxshift-tasks';
/** The labels every task pod carries (the engine's contract), and the API pod's. */
const TASK_POD = { 'app.kubernetes.io/managed-by': 'sandboxshift', 'sandboxshift.io/instance': 'srv_x', 'sandboxshift.io/task-id': 'ss-x' };
const CLUSTER_KINDS = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass']);

const files = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
const objects: Obj[] = [];
const texts = new Map<string, string>();
for (const f of files) {
  const text = readFileSync(join(dir, f), 'utf8');
  texts.set(f, text);
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${f}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const o = doc.toJS();
    if (o !== null) objects.push({ ...o, __file: f });
  }
}
const all = (kind: string) => objects.filter((o) => o.kind === kind);
const one = (kind: string, name: string) => {
  const found = objects.filter((o) => o.kind === kind && o.metadata?.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return found[0];
};
/** Whether a label selector (matchLabels only, as these manifests use) selects `labels`. */
const selects = (sel: Obj, labels: Record<string, string>) => {
  if (sel.matchExpressions) throw new Error('matchExpressions are not used here');
  return Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
};
const nsLabels = (name: string) => one('Namespace', name).metadata.labels as Record<string, string>;

const configMap = one('ConfigMap', 'sandboxshift-config');
const configText: string = configMap.data['sandboxshift.yaml'];
const rawConfig = parse(configText);
const deployment = one('Deployment', 'sandboxshift-api');
const podLabels: Record<string, string> = deployment.spec.template.metadata.labels;
const server = deployment.spec.template.spec.containers[0];
const egressPort = listenAddress(rawConfig.egress.tcp.listen)?.port ?? -1;

t.test('every manifest parses, names its object and namespace, and the kustomization lists every file', async (t) => {
  t.ok(files.length >= 5, `manifest files: ${files.join(', ')}`);
  t.ok(objects.length >= 15, `${objects.length} objects`);
  for (const o of objects) {
    const what = `${o.__file}: ${o.kind} ${o.metadata?.name}`;
    t.ok(o.apiVersion && o.kind && o.metadata?.name, what);
    if (CLUSTER_KINDS.has(o.kind)) t.notOk(o.metadata.namespace, `${what} is cluster-scoped`);
    else t.ok([SYSTEM, TASKS].includes(o.metadata.namespace), `${what} is in ${o.metadata.namespace}`);
    t.equal(o.metadata.labels?.['app.kubernetes.io/part-of'], 'sandboxshift', `${what} is labelled part-of sandboxshift`);
  }
  const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'));
  t.equal(kustomization.kind, 'Kustomization');
  t.same([...kustomization.resources].sort(), files, 'kubectl apply -k applies every manifest');
  t.notOk(kustomization.namespace, 'no namespace override (the objects live in two)');
  t.same(kustomization.images.map((i: Obj) => i.name), [server.image.split(':')[0]], 'the image override names the server image');
});

t.test('the task namespace enforces, audits and warns at Pod Security restricted; the system namespace admits the privileged server', async (t) => {
  const tasks = nsLabels(TASKS);
  for (const mode of ['enforce', 'audit', 'warn']) t.equal(tasks[`pod-security.kubernetes.io/${mode}`], 'restricted', mode);
  t.equal(nsLabels(SYSTEM)['pod-security.kubernetes.io/enforce'], 'privileged');
  t.same(all('Namespace').map((n: Obj) => n.metadata.name).sort(), [SYSTEM, TASKS]);
});

t.test('RBAC: one Role in the task namespace granting exactly the engine calls, bound to the server account', async (t) => {
  t.same(all('ClusterRole'), [], 'no ClusterRole');
  t.same(all('ClusterRoleBinding'), [], 'no ClusterRoleBinding');
  const roles = all('Role');
  t.equal(roles.length, 1);
  const role = roles[0];
  t.equal(role.metadata.namespace, TASKS);
  for (const r of role.rules) {
    for (const k of ['apiGroups', 'resources', 'verbs']) t.notOk((r[k] as string[]).some((v) => v.includes('*')), `no wildcard in ${k}: ${JSON.stringify(r)}`);
    t.notOk(r.resourceNames || r.nonResourceURLs, 'plain resource rules');
  }
  t.same(
    [...rightsOfRole(role.rules)].sort(),
    [
      '/pods delete',
      '/pods list',
      '/pods watch',
      '/pods/attach create',
      '/pods/attach get',
      '/pods/log get',
      '/secrets create',
      '/secrets update',
      'batch/jobs create',
      'batch/jobs delete',
      'batch/jobs get',
      'batch/jobs list',
      'batch/jobs patch',
    ],
    'exactly these rights',
  );
  const binding = all('RoleBinding');
  t.equal(binding.length, 1);
  t.match(binding[0], { metadata: { namespace: TASKS }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name } });
  const account = one('ServiceAccount', deployment.spec.template.spec.serviceAccountName);
  t.same(binding[0].subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: SYSTEM }]);
  t.equal(account.metadata.namespace, SYSTEM);
});

t.test("RBAC: the Role's rights are the ones the engine's source calls for", async (t) => {
  const used = rightsOfDir(join(root, 'src', 'runtime', 'kubernetes'));
  if (!used) throw new Error('src/runtime/kubernetes has no Kubernetes API calls to compare');
  t.same(used.unknown, [], 'every call is one this test can place');
  t.same([...used.rights].sort(), [...rightsOfRole(one('Role', 'sandboxshift-runtime').rules)].sort(), 'granted = called');
});

t.test('NetworkPolicy: task pods get nothing but TCP to the egress proxy pods; no DNS', async (t) => {
  const policies = all('NetworkPolicy').filter((p: Obj) => p.metadata.namespace === TASKS);
  const deny = one('NetworkPolicy', 'sandboxshift-tasks-default-deny');
  t.same(deny.spec, { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }, 'every pod of the namespace: no ingress, no egress');
  const applying = policies.filter((p: Obj) => selects(p.spec.podSelector, TASK_POD));
  t.same(applying.map((p: Obj) => p.metadata.name).sort(), ['sandboxshift-tasks-default-deny', 'sandboxshift-tasks-to-egress-proxy']);
  for (const p of applying) t.notOk(p.spec.ingress?.length, `${p.metadata.name}: no ingress allowed`);
  const egress = applying.flatMap((p: Obj) => p.spec.egress ?? []);
  t.equal(egress.length, 1, 'one egress rule in all');
  const [rule] = egress;
  t.same(rule.ports, [{ protocol: 'TCP', port: egressPort }], 'TCP on the listener port only (no UDP, no 53)');
  t.equal(rule.to.length, 1);
  const peer = rule.to[0];
  t.notOk(peer.ipBlock, 'no address block');
  t.ok(peer.namespaceSelector && peer.podSelector, 'a namespace and a pod selector together (one peer)');
  t.ok(selects(peer.namespaceSelector, nsLabels(SYSTEM)) || peer.namespaceSelector.matchLabels['kubernetes.io/metadata.name'] === SYSTEM, 'the system namespace');
  t.notOk(peer.namespaceSelector.matchLabels['kubernetes.io/metadata.name'] === TASKS, 'not the task namespace');
  t.ok(selects(peer.podSelector, podLabels), 'the pod that runs the proxy listener');
  t.notOk(selects(peer.podSelector, TASK_POD), 'not task pods');
});

t.test('NetworkPolicy: the proxy pod reaches the internet, never private, link-local or metadata addresses; takes its port from task pods only', async (t) => {
  const proxy = one('NetworkPolicy', 'sandboxshift-egress-proxy');
  t.equal(proxy.metadata.namespace, SYSTEM);
  t.ok(selects(proxy.spec.podSelector, podLabels));
  const blocks = proxy.spec.egress.flatMap((r: Obj) => r.to.filter((p: Obj) => p.ipBlock).map((p: Obj) => p.ipBlock));
  const v4 = blocks.find((b: Obj) => b.cidr === '0.0.0.0/0');
  t.ok(v4, 'IPv4 internet');
  for (const c of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '169.254.169.254/32', '127.0.0.0/8', '100.64.0.0/10']) t.ok(v4.except.includes(c), `except ${c}`);
  const v6 = blocks.find((b: Obj) => b.cidr === '::/0');
  for (const c of ['fc00::/7', 'fe80::/10', '::1/128']) t.ok(v6?.except.includes(c), `except ${c}`);
  t.same(blocks.filter((b: Obj) => b.cidr !== '0.0.0.0/0' && b.cidr !== '::/0'), [], 'no other address block in the proxy policy');
  const dns = proxy.spec.egress.find((r: Obj) => r.ports?.some((p: Obj) => p.port === 53));
  t.match(dns, { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }] }, 'DNS only to the cluster DNS');
  const ingress = one('NetworkPolicy', 'sandboxshift-api-ingress');
  const proxyIn = ingress.spec.ingress.filter((r: Obj) => r.ports.some((p: Obj) => p.port === egressPort));
  t.equal(proxyIn.length, 1);
  t.ok(proxyIn[0].from.length === 1 && selects(proxyIn[0].from[0].podSelector, TASK_POD) && proxyIn[0].from[0].namespaceSelector.matchLabels['kubernetes.io/metadata.name'] === TASKS, 'the proxy port from task pods only');
});

t.test('ResourceQuota and LimitRange bound the task namespace, and admit the largest task the server allows', async (t) => {
  const config = parseConfig(rawConfig);
  const quota = all('ResourceQuota');
  t.equal(quota.length, 1);
  t.equal(quota[0].metadata.namespace, TASKS);
  for (const k of ['pods', 'count/jobs.batch', 'count/secrets', 'requests.cpu', 'requests.memory', 'limits.cpu', 'limits.memory', 'requests.ephemeral-storage']) t.ok(quota[0].spec.hard[k], `quota on ${k}`);
  const ranges = all('LimitRange');
  t.equal(ranges.length, 1);
  t.equal(ranges[0].metadata.namespace, TASKS);
  const container = ranges[0].spec.limits.find((l: Obj) => l.type === 'Container');
  t.ok(container.default && container.defaultRequest && container.max, 'defaults and maxima per container');
  t.ok(Number(container.max.cpu) >= config.maxima.cpus, `max cpu ${container.max.cpu} ≥ maxima.cpus ${config.maxima.cpus}`);
  t.ok(mebibytes(container.max.memory) >= config.maxima.memoryMb, `max memory ${container.max.memory} ≥ maxima.memoryMb ${config.maxima.memoryMb}`);
  t.ok(mebibytes(container.max['ephemeral-storage']) >= config.workspaces.quotaMb, 'max ephemeral storage ≥ a workspace');
  t.ok(mebibytes(quota[0].spec.hard['requests.memory']) >= config.maxima.memoryMb * config.queue.concurrency, 'the quota holds queue.concurrency largest tasks');
});

t.test('the API Deployment: one replica, Recreate, privileged for loop mounts, SQLite on the claim, the config from the ConfigMap', async (t) => {
  t.equal(deployment.metadata.namespace, SYSTEM);
  t.equal(deployment.spec.replicas, 1);
  t.same(deployment.spec.strategy, { type: 'Recreate' });
  t.ok(selects(deployment.spec.selector, podLabels));
  t.equal(server.securityContext.privileged, true);
  t.match(texts.get(deployment.__file), /# Privileged because the server's workspace storage loop-mounts/, 'the manifest says why');
  const spec = deployment.spec.template.spec;
  const volume = (name: string) => spec.volumes.find((v: Obj) => v.name === name);
  const mountOf = (claimOrMap: (v: Obj) => boolean) => server.volumeMounts.find((m: Obj) => claimOrMap(volume(m.name)));
  const data = mountOf((v) => v.persistentVolumeClaim?.claimName === 'sandboxshift-data');
  t.equal(data?.mountPath, rawConfig.dataDir, 'the data directory is on the claim');
  one('PersistentVolumeClaim', 'sandboxshift-data');
  const cfg = mountOf((v) => v.configMap?.name === configMap.metadata.name);
  const configFile = server.env.find((e: Obj) => e.name === 'SANDBOXSHIFT_CONFIG')?.value;
  t.equal(configFile, `${cfg.mountPath}/sandboxshift.yaml`, 'SANDBOXSHIFT_CONFIG names the mounted ConfigMap key');
  t.equal(cfg.readOnly, true);
  t.equal(spec.automountServiceAccountToken, true, 'in-cluster credentials');
  const port = (name: string) => server.ports.find((p: Obj) => p.name === name)?.containerPort;
  t.equal(port('http'), rawConfig.listen.port);
  t.equal(port('egress'), egressPort);
  t.equal(server.readinessProbe.httpGet.path, '/readyz');
});

t.test('Services: the API and the egress proxy, both selecting the server pod', async (t) => {
  const api = one('Service', 'sandboxshift-api');
  const egress = one('Service', 'sandboxshift-egress');
  for (const s of [api, egress]) {
    t.equal(s.metadata.namespace, SYSTEM);
    t.ok(selects({ matchLabels: s.spec.selector }, podLabels), `${s.metadata.name} selects the server pod`);
  }
  t.same(egress.spec.ports.map((p: Obj) => [p.port, p.targetPort, p.protocol]), [[egressPort, 'egress', 'TCP']]);
  t.equal(egress.spec.publishNotReadyAddresses, true, 'the proxy stays reachable while the server is not ready');
  const advertised = new URL(rawConfig.egress.tcp.advertiseUrl);
  t.equal(advertised.hostname, `${egress.metadata.name}.${SYSTEM}.svc`, 'advertiseUrl names the egress Service');
  t.equal(Number(advertised.port), egressPort);
  t.same(api.spec.ports.map((p: Obj) => [p.port, p.targetPort]), [[rawConfig.listen.port, 'http']]);
  t.ok(rawConfig.http.allowedHosts.includes(`${api.metadata.name}.${SYSTEM}.svc`), 'the API Service name is an allowed Host');
});

/** Mi from a Kubernetes quantity (Ki, Mi, Gi, Ti). */
function mebibytes(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)$/.exec(q);
  if (!m) throw new Error(`quantity ${q}`);
  return Number(m[1]) * { Ki: 1 / 1024, Mi: 1, Gi: 1024, Ti: 1024 * 1024 }[m[2] as 'Ki' | 'Mi' | 'Gi' | 'Ti'];
}

t.test("the ConfigMap's sandboxshift.yaml passes the server's config schema, for the Kubernetes engine", async (t) => {
  t.equal(rawConfig.engine.kind, 'kubernetes');
  t.equal(rawConfig.engine.kubernetes.namespace, TASKS);
  t.equal(rawConfig.engine.kubernetes.kubeconfig, null, 'in-cluster credentials');
  const config = parseConfig(rawConfig);
  t.match(config.engine, { kind: 'kubernetes', kubernetes: { namespace: TASKS, networkPolicyCheck: 'canary' } });
  t.match(config.egress.tcp, { listen: `0.0.0.0:${egressPort}`, advertiseUrl: rawConfig.egress.tcp.advertiseUrl });
  t.equal(config.listen.host, '0.0.0.0');
  t.ok(config.auth.keys.length > 0, 'a server listening beyond loopback needs a key');
  t.ok(
    config.auth.keys.every((k) => k.sha256 === '0'.repeat(64)),
    'the shipped key is the locked placeholder (no key text hashes to it)',
  );
  const canary: string | undefined = rawConfig.engine.kubernetes.canaryTarget;
  t.ok(canary && listenAddress(canary), 'the canary target is an IP literal and port (task pods have no DNS)');
  const named = { ...rawConfig, engine: { ...rawConfig.engine, kubernetes: { ...rawConfig.engine.kubernetes, canaryTarget: 'kubernetes.default.svc:443' } } };
  t.throws(() => parseConfig(named), /canaryTarget[\s\S]*IP address/, 'a host name as the canary target is refused: a pod without DNS could not resolve it, which would read as blocked');
});
