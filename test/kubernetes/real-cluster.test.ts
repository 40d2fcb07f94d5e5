/**
 * Opt-in: the engine contract against a real cluster. Runs only when KUBECONFIG names a kubeconfig
 * (namespace SANDBOXSHIFT_TEST_NAMESPACE, default sandboxshift-tasks, labelled for the Pod Security
 * restricted level; image SANDBOXSHIFT_TEST_IMAGE, default sandboxshift/runtime-python:3.11,
 * pullable by the cluster). With SANDBOXSHIFT_TEST_CANARY_TARGET (host:port no task pod may reach)
 * it also runs the NetworkPolicy self-test and expects the policy to hold. What only this suite
 * proves: admission of the generated pods, fsGroup on emptyDir, NetworkPolicy enforcement.
 */
import { pino } from 'pino';
import t from 'tap';
import { runCanary } from '../../src/runtime/kubernetes/canary.js';
import { engineContract } from '../helpers/engine-contract.js';
import { KUBE_SHAPE, kubeEngine, kubeSettings } from '../helpers/kube.js';

const kubeconfig = process.env.KUBECONFIG;
if (!kubeconfig) {
  t.skip('SKIPPED, not passed: KUBECONFIG is not set, so the real-cluster suite did not run (set KUBECONFIG to a cluster to run it)');
} else {
  const namespace = process.env.SANDBOXSHIFT_TEST_NAMESPACE ?? 'sandboxshift-tasks';
  const image = process.env.SANDBOXSHIFT_TEST_IMAGE ?? KUBE_SHAPE.image;
  const settings = kubeSettings(t, kubeconfig.split(':')[0]!, namespace, { podStartTimeoutMs: 300_000 });
  engineContract(t, { shape: { ...KUBE_SHAPE, image }, engine: async () => kubeEngine(settings) });
  const target = process.env.SANDBOXSHIFT_TEST_CANARY_TARGET;
  if (target) {
    t.test('the cluster enforces the default-deny NetworkPolicy (canary)', async (t) => {
      const engine = kubeEngine(settings);
      t.teardown(() => engine.close());
      const result = await runCanary(engine, target, image, pino({ level: 'silent' }));
      t.equal(result.enforced, true, result.refusal ?? 'the canary could not reach its target');
    });
  }
}
