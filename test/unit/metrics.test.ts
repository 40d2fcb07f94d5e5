// Metrics fed from the seams (fake emitters behind the same interfaces): the exposition parses
// as Prometheus text and each counter moves with the events it is fed from.
import { EventEmitter } from 'node:events';
import t from 'tap';
import type { ObservedSources } from '../../src/audit/recorder.js';
import { Metrics } from '../../src/metrics/metrics.js';
import type { TaskRecord } from '../../src/tasks/model.js';
import { parsePrometheus } from '../helpers/prometheus.js';

function sources() {
  const lifecycle = new EventEmitter() as ObservedSources['lifecycle'];
  const decisions = new EventEmitter() as ObservedSources['decisions'];
  const workspaces = new EventEmitter() as ObservedSources['workspaces'];
  return { lifecycle, decisions, workspaces, taskOf: () => null };
}

const task = (over: Partial<TaskRecord> = {}): TaskRecord =>
  ({
    id: 'tsk_a',
    tenant: 'default',
    keyId: null,
    status: 'queued',
    createdAt: '2026-12-02T00:00:00.000Z',
    startedAt: null,
    durationMs: null,
    reason: null,
    output: { stdoutBytes: 0, stderrBytes: 0, truncated: false },
    ...over,
  }) as TaskRecord;

t.test('the parser refuses what is not Prometheus text', async (t) => {
  t.throws(() => parsePrometheus('x 1'), /newline/);
  t.throws(() => parsePrometheus('x{a=b} 1\n'), /bad labels/);
  t.throws(() => parsePrometheus('x one\n'), /bad value/);
  t.throws(() => parsePrometheus('# TYPE x nonsense\n'), /unknown type/);
  t.throws(() => parsePrometheus('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n'), /cumulative/);
  t.equal(parsePrometheus('# HELP x y\n# TYPE x counter\nx{a="b\\"c"} 1.5e3\n').value('x', { a: 'b"c' }), 1500);
});

t.test('counters and histograms move with a task\'s life; gauges read their sources', async (t) => {
  const m = new Metrics();
  const s = sources();
  let queued = 0;
  let open = 0;
  m.attach(s, () => queued);
  m.observeSubscribers(() => open);
  const scrape = async () => parsePrometheus(await m.text());

  let p = await scrape();
  for (const [name, type] of [
    ['sandboxshift_tasks_total', 'counter'],
    ['sandboxshift_queue_depth', 'gauge'],
    ['sandboxshift_task_start_seconds', 'histogram'],
    ['sandboxshift_task_duration_seconds', 'histogram'],
    ['sandboxshift_stream_bytes_total', 'counter'],
    ['sandboxshift_subscribers', 'gauge'],
    ['sandboxshift_egress_decisions_total', 'counter'],
    ['sandboxshift_engine_errors_total', 'counter'],
    ['sandboxshift_auth_failures_total', 'counter'],
    ['sandboxshift_pool_ready', 'gauge'],
    ['sandboxshift_pool_handoffs_total', 'counter'],
    ['sandboxshift_pool_cold_starts_total', 'counter'],
  ]) {
    t.equal(p.types.get(name!), type, `${name} is a ${type}`);
  }
  t.equal(p.value('sandboxshift_tasks_total', { status: 'succeeded' }), 0, 'label values present from the start');
  t.ok(m.contentType().startsWith('text/plain'), 'served as text/plain');

  const a = task();
  queued = 1;
  s.lifecycle.emit('transition', { task: a, from: null, to: 'queued' });
  p = await scrape();
  t.equal(p.value('sandboxshift_tasks_total', { status: 'queued' }), 1);
  t.equal(p.value('sandboxshift_queue_depth'), 1);

  queued = 0;
  open = 2;
  a.startedAt = '2026-12-02T00:00:01.500Z';
  s.lifecycle.emit('transition', { task: a, from: 'queued', to: 'running' });
  p = await scrape();
  t.equal(p.value('sandboxshift_tasks_total', { status: 'running' }), 1);
  t.equal(p.value('sandboxshift_task_start_seconds_count'), 1);
  t.equal(p.value('sandboxshift_task_start_seconds_sum'), 1.5, 'accepted to started: 1.5 s');
  t.equal(p.value('sandboxshift_queue_depth'), 0);
  t.equal(p.value('sandboxshift_subscribers'), 2);

  s.decisions.emit('decision', a.id, { time: '', host: 'x.test', port: 80, allowed: true, reason: 'allowlisted', address: '127.0.0.1', bytesUp: 0, bytesDown: 0 });
  s.decisions.emit('decision', a.id, { time: '', host: 'y.test', port: 80, allowed: false, reason: 'not_allowlisted', address: null, bytesUp: 0, bytesDown: 0 });
  s.decisions.emit('decision', a.id, { time: '', host: 'z.test', port: 80, allowed: false, reason: 'not_allowlisted', address: null, bytesUp: 0, bytesDown: 0 });

  Object.assign(a, { durationMs: 2500, output: { stdoutBytes: 10, stderrBytes: 3, truncated: false } });
  s.lifecycle.emit('transition', { task: a, from: 'running', to: 'succeeded' });
  const b = task({ id: 'tsk_b', reason: 'engine_error', durationMs: null });
  s.lifecycle.emit('transition', { task: b, from: 'running', to: 'error' });
  m.authFailed();
  m.authFailed();
  m.engineUnavailable();
  p = await scrape();
  t.equal(p.value('sandboxshift_tasks_total', { status: 'succeeded' }), 1);
  t.equal(p.value('sandboxshift_tasks_total', { status: 'error' }), 1);
  t.equal(p.value('sandboxshift_task_duration_seconds_count'), 1, 'only tasks that started have a duration');
  t.equal(p.value('sandboxshift_task_duration_seconds_sum'), 2.5);
  t.equal(p.value('sandboxshift_task_duration_seconds_bucket', { le: '5' }), 1);
  t.equal(p.value('sandboxshift_task_duration_seconds_bucket', { le: '1' }), 0);
  t.equal(p.value('sandboxshift_stream_bytes_total', { stream: 'stdout' }), 10);
  t.equal(p.value('sandboxshift_stream_bytes_total', { stream: 'stderr' }), 3);
  t.equal(p.value('sandboxshift_egress_decisions_total', { allowed: 'true' }), 1);
  t.equal(p.value('sandboxshift_egress_decisions_total', { allowed: 'false' }), 2);
  t.equal(p.value('sandboxshift_engine_errors_total'), 2, 'a task ended by the engine and a refused request');
  t.equal(p.value('sandboxshift_auth_failures_total'), 2);
});

t.test('two servers in one process keep their metrics apart', async (t) => {
  const one = new Metrics();
  const two = new Metrics();
  one.authFailed();
  t.equal(parsePrometheus(await one.text()).value('sandboxshift_auth_failures_total'), 1);
  t.equal(parsePrometheus(await two.text()).value('sandboxshift_auth_failures_total'), 0);
});

t.test("the pool's figures are read from the pool when scraped", async (t) => {
  const m = new Metrics();
  const figures = { ready: 0, handoffs: 0, coldStarts: 0 };
  m.observePool(() => figures);
  let p = parsePrometheus(await m.text());
  t.equal(p.value('sandboxshift_pool_ready'), 0);
  t.equal(p.value('sandboxshift_pool_handoffs_total'), 0);
  Object.assign(figures, { ready: 3, handoffs: 7, coldStarts: 2 });
  p = parsePrometheus(await m.text());
  t.equal(p.value('sandboxshift_pool_ready'), 3);
  t.equal(p.value('sandboxshift_pool_handoffs_total'), 7);
  t.equal(p.value('sandboxshift_pool_cold_starts_total'), 2);
  figures.handoffs = 8;
  p = parsePrometheus(await m.text());
  t.equal(p.value('sandboxshift_pool_handoffs_total'), 8, 'the count, not a sum of scrapes');
});
