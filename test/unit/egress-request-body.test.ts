import { randomBytes } from 'node:crypto';
import t from 'tap';
import { BodyReader, bodyFraming, type BodyFraming } from '../../src/egress/request-body.js';

const h = (...lines: string[]): [string, string][] => lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);

/** Feeds `input` in pieces of `piece` bytes; the body seen, what follows it, or the error. */
function read(framing: BodyFraming, input: string, piece = input.length || 1): { body: string; rest: string } | { error: string } {
  const r = new BodyReader(framing, 64);
  let body = '';
  for (let i = 0; i < input.length; i += piece) {
    const step = r.push(Buffer.from(input.slice(i, i + piece), 'latin1'));
    if (step.kind === 'error') return { error: step.reason };
    body += step.body.toString('latin1');
    if (step.done) return { body, rest: step.rest.toString('latin1') + input.slice(i + piece) };
  }
  return { body, rest: r.done ? '' : '<incomplete>' };
}

t.test('the framing a head declares', async (t) => {
  t.same(bodyFraming([], 'HTTP/1.1'), { kind: 'length', bytes: 0 }, 'no length, no coding: no body');
  t.same(bodyFraming(h('Content-Length: 12'), 'HTTP/1.0'), { kind: 'length', bytes: 12 });
  t.same(bodyFraming(h('content-length: 5, 5', 'Content-Length: 5'), 'HTTP/1.1'), { kind: 'length', bytes: 5 }, 'repeated equal lengths are one');
  t.same(bodyFraming(h('Transfer-Encoding: Chunked'), 'HTTP/1.1'), { kind: 'chunked' });
  for (const [headers, version] of [
    [h('Content-Length: 3', 'Transfer-Encoding: chunked'), 'HTTP/1.1'],
    [h('Transfer-Encoding: gzip, chunked'), 'HTTP/1.1'],
    [h('Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'), 'HTTP/1.1'],
    [h('Transfer-Encoding: chunked'), 'HTTP/1.0'],
    [h('Content-Length: 3', 'Content-Length: 4'), 'HTTP/1.1'],
    [h('Content-Length: 3, 4'), 'HTTP/1.1'],
    [h('Content-Length: -1'), 'HTTP/1.1'],
    [h('Content-Length: 0x10'), 'HTTP/1.1'],
    [h('Content-Length: 1234567890123456'), 'HTTP/1.1'],
    [h('Content-Length:'), 'HTTP/1.1'],
  ] as const) {
    t.ok('error' in bodyFraming(headers, version), JSON.stringify([headers, version]));
  }
});

t.test('a Content-Length body ends where its length says, however it arrives', async (t) => {
  for (const piece of [1, 3, 100]) {
    t.same(read({ kind: 'length', bytes: 5 }, 'helloGET next', piece), { body: 'hello', rest: 'GET next' }, `pieces of ${piece}`);
  }
  t.same(read({ kind: 'length', bytes: 0 }, 'GET next'), { body: '', rest: 'GET next' });
  t.same(read({ kind: 'length', bytes: 10 }, 'short'), { body: 'short', rest: '<incomplete>' });
});

t.test('a chunked body ends after its last chunk and trailers, passed on unchanged', async (t) => {
  const body = '5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n';
  for (const piece of [1, 2, 7, 1000]) {
    t.same(read({ kind: 'chunked' }, `${body}GET next`, piece), { body, rest: 'GET next' }, `pieces of ${piece}`);
  }
  t.same(read({ kind: 'chunked' }, '0\r\n\r\nX'), { body: '0\r\n\r\n', rest: 'X' });
  t.same(read({ kind: 'chunked' }, '5\r\nhel'), { body: '5\r\nhel', rest: '<incomplete>' });
});

t.test('a chunked body that cannot be framed is an error, never a guess', async (t) => {
  for (const bad of ['x\r\n', '5\nhello\r\n', '5\r\nhelloX\r\n', '-1\r\n', `${'1'.repeat(13)}\r\n`, '0\r\nbad trailer\r\n\r\n', `0\r\nX: ${'a'.repeat(80)}\r\n\r\n`, `5;${'e'.repeat(5000)}`]) {
    t.match(read({ kind: 'chunked' }, bad), { error: String }, JSON.stringify(bad.slice(0, 40)));
  }
  // Random bytes: data or an error, never an exception.
  for (let i = 0; i < 500; i++) {
    const r = new BodyReader({ kind: 'chunked' }, 64);
    t.doesNotThrow(() => r.push(randomBytes(i % 200)));
  }
});
