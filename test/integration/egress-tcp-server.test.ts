/**
 * The server's wiring of the egress TCP listener: with egress.tcp.listen set, the real server
 * listens there from start-up (its credential key made 0600 in the data directory), answers a
 * request without credentials 407, and stops listening when it closes. Off by default.
 */
import { statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { freePort } from '../helpers/host.js';
import { exchange } from '../helpers/egress.js';
import { startTestServer } from '../helpers/server.js';

const refused = (port: number) =>
  new Promise<string>((r) => net.connect(port, '127.0.0.1').once('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')).once('connect', function (this: net.Socket) {
    this.destroy();
    r('connected');
  }));

t.test('egress.tcp.listen: the server listens with its key in the data directory, 407 without credentials, closed with the server', async (t) => {
  const port = await freePort();
  const server = await startTestServer({ egress: { tcp: { listen: `127.0.0.1:${port}` } } });
  let open = true;
  t.teardown(() => (open ? server.close() : undefined));
  const key = statSync(join(server.dataDir, 'egress-tcp.key'));
  t.equal(key.mode & 0o777, 0o600);
  t.equal(key.size, 32);
  const answer = await exchange({ host: '127.0.0.1', port }, 'GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n');
  t.match(answer, /^HTTP\/1\.1 407 Proxy Authentication Required\r\n[\s\S]*reason=proxy_auth_missing/);
  await server.close();
  open = false;
  t.equal(await refused(port), 'ECONNREFUSED', 'the listener went with the server');
});

t.test('without egress.tcp.listen there is no listener and no key', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  t.throws(() => statSync(join(server.dataDir, 'egress-tcp.key')), { code: 'ENOENT' });
});
