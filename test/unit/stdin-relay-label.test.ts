import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { FakeEngine } from '../helpers/fake-engine.js';

// Which way a task's stdin goes is decided by its image's labels: through the pipe the relay
// reads when the relay has the stdin mode, else through the engine's attach (with a warning).
const WITH = 'localhost/sandboxshift-test/with-stdin:1';
const WITHOUT = 'localhost/sandboxshift-test/without-stdin:1';
const engine = new FakeEngine({
  [WITH]: { 'io.sandboxshift.relay': '/usr/local/bin/sbx-relay', 'io.sandboxshift.relay.stdin': '1' },
  [WITHOUT]: { 'io.sandboxshift.relay': '/usr/local/bin/sbx-relay' },
});
const srv = await buildTestApp({
  engine,
  config: {
    images: {
      languages: { python: { image: WITH, build: 'x' }, node: { image: WITHOUT, build: 'x' } },
      multi: null,
      default: 'python',
      markers: { 'requirements.txt': 'python', 'package.json': 'node' },
    },
  },
});
t.teardown(() => srv.close());

async function started(body: Record<string, unknown>) {
  const before = engine.started.length;
  const r = await srv.app.inject({ method: 'POST', url: '/v1/tasks', payload: body });
  t.equal(r.statusCode, 202, r.body);
  for (let i = 0; i < 100 && engine.started.length === before; i++) await new Promise((r) => setTimeout(r, 10));
  return engine.started[engine.started.length - 1]!.job;
}

t.test('an image whose relay has the stdin mode: the job names the relay', async (t) => {
  const job = await started({ command: 'cat', stdin: true, image: WITH });
  t.equal(job.stdin, true);
  t.equal(job.stdinRelay, '/usr/local/bin/sbx-relay');
});

t.test('an image whose relay lacks it: stdin still taken, through the attach', async (t) => {
  const job = await started({ command: 'cat', stdin: true, image: WITHOUT });
  t.equal(job.stdin, true);
  t.equal(job.stdinRelay, undefined);
});

t.test('a task without stdin: no stdin relay', async (t) => {
  const job = await started({ command: 'true', image: WITH });
  t.equal(job.stdinRelay, undefined);
});
