import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { raiseKernelLimits, requiredKernelLimits, SYSCTL_INT_MAX } from '../../src/runtime/kernel-limits.js';

const log = pino({ level: 'silent' });

t.test('the limits cover every running task at its bounds, plus one', async (t) => {
  const limits = requiredKernelLimits({ concurrency: 2, maxPids: 1024, nofile: 1024, maxMemoryMb: 4096 });
  t.same(limits, [
    { key: 'fs/inotify/max_user_instances', required: 2 * 1025 * 1024 + 1 },
    { key: 'fs/inotify/max_user_watches', required: 2 * ((4096 * 2 ** 20) / 64) + 1 },
    { key: 'fs/epoll/max_user_watches', required: 2 * ((4096 * 2 ** 20) / 128) + 1 },
  ]);
});

t.test('limits are raised, never lowered, capped at what the kernel takes', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'sbx-sysctl-'));
  const put = (key: string, v: string) => {
    mkdirSync(dirname(join(root, key)), { recursive: true });
    writeFileSync(join(root, key), v);
  };
  put('a/low', '128\n');
  put('a/high', '9000000\n');
  put('a/huge', '5\n');
  const changed = raiseKernelLimits(
    [
      { key: 'a/low', required: 1000 },
      { key: 'a/high', required: 1000 },
      { key: 'a/huge', required: 2 ** 40 },
      { key: 'a/missing', required: 1 },
    ],
    log,
    root,
  );
  t.same(changed, [
    { key: 'a/low', from: 128, to: 1000 },
    { key: 'a/huge', from: 5, to: SYSCTL_INT_MAX },
  ]);
  t.equal(readFileSync(join(root, 'a/low'), 'utf8'), '1000\n');
  t.equal(readFileSync(join(root, 'a/high'), 'utf8'), '9000000\n', 'a higher limit stays as the operator set it');
});
