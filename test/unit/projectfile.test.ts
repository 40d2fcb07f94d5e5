import t from 'tap';
import { composeCommand, parseMemoryMb, parseProjectFile } from '../../src/workspace/projectfile.js';
import { resolveLimits } from '../../src/tasks/limits.js';
import { parseConfig } from '../../src/config/load.js';

t.test('memory sizes: "4GB" is 4096 MB, "512MB" is 512, a number is MB', async (t) => {
  t.equal(parseMemoryMb('4GB'), 4096);
  t.equal(parseMemoryMb('512MB'), 512);
  t.equal(parseMemoryMb(768), 768);
  t.equal(parseMemoryMb('1.5GB'), 1536);
  t.equal(parseMemoryMb('2g'), 2048);
  t.equal(parseMemoryMb('256'), 256);
  for (const bad of ['lots', '4TB', '-1MB', '0', 0, 1.5, '0.1MB', '', 'GB']) t.equal(parseMemoryMb(bad), null, `${JSON.stringify(bad)} is refused`);
});

t.test('every key is read', async (t) => {
  const p = parseProjectFile(
    [
      'sandbox:',
      '  timeout: 90',
      '  setup: pip install -r requirements.txt',
      'network:',
      '  allow: [api.example.com, "*.example.org"]',
      'resources:',
      '  cpu: 1.5',
      '  memory: 4GB',
      'env:',
      '  DEBUG: 1',
      '  NAME: demo',
      'workspace:',
      '  readonly: true',
    ].join('\n'),
  );
  t.same(p, {
    timeoutSeconds: 90,
    setup: 'pip install -r requirements.txt',
    allow: ['api.example.com', '*.example.org'],
    cpus: 1.5,
    memoryMb: 4096,
    env: { DEBUG: '1', NAME: 'demo' },
    readonly: true,
  });
  t.same(parseProjectFile(''), {}, 'an empty file sets nothing');
  t.same(parseProjectFile('# only a comment\n'), {});
});

t.test('malformed files name the problem and the key', async (t) => {
  const bad = (text: string, key: string | undefined, problem: RegExp) => {
    const err = t.throws(() => parseProjectFile(text)) as unknown as { code: string; details: Record<string, unknown> };
    t.equal(err.code, 'PROJECT_FILE_INVALID');
    if (key) t.equal(err.details.key, key);
    t.match(err.details.problem, problem);
  };
  bad('sandbox: [unclosed', undefined, /not valid YAML/);
  bad('- a\n- b\n', undefined, /mapping/);
  bad('sandbox:\n  timeout: soon\n', 'sandbox.timeout', /number/i);
  bad('sandbox:\n  timeout: 0\n', 'sandbox.timeout', />=1|too small/i);
  bad('resources:\n  memory: lots\n', 'resources.memory', /"4GB"/);
  bad('resources:\n  gpu: 1\n', 'resources', /gpu/);
  bad('sandbx:\n  timeout: 1\n', undefined, /sandbx/);
  bad('env:\n  HOME: /root\n', 'env', /HOME/);
  bad('env:\n  "1BAD": x\n', 'env.1BAD', /shell variable/);
  bad('a: 1\na: 2\n', undefined, /not valid YAML/);
  // An alias bomb is refused, not expanded.
  const bomb = ['a: &a [x,x,x,x,x,x,x,x,x,x]', ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`)].join('\n');
  t.throws(() => parseProjectFile(bomb), { code: 'PROJECT_FILE_INVALID' });
});

t.test('defaults from the file, the request overrides, maxima bound both', async (t) => {
  const config = parseConfig({});
  const body = { command: 'pytest -q', env: {}, resources: {}, image: 'auto', stdin: false };
  const file = parseProjectFile('sandbox: {timeout: 90, setup: make}\nresources: {cpu: 1.5, memory: 1GB}\nenv: {A: file, B: file}\n');
  const r = resolveLimits(body, config, file);
  t.same(r.resources, { cpus: 1.5, memoryMb: 1024, pids: 256 });
  t.equal(r.timeoutSeconds, 90);
  t.same(r.env, { A: 'file', B: 'file' });
  t.equal(r.command, '{ make\n} && { pytest -q\n}');
  t.same(r.fromFile.sort(), ['env', 'resources.cpu', 'resources.memory', 'sandbox.setup', 'sandbox.timeout']);
  const o = resolveLimits({ ...body, timeoutSeconds: 10, resources: { memoryMb: 256 }, env: { B: 'request' } }, config, file);
  t.match(o, { timeoutSeconds: 10, resources: { cpus: 1.5, memoryMb: 256 }, env: { A: 'file', B: 'request' } });
  t.same(o.fromFile.sort(), ['env', 'resources.cpu', 'sandbox.setup']);
  const big = parseProjectFile('resources: {memory: 8GB}\nsandbox: {timeout: 7200}\n');
  t.throws(() => resolveLimits(body, config, big), {
    code: 'LIMIT_ABOVE_MAXIMUM',
    details: { field: 'resources.memory', source: 'sandboxshift.yaml', value: 8192, maximum: 4096 },
  });
  t.throws(() => resolveLimits({ ...body, resources: { memoryMb: 512 } }, config, big), {
    code: 'LIMIT_ABOVE_MAXIMUM',
    details: { field: 'sandbox.timeout', value: 7200, maximum: 3600 },
  }, 'the next file value above its maximum');
  t.doesNotThrow(() => resolveLimits({ ...body, resources: { memoryMb: 512 }, timeoutSeconds: 60 }, config, big), 'overridden file values are not checked');
  t.throws(() => resolveLimits({ ...body, resources: { memoryMb: 8192 } }, config, {}), { details: { field: 'resources.memoryMb' } }, 'request fields keep their names');
});

t.test('setup && command keeps each side whole and runs in the same shell', async (t) => {
  t.equal(composeCommand(null, 'echo hi'), 'echo hi');
  t.equal(composeCommand('cd sub; export X=1', 'false || echo $X # note'), '{ cd sub; export X=1\n} && { false || echo $X # note\n}');
});
