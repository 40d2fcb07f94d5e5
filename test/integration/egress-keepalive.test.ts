/**
 * Plain-HTTP requests after the first on one proxy connection (keep-alive, pipelining): each is
 * judged like a first one before a byte of it is forwarded, and bodies are framed by their heads,
 * so a second request hidden behind an allowed one never reaches a destination unchecked. Real
 * HTTP servers the test starts on loopback (one of them an upstream proxy), a real SQLite store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { buildRangeList, createResolver } from '../../src/egress/addresses.js';
import { EgressProxy } from '../../src/egress/proxy.js';
import { loadUpstreamProxy } from '../../src/egress/upstream.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { exchange, proxySettings } from '../helpers/egress.js';
import { sleep } from '../helpers/host.js';
import { testUpstreamProxy } from '../helpers/upstream-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-keepalive-'));
const store = new SqliteStore(join(dir, 'db.sqlite'));

/** Answers `<method> <path> host=<Host> body=<body>` and records the same line. */
const seen: string[] = [];
const open = new Set<Socket>();
const web = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c.toString('latin1')));
  req.on('end', () => {
    const line = `${req.method} ${req.url} host=${req.headers.host} body=${JSON.stringify(body)}`;
    seen.push(line);
    res.end(`${line}\n`);
  });
});
web.on('connection', (s: Socket) => (open.add(s), s.once('close', () => open.delete(s))));
await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
const port = (web.address() as AddressInfo).port;
t.teardown(async () => {
  for (const s of open) s.destroy();
  await new Promise((r) => web.close(r));
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
const taskId = () => `tsk_kal${String(n++).padStart(13, '0')}`;
function proxy(upstream: ReturnType<typeof loadUpstreamProxy> | null = null) {
  const p = new EgressProxy(
    join(dir, `p${n++}`), proxySettings([port]), createResolver({ 'ok.test': ['127.0.0.1'], 'other.test': ['127.0.0.1'] }),
    buildRangeList(['127.0.0.1/32']), store, pino({ level: 'silent' }), undefined, upstream,
  );
  p.prepare();
  return p;
}
const decisions = (id: string) => store.egressDecisions(id).decisions.map((d) => [d.host, d.allowed, d.reason, d.bytesDown > 0]);
const get = (path: string, host = 'ok.test', extra = '') => `GET http://ok.test:${port}${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
/** The status lines and the proxy's reasons, in the order the client received them. */
const answers = (text: string) =>
  [...text.matchAll(/^HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n/gm)].map((m) => [m[1], /X-SandboxShift-Egress: denied; reason=(\S+)/.exec(m[0])?.[1]].filter(Boolean).join(' '));

t.beforeEach(() => void seen.splice(0));

t.test('a later request whose Host names another host is host_mismatch, answered after the first response, never forwarded', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test', 'other.test']);
  const got = await exchange(e.socketPath, get('/first') + get('/second', 'other.test') + get('/third'));
  t.same(answers(got), ['200', '403 host_mismatch'], 'the first served, the second refused, nothing after it');
  t.match(got, /body=""\n[\s\S]*host_mismatch/, 'the refusal follows the complete first response');
  t.same(seen, [`GET /first host=ok.test:${port} body=""`], 'only the first request reached the server');
  await sleep(100);
  t.same(decisions(id), [['ok.test', true, 'allowlisted', true], ['ok.test', false, 'host_mismatch', false]]);
  e.close();
});

t.test('a later request in origin form (a request for whatever the destination hosts) is refused and never forwarded', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  const got = await exchange(e.socketPath, get('/first') + 'GET /hidden HTTP/1.1\r\nHost: other.test\r\n\r\n');
  t.same(answers(got), ['200', '400 bad_request']);
  t.same(seen, [`GET /first host=ok.test:${port} body=""`]);
  e.close();
});

t.test('matching later requests are each judged, forwarded on a fresh connection and recorded, answers in order', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test', 'other.test']);
  const other = `GET http://other.test:${port}/3 HTTP/1.1\r\nHost: other.test\r\n\r\n`;
  const got = await exchange(e.socketPath, get('/1') + get('/2', `OK.test:${port}`) + other);
  t.same(answers(got), ['200', '200', '200']);
  t.match(got, /GET \/1 [\s\S]*GET \/2 [\s\S]*GET \/3 /, 'answers in request order');
  t.same(seen, [`GET /1 host=ok.test:${port} body=""`, `GET /2 host=ok.test:${port} body=""`, `GET /3 host=other.test:${port} body=""`]);
  await sleep(100);
  t.same(decisions(id), [['ok.test', true, 'allowlisted', true], ['ok.test', true, 'allowlisted', true], ['other.test', true, 'allowlisted', true]]);
  e.close();
});

t.test('bodies are framed by their heads: a request inside a body is body, the one after it is judged', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  const inner = get('/inner', 'other.test');
  const post = `POST http://ok.test:${port}/cl HTTP/1.1\r\nHost: ok.test\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`;
  const chunked = `POST http://ok.test:${port}/ch HTTP/1.1\r\nHost: ok.test\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\nX-Trailer: t\r\n\r\n`;
  const got = await exchange(e.socketPath, post + chunked + get('/after', 'other.test'));
  t.same(answers(got), ['200', '200', '403 host_mismatch']);
  t.same(seen, [`POST /cl host=ok.test:${port} body=${JSON.stringify(inner)}`, `POST /ch host=ok.test:${port} body=${JSON.stringify(`hello${inner}`)}`]);
  await sleep(100);
  t.same(decisions(id).map((d) => d[2]), ['allowlisted', 'allowlisted', 'host_mismatch']);
  e.close();
});

t.test('framing that servers may read differently is refused', async (t) => {
  const e = await proxy().open(taskId(), ['ok.test']);
  for (const extra of ['Content-Length: 3\r\nTransfer-Encoding: chunked\r\n', 'Transfer-Encoding: gzip, chunked\r\n', 'Content-Length: 3\r\nContent-Length: 4\r\n']) {
    const got = await exchange(e.socketPath, `POST http://ok.test:${port}/x HTTP/1.1\r\nHost: ok.test\r\n${extra}\r\nabcd`);
    t.same(answers(got), ['400 bad_request'], JSON.stringify(extra));
  }
  t.same(seen, [], 'none reached the server');
  e.close();
});

t.test('through the upstream proxy: a later request is judged too and never reaches it unchecked', async (t) => {
  const corp = await testUpstreamProxy({ 'ok.test': '127.0.0.1', 'evil.test': '127.0.0.1' });
  t.teardown(() => corp.close());
  const id = taskId();
  const e = await proxy(loadUpstreamProxy({ url: `http://127.0.0.1:${corp.port}`, credentialsFile: null })).open(id, ['ok.test']);
  const evil = `GET http://evil.test:${port}/evil HTTP/1.1\r\nHost: evil.test\r\n\r\n`;
  const got = await exchange(e.socketPath, get('/up') + get('/up2', 'evil.test') + evil);
  t.same(answers(got), ['200', '403 host_mismatch']);
  t.same(corp.seen, [`GET http://ok.test:${port}/up auth=none`], 'the upstream proxy saw the first request only');
  const got2 = await exchange(e.socketPath, get('/up3') + evil);
  t.same(answers(got2), ['200', '403 not_allowlisted'], 'a later request for a host off the allowlist: not_allowlisted');
  await sleep(100);
  t.same(decisions(id).map((d) => [d[0], d[2]]), [['ok.test', 'allowlisted'], ['ok.test', 'host_mismatch'], ['ok.test', 'allowlisted'], ['evil.test', 'not_allowlisted']]);
  t.notOk(seen.some((l) => l.includes('evil')), 'evil.test was never asked');
  e.close();
});
