import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, configPath, loadConfig, parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-config-'));
const write = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

t.test('no file means the embedded defaults', async (t) => {
  const c = loadConfig(null);
  t.match(c, {
    listen: { host: '127.0.0.1', port: 8080 },
    dataDir: '.sandboxshift-data',
    engine: { socket: null, isolation: 'runc', allowedIsolation: ['runc'], gvisorSocket: null },
    defaults: { cpus: 1, memoryMb: 512, pids: 256, timeoutSeconds: 300 },
    maxima: { timeoutSeconds: 3600, memoryMb: 4096 },
    queue: { concurrency: 2, maxQueued: 100 },
    output: { headBytes: 8 * 1024 * 1024, tailBytes: 8 * 1024 * 1024 },
  });
  t.same(c.images.markers, {
    'requirements.txt': 'python',
    'pyproject.toml': 'python',
    'package.json': 'node',
    'go.mod': 'go',
    'Cargo.toml': 'rust',
    'pom.xml': 'java',
    'build.gradle': 'java',
  });
  t.equal(c.images.languages.python!.image, 'sandboxshift/runtime-python:3.11');
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.queue), 'the result is frozen');
});

t.test('a bad file lists every problem by its key path', async (t) => {
  const p = write(
    'bad.yaml',
    ['listen:', '  port: 70000', 'queue:', '  concurrency: 0', '  bogus: 1', 'defaults:', '  memoryMb: 8192', 'images:', '  languages: {python: {image: "Not Valid"}}', '  multi: null', '  default: ruby', '  markers: {}'].join('\n'),
  );
  const err = t.throws(() => loadConfig(p)) as unknown as ConfigError;
  t.type(err, ConfigError);
  const joined = err.problems.join('\n');
  t.match(joined, /listen\.port:/);
  t.match(joined, /queue\.concurrency:/);
  t.match(joined, /queue: .*bogus/);
  t.match(joined, /images\.languages\.python\.image:/);
  t.ok(err.problems.length >= 4, `all problems are listed (${err.problems.length})`);
  t.match(err.message, new RegExp(p.replace(/[.]/g, '\\.')));
});

t.test('cross-field rules: defaults within maxima, languages known', async (t) => {
  const e1 = t.throws(() => parseConfig({ defaults: { memoryMb: 8192 } })) as unknown as ConfigError;
  t.match(e1.problems.join('\n'), /defaults\.memoryMb: default 8192 is above maxima\.memoryMb 4096/);
  const e2 = t.throws(() =>
    parseConfig({ images: { languages: { python: { image: 'a/b:1' } }, multi: null, default: 'python', markers: { 'go.mod': 'go' } } }),
  ) as unknown as ConfigError;
  t.match(e2.problems.join('\n'), /images\.markers\.go\.mod: language "go" is not in images\.languages/);
});

t.test('YAML syntax errors and unreadable files are reported, not thrown raw', async (t) => {
  t.throws(() => loadConfig(write('syntax.yaml', 'listen: [unclosed')), /not valid YAML/);
  t.throws(() => loadConfig(join(dir, 'missing.yaml')), /cannot read the file/);
});

t.test('a valid file overrides defaults', async (t) => {
  const c = loadConfig(write('ok.yaml', 'listen:\n  port: 9090\nqueue:\n  concurrency: 4\n'));
  t.equal(c.listen.port, 9090);
  t.equal(c.queue.concurrency, 4);
  t.equal(c.queue.maxQueued, 100);
});

t.test('the config path comes from --config, then SANDBOXSHIFT_CONFIG', async (t) => {
  t.equal(configPath(['--config', 'a.yaml'], { SANDBOXSHIFT_CONFIG: 'b.yaml' }), 'a.yaml');
  t.equal(configPath(['--config=c.yaml'], {}), 'c.yaml');
  t.equal(configPath([], { SANDBOXSHIFT_CONFIG: 'b.yaml' }), 'b.yaml');
  t.equal(configPath([], {}), null);
  t.throws(() => configPath(['--config'], {}), ConfigError);
});

t.test('every field of the schema has a description', async (t) => {
  const missing: string[] = [];
  const walk = (schema: Record<string, unknown>, path: string) => {
    if (!schema.description && path) missing.push(path);
    const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
    for (const [k, v] of Object.entries(props)) walk(v, path ? `${path}.${k}` : k);
  };
  walk(configSchema.toJSONSchema({ io: 'input', unrepresentable: 'any' }) as Record<string, unknown>, '');
  t.same(missing.filter((m) => !/^images\.(languages|markers|multi)\./.test(m)), [], 'described fields');
});

t.test('the README example configurations are valid and match the defaults they show', async (t) => {
  const { readFileSync } = await import('node:fs');
  const { parse } = await import('yaml');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  // Server configuration examples are the yaml blocks marked `<!-- config-example -->`; other yaml
  // blocks (a workspace's own sandboxshift.yaml) are not server configuration.
  const blocks = [...readme.matchAll(/<!-- config-example -->\n```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  t.ok(blocks.length >= 2, 'the README has its configuration examples');
  const defaults = parseConfig({}) as unknown as Record<string, unknown>;
  const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  // Every value an example shows (down to its leaves; an empty map or list is a leaf) is the default.
  const compare = (shown: unknown, actual: unknown, path: string): void => {
    if (isPlain(shown) && Object.keys(shown).length > 0) {
      t.ok(isPlain(actual), `${path} is a section`);
      for (const [k, v] of Object.entries(shown)) compare(v, (actual as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
    } else {
      t.same(actual, shown, `README shows the embedded default of ${path}`);
    }
  };
  for (const block of blocks) {
    const example = parse(block) as Record<string, unknown>;
    t.doesNotThrow(() => parseConfig(example), 'the example is a valid configuration');
    compare(example, defaults, '');
  }
});

t.test('the per-UID process limit can never bind before the per-task pids limit', async (t) => {
  const e = t.throws(() => parseConfig({ queue: { concurrency: 64 }, maxima: { pids: 1024 } })) as unknown as ConfigError;
  t.match(e.problems.join('\n'), /sandbox\.nproc: must exceed queue\.concurrency × maxima\.pids \(64 × 1024\)/);
  t.doesNotThrow(() => parseConfig({ queue: { concurrency: 16 }, maxima: { pids: 1024 } }));
});

t.test('workspace storage and lifecycle fields: defaults and bounds', async (t) => {
  t.match(parseConfig({}).workspaces, { quotaMb: 1024, ttlSeconds: 7 * 86400, sweepIntervalSeconds: 300, projectFileBytes: 65536, readbackIdleSeconds: 60 });
  const e = t.throws(() => parseConfig({ workspaces: { quotaMb: 4, ttlSeconds: 0, projectFileBytes: 10 } })) as unknown as ConfigError;
  const joined = e.problems.join('\n');
  t.match(joined, /workspaces\.quotaMb:/);
  t.match(joined, /workspaces\.ttlSeconds:/);
  t.match(joined, /workspaces\.projectFileBytes:/);
});
