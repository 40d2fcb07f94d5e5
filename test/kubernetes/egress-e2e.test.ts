/**
 * An allowlisted task on the Kubernetes engine reaches its allowed host through the server's
 * egress TCP listener, with the per-task credential from its Secret, and nothing else: the
 * decisions are recorded as on the Podman path. The fake runs pods without a network namespace
 * (NetworkPolicy not enforced, `networkPolicyCheck: trust`), so the pod reaches the listener on
 * loopback; the upstream is a loopback server this test opened.
 */
import t from 'tap';
import { freePort } from '../helpers/host.js';
import { api, runTask } from '../helpers/client.js';
import { httpUpstream, PROBE_PY } from '../helpers/egress.js';
import { startTestServer } from '../helpers/server.js';
import { startFakeKube } from './fake/index.js';

const web = await httpUpstream(['127.0.0.1']);
const fake = await startFakeKube();
const srv = await startTestServer({
  engine: { kind: 'kubernetes', kubernetes: { kubeconfig: fake.kubeconfigPath, namespace: fake.namespace, networkPolicyCheck: 'trust', podStartTimeoutSeconds: 60 } },
  egress: {
    tcp: { listen: `127.0.0.1:${await freePort()}` },
    testHosts: { 'ok.test': ['127.0.0.1'], 'denied.test': ['127.0.0.1'] },
    allowPrivateRanges: ['127.0.0.1/32'],
    ports: [web.port],
    ceiling: ['ok.test', 'denied.test'],
  },
});
t.teardown(async () => {
  await srv.close();
  await fake.close();
  await web.close();
});

t.test('the allowed host through the proxy, with the task credential; another host refused; both recorded', async (t) => {
  const r = await runTask(srv.url, [`python3 probe.py http http://ok.test:${web.port}/k8s`, `python3 probe.py http http://denied.test:${web.port}/no`].join('; '), {
    workspace: { files: { 'probe.py': PROBE_PY } },
    network: { allow: ['ok.test'] },
  });
  t.equal(r.task.status, 'succeeded', r.stderr);
  const [allowed, denied] = r.stdout.trimEnd().split('\n');
  t.equal(allowed, 'ok 200 hello /k8s', 'the allowed host answered through the proxy');
  t.match(denied, /^http 403 /, 'a host off the allowlist is refused by the proxy');
  t.same(web.seen.filter((s) => s.startsWith('GET /no')), [], 'the refused request never reached the upstream');
  const decisions = (await api(srv.url, 'GET', `/v1/tasks/${r.id}/egress`)).json.decisions.map((d: { host: string; allowed: boolean }) => [d.host, d.allowed]);
  t.same(decisions, [
    ['ok.test', true],
    ['denied.test', false],
  ]);
  const [secret] = fake.objects('secrets').filter((s) => s.metadata.annotations?.['sandboxshift.io/task'] === r.id);
  t.notOk(secret, 'the per-task Secret holding the credential went with its Job');
});
