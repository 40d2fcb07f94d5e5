import t from 'tap';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { AppError } from '../../src/errors.js';
import { chooseIsolation, IsolationAvailability } from '../../src/tasks/isolation.js';

const problems = (raw: unknown) => {
  try {
    parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

t.test('engine.runtime is refused, naming engine.isolation; the old values are not accepted either', async (t) => {
  for (const runtime of ['runc', 'runsc']) {
    const p = problems({ engine: { runtime } });
    t.equal(p.length, 1, `one problem for runtime: ${runtime}`);
    t.match(p[0], /^engine\.runtime: replaced by engine\.isolation \(runc or gvisor; runsc is gvisor\)/);
  }
  t.match(problems({ engine: { runtime: 'runc', isolation: 'kata' } }), [/^engine\.runtime: replaced/, /^engine\.isolation: /], 'other problems are still listed');
  t.same(problems({ engine: { isolation: 'gvisor', allowedIsolation: ['runc', 'gvisor'] } }), []);
});

t.test('isolation defaults, bounds and the default being allowed', async (t) => {
  t.match(parseConfig({}).engine, { isolation: 'runc', allowedIsolation: ['runc'], gvisorSocket: null });
  t.match(problems({ engine: { isolation: 'gvisor' } }), ['engine.isolation: engine.isolation must be one of engine.allowedIsolation']);
  t.match(problems({ engine: { allowedIsolation: [] } }), [/^engine\.allowedIsolation: /]);
  t.match(problems({ engine: { allowedIsolation: ['runc', 'runc'] } }), [/must not repeat/]);
  t.match(problems({ engine: { allowedIsolation: ['runc', 'kata'] } }), [/^engine\.allowedIsolation\.1: /]);
});

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) return { code: err.code, details: err.details };
    throw err;
  }
  return null;
};

t.test('a task gets the default isolation, or one it asks for among the allowed ones', async (t) => {
  const both = parseConfig({ engine: { allowedIsolation: ['runc', 'gvisor'] } }).engine;
  const ready = new IsolationAvailability();
  ready.set('gvisor', { usable: true, reason: null });
  t.equal(chooseIsolation(undefined, both, ready), 'runc');
  t.equal(chooseIsolation('gvisor', both, ready), 'gvisor');
  const gvDefault = parseConfig({ engine: { isolation: 'gvisor', allowedIsolation: ['gvisor'] } }).engine;
  t.equal(chooseIsolation(undefined, gvDefault, ready), 'gvisor');
  t.same(code(() => chooseIsolation('runc', gvDefault, ready)), { code: 'ISOLATION_NOT_ALLOWED', details: { isolation: 'runc', allowed: ['gvisor'] } });
});

t.test('not allowed is 422 naming the allowed values; allowed but unusable is 503 with the reason', async (t) => {
  const runcOnly = parseConfig({}).engine;
  const none = new IsolationAvailability();
  t.same(code(() => chooseIsolation('gvisor', runcOnly, none)), { code: 'ISOLATION_NOT_ALLOWED', details: { isolation: 'gvisor', allowed: ['runc'] } });
  t.same(code(() => chooseIsolation('kata', runcOnly, none)), { code: 'ISOLATION_NOT_ALLOWED', details: { isolation: 'kata', allowed: ['runc'] } });
  const both = parseConfig({ engine: { allowedIsolation: ['runc', 'gvisor'] } }).engine;
  t.same(code(() => chooseIsolation('gvisor', both, none)), { code: 'ISOLATION_UNAVAILABLE', details: { isolation: 'gvisor', reason: 'not set up on this server' } });
  const broken = new IsolationAvailability();
  broken.set('gvisor', { usable: false, reason: 'runsc is not installed' });
  t.same(code(() => chooseIsolation('gvisor', both, broken)), { code: 'ISOLATION_UNAVAILABLE', details: { isolation: 'gvisor', reason: 'runsc is not installed' } });
  t.equal(chooseIsolation(undefined, both, broken), 'runc', 'runc tasks are unaffected');
});
