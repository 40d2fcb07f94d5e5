import t from 'tap';
import { classifyExit } from '../../src/tasks/model.js';
import { TaskQueue } from '../../src/tasks/queue.js';
import { checkRelativePath } from '../../src/workspace/paths.js';

t.test('exit classification', async (t) => {
  t.same(classifyExit({ exitCode: 0, oomKills: 0 }, null), { status: 'succeeded', reason: null });
  t.same(classifyExit({ exitCode: 3, oomKills: 0 }, null), { status: 'failed', reason: null });
  t.same(classifyExit({ exitCode: 137, oomKills: 0 }, null), { status: 'failed', reason: null }, 'a 137 we did not send is not oom');
  t.same(classifyExit({ exitCode: 137, oomKills: 1 }, null), { status: 'failed', reason: 'oom' });
  t.same(classifyExit({ exitCode: 1, oomKills: 2 }, null), { status: 'failed', reason: 'oom' }, 'any non-zero exit after a kill in the tree is oom');
  t.same(classifyExit({ exitCode: 0, oomKills: 1 }, null), { status: 'succeeded', reason: null }, 'a task that survived a child kill still succeeded');
  t.same(classifyExit({ exitCode: 137, oomKills: 0 }, 'timeout'), { status: 'timed_out', reason: 'timeout' });
  t.same(classifyExit({ exitCode: 0, oomKills: 0 }, 'cancel'), { status: 'cancelled', reason: 'cancelled' });
  t.same(classifyExit({ exitCode: null, oomKills: 0 }, null), { status: 'error', reason: 'engine_error' });
});

t.test('the queue: concurrency, queue room, busy workspaces skipped without blocking', async (t) => {
  const q = new TaskQueue<{ id: string; workspaceId: string; tenant: string }>(2, 3);
  q.push({ id: 'a', workspaceId: 'w1', tenant: 't' });
  q.push({ id: 'b', workspaceId: 'w1', tenant: 't' });
  q.push({ id: 'c', workspaceId: 'w2', tenant: 't' });
  t.notOk(q.hasRoom() && q.queuedCount > 3);
  t.same(q.takeRunnable().map((x) => x.id), ['a', 'c'], 'b waits for w1; c runs past it');
  t.same(q.takeRunnable(), [], 'concurrency 2 reached');
  q.push({ id: 'd', workspaceId: 'w3', tenant: 't' });
  q.done('a');
  t.same(q.takeRunnable().map((x) => x.id), ['b']);
  t.equal(q.queuedCount, 1);
  t.ok(q.remove('d'));
  t.notOk(q.remove('d'));
  q.push({ id: 'e', workspaceId: 'w4', tenant: 't' });
  q.push({ id: 'f', workspaceId: 'w5', tenant: 't' });
  q.push({ id: 'g', workspaceId: 'w6', tenant: 't' });
  t.notOk(q.hasRoom(), 'three waiting fill a queue of 3');
});

t.test('relative workspace paths', async (t) => {
  const limits = { maxDepth: 3, maxPathBytes: 20 };
  t.same(checkRelativePath('a/b/c.txt', limits), ['a', 'b', 'c.txt']);
  t.throws(() => checkRelativePath('/etc/passwd', limits), { code: 'WORKSPACE_PATH_ESCAPE', details: { rule: 'absolute' } });
  t.throws(() => checkRelativePath('a/../../x', limits), { code: 'WORKSPACE_PATH_ESCAPE', details: { rule: 'dot_dot' } });
  t.throws(() => checkRelativePath('a/./b', limits), { code: 'WORKSPACE_PATH_INVALID' });
  t.throws(() => checkRelativePath('', limits), { code: 'WORKSPACE_PATH_INVALID' });
  t.throws(() => checkRelativePath('a\0b', limits), { code: 'WORKSPACE_PATH_INVALID', details: { rule: 'nul_byte' } });
  t.throws(() => checkRelativePath('a/b/c/d', limits), { code: 'WORKSPACE_PATH_TOO_DEEP', details: { limit: 3 } });
  t.throws(() => checkRelativePath('x'.repeat(21), limits), { code: 'WORKSPACE_PATH_INVALID', details: { rule: 'too_long', limit: 20 } });
});

t.test('limits: defaults fill in, maxima refuse with the field and bound', async (t) => {
  const { resolveLimits } = await import('../../src/tasks/limits.js');
  const { parseConfig } = await import('../../src/config/load.js');
  const config = parseConfig({});
  const body = { command: 'true', env: {}, resources: {}, image: 'auto', network: { allow: [] }, stdin: false };
  t.same(resolveLimits(body, config), { resources: { cpus: 1, memoryMb: 512, pids: 256 }, timeoutSeconds: 300, env: {}, secretEnv: {}, setup: null, command: body.command, fromFile: [] });
  t.same(resolveLimits({ ...body, resources: { cpus: 2, memoryMb: 4096 }, timeoutSeconds: 3600 }, config).resources, { cpus: 2, memoryMb: 4096, pids: 256 });
  t.throws(() => resolveLimits({ ...body, resources: { cpus: 2.5 } }, config), { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'resources.cpus', value: 2.5, maximum: 2 } });
  t.throws(() => resolveLimits({ ...body, command: 'x'.repeat(64 * 1024 + 1) }, config), { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'command', maximum: 64 * 1024 } });
  const env = Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`V${i}`, '1']));
  t.throws(() => resolveLimits({ ...body, env }, config), { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'env', value: 129, maximum: 128 } });
  t.throws(() => resolveLimits({ ...body, env: { BIG: 'x'.repeat(32 * 1024 + 1) } }, config), { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'env.BIG' } });
});

t.test('secretEnv: bounded by count and value size, never echoing a value; names apart from env', async (t) => {
  const { resolveLimits } = await import('../../src/tasks/limits.js');
  const { parseConfig } = await import('../../src/config/load.js');
  const { createTaskBody } = await import('../../src/tasks/schemas.js');
  const config = parseConfig({ requests: { secretEntries: 2, secretValueBytes: 8 } });
  const body = createTaskBody.parse({ command: 'true' });
  const many = { A: '1', B: '2', C: '3' };
  t.throws(() => resolveLimits({ ...body, secretEnv: many }, config), { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'secretEnv', value: 3, maximum: 2 } });
  const err = t.throws(() => resolveLimits({ ...body, secretEnv: { TOKEN: 'hunter2-too-long' } }, config), {
    code: 'LIMIT_ABOVE_MAXIMUM',
    details: { field: 'secretEnv.TOKEN', maximum: 8 },
  }) as Error & { details: unknown };
  t.notMatch(JSON.stringify(err.details) + err.message, /hunter2/, 'the error names the variable, not its value');
  // The workspace file's plain default of the same name gives way to the secret.
  const r = resolveLimits({ ...body, secretEnv: { TOKEN: 's3cr3t' } }, config, { env: { TOKEN: 'plain', OTHER: 'x' } });
  t.same(r.env, { OTHER: 'x' });
  t.same(r.secretEnv, { TOKEN: 's3cr3t' });
  const clash = createTaskBody.safeParse({ command: 'true', env: { TOKEN: 'a' }, secretEnv: { TOKEN: 'b' } });
  t.match(clash.error?.issues, [{ path: ['secretEnv', 'TOKEN'], message: /also set in env/ }]);
  t.notOk(createTaskBody.safeParse({ command: 'true', secretEnv: { HOME: '/x' } }).success, 'HOME is the server\'s');
  t.notOk(createTaskBody.safeParse({ command: 'true', secretEnv: { 'BAD-NAME': 'x' } }).success, 'names are shell variable names');
  t.notOk(createTaskBody.safeParse({ command: 'true', secretEnv: { A: 'a\0b' } }).success, 'no NUL');
});
