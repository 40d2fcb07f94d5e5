import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { CombinedKeys } from '../../src/auth/directory.js';
import { exposureRefusal, isLoopbackListen } from '../../src/auth/exposure.js';
import { KeyStore, LAST_USED_EVERY_MS, type KeyEvent } from '../../src/auth/key-store.js';
import { ConfigKeys, hashKey, KEY_PATTERN } from '../../src/auth/keys.js';
import { SqliteStore } from '../../src/store/sqlite.js';

function dbFile(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'data', 'sandboxshift.db');
}

t.test('a created key: ssk_ and at least 32 random bytes of base64url; only its hash is stored', async (t) => {
  const file = dbFile(t);
  const store = KeyStore.open(file)!;
  t.teardown(() => store.close());
  const { key, record } = store.create('team-a', 'user');
  t.match(key, /^ssk_[A-Za-z0-9_-]{43,}$/, '32 bytes are 43 base64url characters');
  t.ok(KEY_PATTERN.test(key), 'the form bearer headers accept');
  t.match(record, { tenant: 'team-a', role: 'user', lastUsedAt: null, revokedAt: null });
  t.not(store.create('team-a', 'user').key, key, 'each key is new');
  const raw = new Database(file, { readonly: true });
  t.teardown(() => raw.close());
  const dump = JSON.stringify(raw.prepare('SELECT * FROM api_keys').all());
  t.notOk(dump.includes(key.slice(4)), 'the key text is nowhere in the table');
  t.ok(dump.includes(hashKey(key)), 'its SHA-256 is');
});

t.test('two connections to one file (server and CLI): a key created or revoked by one counts at once for the other', async (t) => {
  const file = dbFile(t);
  const server = KeyStore.open(file)!;
  t.teardown(() => server.close());
  t.equal(server.hasKeys(), false);
  const cli = KeyStore.open(file)!;
  const { key, record } = cli.create('team-b', 'admin');
  cli.close();
  t.equal(server.hasKeys(), true, 'the server sees the new key');
  t.match(server.lookup(hashKey(key)), { id: record.id, tenant: 'team-b', role: 'admin' });
  const cli2 = KeyStore.open(file)!;
  t.equal(cli2.revoke(record.id), 'revoked');
  t.equal(cli2.revoke(record.id), 'already');
  t.equal(cli2.revoke('key_nope'), 'unknown');
  cli2.close();
  t.equal(server.lookup(hashKey(key)), null, 'a revoked key reads as unknown at once');
  t.equal(server.hasKeys(), false, 'no active key is left');
  t.same(server.list().map((k) => k.id), [], 'revoked keys are left out of the list');
  t.match(server.list({ revoked: true }), [{ id: record.id, revokedAt: String }], 'and shown on request');
});

t.test("the server's key table is on its store's own connection; the CLI's on a connection of its own", async (t) => {
  const file = dbFile(t);
  const cli = KeyStore.open(file)!;
  const store = new SqliteStore(file);
  t.teardown(() => store.close());
  const server = KeyStore.on(store.database);
  const { key } = cli.create('team-a', 'user');
  cli.close();
  t.ok(server.lookup(hashKey(key)), 'the server sees the CLI key');
  server.close();
  t.equal(store.meta('serverId', () => 'srv_x'), 'srv_x', "closing the server's key table leaves the store's connection open");
});

t.test('last used is written at most once a minute per key', async (t) => {
  const file = dbFile(t);
  let now = Date.parse('2026-12-02T10:00:00Z');
  const store = KeyStore.open(file, { now: () => now })!;
  t.teardown(() => store.close());
  const { key, record } = store.create('team-a', 'user');
  const lastUsed = () => store.get(record.id)!.lastUsedAt;
  t.equal(lastUsed(), null);
  store.lookup(hashKey(key));
  t.equal(lastUsed(), '2026-12-02T10:00:00.000Z', 'the first use is written');
  now += 10_000;
  for (let i = 0; i < 50; i++) store.lookup(hashKey(key));
  t.equal(lastUsed(), '2026-12-02T10:00:00.000Z', 'uses within the minute write nothing');
  now += LAST_USED_EVERY_MS;
  store.lookup(hashKey(key));
  t.equal(lastUsed(), '2026-12-02T10:01:10.000Z', 'a use a minute later is written');
});

t.test('creations and revocations reach the event sink', async (t) => {
  const events: KeyEvent[] = [];
  const store = KeyStore.open(dbFile(t), { onEvent: (e) => events.push(e) })!;
  t.teardown(() => store.close());
  const { record } = store.create('team-a', 'admin');
  store.revoke(record.id);
  store.revoke(record.id);
  t.same(events, [
    { event: 'key.created', keyId: record.id, tenant: 'team-a', role: 'admin' },
    { event: 'key.revoked', keyId: record.id, tenant: 'team-a', role: 'admin' },
  ]);
});

t.test('open without create: a missing file is no store and is not created', async (t) => {
  const file = dbFile(t);
  t.equal(KeyStore.open(file, { create: false }), null);
  t.equal(KeyStore.open(file, { create: false }), null, 'still missing');
});

t.test('CombinedKeys: configuration keys and database keys', async (t) => {
  const store = KeyStore.open(dbFile(t))!;
  t.teardown(() => store.close());
  const cfgKey = 'ssk_' + 'c'.repeat(40);
  const dir = new CombinedKeys(new ConfigKeys([{ id: 'cfg', tenant: 'ops', role: 'admin', sha256: hashKey(cfgKey) }]), store);
  t.equal(dir.hasKeys(), true, 'a configuration key is a key');
  t.match(dir.lookup(hashKey(cfgKey)), { id: 'cfg' });
  const { key, record } = store.create('team-a', 'user');
  t.match(dir.lookup(hashKey(key)), { id: record.id });
  t.equal(dir.lookup(hashKey('ssk_' + 'x'.repeat(40))), null);
  const empty = KeyStore.open(dbFile(t))!;
  t.teardown(() => empty.close());
  t.equal(new CombinedKeys(new ConfigKeys([]), empty).hasKeys(), false, 'neither has keys');
});

t.test('exposure: without keys only loopback listen addresses are allowed', async (t) => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) t.ok(isLoopbackListen(h), `${h} is loopback`);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'example.com', '::ffff:10.0.0.1', '128.0.0.1']) t.notOk(isLoopbackListen(h), `${h} is not`);
  t.equal(exposureRefusal('127.0.0.1', false), null);
  t.equal(exposureRefusal('0.0.0.0', true), null, 'with a key any address is allowed');
  t.match(exposureRefusal('0.0.0.0', false), /not a loopback address.*no API keys.*keys create/);
});
