import t from 'tap';
import { engineContract } from '../helpers/engine-contract.js';
import { KUBE_SHAPE, kubeEngine, kubeSettings } from '../helpers/kube.js';
import { startFakeKube } from './fake/index.js';

// The ContainerEngine contract against the Kubernetes engine, on the in-process fake API server
// and kubelet (the real client library over loopback; the kubelet runs each command for real).
const fake = await startFakeKube();
t.teardown(() => fake.close());
const settings = kubeSettings(t, fake.kubeconfigPath, fake.namespace);

engineContract(t, { shape: KUBE_SHAPE, engine: async () => kubeEngine(settings) });

t.test('nothing is left in the cluster: every Job, pod and Secret was deleted', async (t) => {
  for (const kind of ['jobs', 'pods', 'secrets'] as const) t.same(fake.objects(kind).map((o) => o.metadata.name), [], kind);
});
