import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { parseClientHello, sniMatches } from '../../src/egress/client-hello.js';

const MAX = 16384;

/** The first bytes node:tls sends as a client: a real ClientHello. */
async function captureHello(servername: string | undefined): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          resolve(buf);
          s.destroy();
        }
      });
    });
  });
  const c = tls.connect({ host: '127.0.0.1', port, ...(servername !== undefined ? { servername } : {}), rejectUnauthorized: false });
  c.on('error', () => undefined);
  const buf = await got;
  c.destroy();
  server.close();
  return buf;
}

/** Re-frames one handshake message into records of at most `size` bytes each. */
function split(hello: Buffer, size: number): Buffer {
  const hs = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < hs.length; i += size) {
    const part = hs.subarray(i, i + size);
    const h = Buffer.from([22, 3, 1, 0, 0]);
    h.writeUInt16BE(part.length, 3);
    out.push(h, part);
  }
  return Buffer.concat(out);
}

t.test('a real ClientHello with a server name', async (t) => {
  const hello = await captureHello('api.example.test');
  t.same(parseClientHello(hello, MAX), { kind: 'hello', sni: 'api.example.test', bytes: hello.length });
  // Every prefix is incomplete, never a wrong answer.
  for (const n of [1, 4, 5, 6, 40, hello.length - 1]) t.same(parseClientHello(hello.subarray(0, n), MAX), { kind: 'incomplete' }, `prefix ${n}`);
  t.match(parseClientHello(Buffer.concat([hello, Buffer.from('more')]), MAX), { kind: 'hello', sni: 'api.example.test', bytes: hello.length });
});

t.test('without a server name (an IP servername sends no SNI)', async (t) => {
  t.match(parseClientHello(await captureHello(''), MAX), { kind: 'hello', sni: null });
  t.match(parseClientHello(await captureHello(undefined), MAX), { kind: 'hello', sni: null }, 'connecting to an IP address without servername');
});

t.test('a ClientHello split across several records', async (t) => {
  const hello = await captureHello('split.example.test');
  for (const size of [1, 3, 50, 100]) {
    const framed = split(hello, size);
    t.same(parseClientHello(framed, MAX), { kind: 'hello', sni: 'split.example.test', bytes: framed.length }, `records of ${size} bytes`);
    t.same(parseClientHello(framed.subarray(0, framed.length - 1), MAX), { kind: 'incomplete' });
  }
  const framed = split(hello, 1);
  t.match(parseClientHello(framed, 1000), { kind: 'malformed', why: /larger than 1000/ }, 'bounded: more than maxBytes is refused');
});

t.test('garbage, other protocols and broken handshakes', async (t) => {
  t.same(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n'), MAX), { kind: 'not_tls' });
  t.same(parseClientHello(Buffer.from('SSH-2.0-x\r\n'), MAX), { kind: 'not_tls' });
  t.same(parseClientHello(Buffer.alloc(0), MAX), { kind: 'incomplete' });
  t.match(parseClientHello(Buffer.from([22, 9, 9, 0, 1, 1]), MAX), { kind: 'malformed' }, 'not a TLS version');
  t.match(parseClientHello(Buffer.from([22, 3, 1, 0xff, 0xff]), MAX), { kind: 'malformed' }, 'record longer than TLS allows');
  t.match(parseClientHello(Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0]), MAX), { kind: 'malformed', why: /not a ClientHello/ });
  t.match(parseClientHello(Buffer.from([22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]), MAX), { kind: 'malformed', why: /truncated/ }, 'a body too short for its fields');
  const hello = await captureHello('x.example.test');
  const flipped = Buffer.from(hello);
  flipped[5 + 4 + 34 + 1 + hello[5 + 4 + 34]!] = 0xff; // cipher-suites length far beyond the message
  t.match(parseClientHello(flipped, MAX), { kind: 'malformed' });
  const alert = Buffer.concat([hello.subarray(0, 5 + 2), Buffer.from([21, 3, 3, 0, 2, 2, 40])]);
  alert.writeUInt16BE(2, 3);
  t.match(parseClientHello(alert, MAX), { kind: 'malformed' }, 'a handshake record followed by another record type');
});

t.test('sniMatches: case-insensitive, trailing dot ignored', async (t) => {
  t.ok(sniMatches('API.Example.test.', 'api.example.test'));
  t.ok(sniMatches('api.example.test', 'api.example.test.'));
  t.notOk(sniMatches('evil.test', 'api.example.test'));
  t.notOk(sniMatches('sub.api.example.test', 'api.example.test'));
});
