import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { KubernetesEngine, type KubernetesSettings } from '../../src/runtime/kubernetes/engine.js';
import type { SandboxShape } from '../../src/runtime/engine.js';

export const KUBE_SHAPE: SandboxShape = { image: 'sandboxshift/runtime-python:3.11', cpus: 1, memoryMb: 256, pids: 64, isolation: 'runc' };

/** Engine settings for a test: the cluster of `kubeconfig`, a temporary spool directory. */
export function kubeSettings(t: { teardown(fn: () => unknown): void }, kubeconfig: string, namespace: string, over: Partial<KubernetesSettings> = {}): KubernetesSettings {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-kube-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return {
    serverId: `srv_test_${process.pid}`,
    namespace,
    kubeconfig,
    runtimeClassName: null,
    hostUsers: true,
    ttlSecondsAfterFinished: 300,
    tmpfsMb: 16,
    workspaceMb: 64,
    graceSeconds: 1,
    startAllowanceSeconds: 60,
    images: {},
    maxWorkspaceBytes: 8 * 1024 * 1024,
    spoolDir: join(dir, 'spool'),
    writeBack: {
      paths: { maxDepth: 32, maxPathBytes: 4096 },
      archive: { maxCompressedBytes: 64 << 20, maxExpandedBytes: 64 << 20, maxEntries: 10_000, maxCompressionRatio: 1000, ratioGraceBytes: 1 << 20 },
    },
    podStartTimeoutMs: 60_000,
    ...over,
  };
}

export function kubeEngine(settings: KubernetesSettings): KubernetesEngine {
  return new KubernetesEngine(settings, pino({ level: process.env.SANDBOXSHIFT_TEST_LOG ?? 'silent' }));
}
