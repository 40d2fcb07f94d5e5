import { randomBytes } from 'node:crypto';
import t from 'tap';
import { parseAuthority, parseRequestHead, upstreamHead } from '../../src/egress/request-head.js';

const MAX = 16384;
const parse = (s: string | Buffer) => parseRequestHead(Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'), MAX);

t.test('CONNECT and absolute-form requests', async (t) => {
  t.match(parse('CONNECT ok.test:443 HTTP/1.1\r\nHost: ok.test:443\r\n\r\n'), { kind: 'connect', host: 'ok.test', port: 443, headBytes: 'CONNECT ok.test:443 HTTP/1.1\r\nHost: ok.test:443\r\n\r\n'.length });
  t.match(parse('CONNECT [::1]:443 HTTP/1.1\r\n\r\n'), { kind: 'connect', host: '[::1]', port: 443 });
  t.same(
    parse('CONNECT ok.test:443 HTTP/1.1\r\nHost: ok.test:443\r\nProxy-Authorization:  Basic dTpw \r\n\r\n'),
    { kind: 'connect', headBytes: 86, host: 'ok.test', port: 443, headers: [['Host', 'ok.test:443'], ['Proxy-Authorization', 'Basic dTpw']] },
    'a CONNECT head keeps its fields (the TCP listener reads Proxy-Authorization from them)',
  );
  const f = parse('GET http://ok.test:8080/a/b?c=d#frag HTTP/1.1\r\nHost: evil.test\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\nBODY');
  t.match(f, { kind: 'forward', method: 'GET', host: 'ok.test', port: 8080, path: '/a/b?c=d' });
  if (f.kind !== 'forward') throw new Error('forward expected');
  t.equal(
    upstreamHead(f).toString(),
    'GET /a/b?c=d HTTP/1.1\r\nHost: ok.test:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n',
    'origin-form upstream; Host from the URI; hop-by-hop headers dropped',
  );
  t.match(parse('GET http://ok.test HTTP/1.0\r\n\r\n'), { kind: 'forward', port: 80, path: '/' });
  t.match(parse('POST http://ok.test?x=1 HTTP/1.1\r\n\r\n'), { kind: 'forward', path: '/?x=1', body: { kind: 'length', bytes: 0 } });
  t.match(parse('POST http://ok.test/ HTTP/1.1\r\nContent-Length: 7\r\n\r\n'), { kind: 'forward', body: { kind: 'length', bytes: 7 } });
  t.match(parse('POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'), { kind: 'forward', body: { kind: 'chunked' } });
  t.match(parse('POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n'), { kind: 'error', status: 400 }, 'ambiguous framing');
});

t.test('an incomplete head waits; an oversized one is 431', async (t) => {
  t.same(parse('CONNECT ok.test:443 HTTP/1.1\r\nHost: x\r\n'), { kind: 'incomplete' });
  t.match(parseRequestHead(Buffer.alloc(MAX, 'a'), MAX), { kind: 'error', status: 431 });
  t.match(parse(`GET http://ok.test/ HTTP/1.1\r\nX: ${'a'.repeat(MAX)}\r\n\r\n`), { kind: 'error', status: 431 });
  const many = Array.from({ length: 101 }, (_, i) => `X${i}: y`).join('\r\n');
  t.match(parse(`GET http://ok.test/ HTTP/1.1\r\n${many}\r\n\r\n`), { kind: 'error', status: 431 });
});

t.test('garbage is an error with a status, never an exception or a target', async (t) => {
  const cases = [
    'GET / HTTP/1.1\r\n\r\n',
    'GET https://ok.test/ HTTP/1.1\r\n\r\n',
    'GET ftp://ok.test/ HTTP/1.1\r\n\r\n',
    'CONNECT ok.test HTTP/1.1\r\n\r\n',
    'CONNECT ok.test:0 HTTP/1.1\r\n\r\n',
    'CONNECT ok.test:65536 HTTP/1.1\r\n\r\n',
    'CONNECT ok.test:44x3 HTTP/1.1\r\n\r\n',
    'CONNECT user@ok.test:443 HTTP/1.1\r\n\r\n',
    'CONNECT [::1:443 HTTP/1.1\r\n\r\n',
    'GET http://user:pw@ok.test/ HTTP/1.1\r\n\r\n',
    'GET http://ok.test:/ HTTP/1.1\r\n\r\n',
    'GET http:///x HTTP/1.1\r\n\r\n',
    'GET  http://ok.test/ HTTP/1.1\r\n\r\n',
    'GET http://ok.test/ HTTP/2.0\r\n\r\n',
    'GET http://ok.test/ HTTP/1.1 extra\r\n\r\n',
    'G(T http://ok.test/ HTTP/1.1\r\n\r\n',
    'GET http://ok.test/ HTTP/1.1\r\n folded: header\r\n\r\n',
    'GET http://ok.test/ HTTP/1.1\r\nBad Name: x\r\n\r\n',
    'GET http://ok.test/ HTTP/1.1\r\nNoColon\r\n\r\n',
    'GET http://ok.test/ HTTP/1.1\r\nX: a\nY: b\r\n\r\n',
    'GET http://ok.test/ HTTP/1.1\r\nX: \x00\r\n\r\n',
    'GET http://ök.test/ HTTP/1.1\r\n\r\n',
    '\r\n\r\n',
    '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n',
  ];
  for (const c of cases) {
    const r = parse(c);
    t.equal(r.kind, 'error', JSON.stringify(c));
    if (r.kind === 'error') t.ok([400, 405, 431, 505].includes(r.status), `${JSON.stringify(c)} → ${r.status} ${r.reason}`);
  }
  // Random bytes: the parser only ever answers incomplete/error/connect/forward, never throws.
  const kinds = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.concat([randomBytes(i % 300), Buffer.from('\r\n\r\n')]);
    kinds.add(parseRequestHead(junk, 256).kind);
  }
  t.same([...kinds], ['error'], 'random bytes are always an error');
  t.equal(parseAuthority('ok.test', null), null, 'CONNECT needs a port');
  t.same(parseAuthority('ok.test', 80), { host: 'ok.test', port: 80 });
});
