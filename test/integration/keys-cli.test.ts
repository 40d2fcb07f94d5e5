/**
 * `sandboxshift keys create/list/revoke`, run as the built CLI against the SQLite file of a
 * server running in its own process: a key created while the server runs works at once, a revoked
 * one is 401 at once with the body of an unknown key, and the clients (`run --key`,
 * SANDBOXSHIFT_KEY, the TypeScript client's apiKey over REST and the WebSocket stream) use it.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { KeyStore } from '../../src/auth/key-store.js';
import { SandboxShiftClient, SandboxShiftError } from '../../src/client/client.js';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import { CLI as cli, runCli } from '../helpers/cli.js';
import { api } from '../helpers/client.js';
import { keptDataDir, startServerProcess } from '../helpers/server.js';


const dataDir = keptDataDir(t, 'sbx-keys-cli-');
const srv = await startServerProcess({ dataDir, shutdown: { leaveRunning: false } });
t.teardown(async () => {
  srv.kill('SIGTERM');
  await srv.exited;
});
// The configuration the server process runs with: the CLI reads the same one.
const config = join(dataDir, 'test-server-config.json');

const run = runCli;

async function create(tenant: string, role?: string): Promise<{ id: string; key: string; stdout: string }> {
  const r = await run(['keys', 'create', '--tenant', tenant, ...(role ? ['--role', role] : []), '--config', config]);
  if (r.code !== 0) throw new Error(`keys create failed: ${r.code} ${r.stderr}`);
  const lines = r.stdout.trimEnd().split('\n');
  return { key: lines.at(-1)!, id: /\b(key_[0-9a-f]+)\b/.exec(r.stdout)![1]!, stdout: r.stdout };
}

/** The database's keys as the server sees them (read in-process, beside the server's own connection). */
function keysInDatabase(revoked = false) {
  const store = KeyStore.open(join(dataDir, DATABASE_FILE), { create: false })!;
  try {
    return store.list({ revoked });
  } finally {
    store.close();
  }
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

t.test('a key created while the server runs works at once; the server turns from open to keyed', async (t) => {
  t.equal((await api(srv.url, 'GET', '/v1/tasks')).status, 200, 'without keys the loopback server is open');
  const a = await create('team-a');
  t.match(a.key, /^ssk_[A-Za-z0-9_-]{43,}$/, 'the key is alone on the last line of stdout');
  const r = await api(srv.url, 'GET', '/v1/tasks', undefined, bearer(a.key));
  t.equal(r.status, 200, 'the new key is accepted by the running server at once');
  const none = await api(srv.url, 'GET', '/v1/tasks');
  t.equal(none.status, 401, 'and a request without a key is 401 from now on');
  t.equal(none.json.error.code, 'UNAUTHENTICATED');
  t.equal((await api(srv.url, 'GET', '/healthz')).status, 200, '/healthz stays open');
});

t.test('keys list shows id, tenant, role, created and last used, never the key; --json too', async (t) => {
  const b = await create('team-b', 'admin');
  await api(srv.url, 'GET', '/v1/tasks', undefined, bearer(b.key));
  const text = await run(['keys', 'list', '--config', config]);
  t.equal(text.code, 0);
  t.match(text.stdout, /^ID +TENANT +ROLE +SOURCE +CREATED +LAST USED\n/);
  t.match(text.stdout, new RegExp(`${b.id} +team-b +admin +database +\\d{4}-\\d\\d-\\d\\dT[^ ]+ +\\d{4}-`), 'the used key shows when it was used');
  t.notOk(text.stdout.includes(b.key) || text.stdout.includes(b.key.slice(4, 20)), 'no key text in the listing');
  const json = await run(['keys', 'list', '--json', '--config', config]);
  const listed = JSON.parse(json.stdout) as { keys: { id: string; tenant: string; role: string; createdAt: string; lastUsedAt: string | null }[] };
  const entry = listed.keys.find((k) => k.id === b.id);
  t.match(entry, { tenant: 'team-b', role: 'admin', source: 'database', createdAt: String, lastUsedAt: String, revokedAt: null });
  t.notOk(json.stdout.includes(b.key.slice(4)), 'no key text in the JSON either');
});

t.test('a revoked key is 401 at once, with the same body as an unknown key', async (t) => {
  const c = await create('team-c');
  t.equal((await api(srv.url, 'GET', '/v1/tasks', undefined, bearer(c.key))).status, 200);
  const rev = await run(['keys', 'revoke', c.id, '--config', config]);
  t.equal(rev.code, 0);
  t.equal(rev.stdout, `${c.id} revoked\n`);
  const revoked = await api(srv.url, 'GET', '/v1/tasks', undefined, bearer(c.key));
  t.equal(revoked.status, 401, 'the running server refuses the revoked key at once');
  const unknown = await api(srv.url, 'GET', '/v1/tasks', undefined, bearer(`ssk_${'u'.repeat(43)}`));
  t.equal(unknown.status, 401);
  t.equal(revoked.text, unknown.text, 'revoked and unknown keys read alike');
  const again = await run(['keys', 'revoke', c.id, '--config', config]);
  t.equal(again.code, 0, 'revoking twice is no error');
  t.match(again.stdout, /already revoked/);
  const nope = await run(['keys', 'revoke', 'key_0000000000000000', '--config', config]);
  t.equal(nope.code, 1, 'an unknown id exits 1');
  t.match(nope.stderr, /no key with id key_0000000000000000/);
  const all = JSON.parse((await run(['keys', 'list', '--json', '--all', '--config', config])).stdout) as { keys: { id: string; revokedAt: string | null }[] };
  t.match(all.keys.find((k) => k.id === c.id), { revokedAt: String }, '--all lists it with when it was revoked');
  t.notOk(keysInDatabase().some((k) => k.id === c.id), 'without --all it is gone');
});

t.test('keys create refuses a bad tenant or role (exit 64), and nothing is created', async (t) => {
  const before = keysInDatabase(true).length;
  const bad = await run(['keys', 'create', '--tenant', 'Team A', '--config', config]);
  t.equal(bad.code, 64);
  t.match(bad.stderr, /--tenant: lower-case letters/);
  const role = await run(['keys', 'create', '--tenant', 'team-a', '--role', 'root', '--config', config]);
  t.equal(role.code, 64);
  t.equal(keysInDatabase(true).length, before);
});

t.test('clients carry the key: run --key, SANDBOXSHIFT_KEY, and the TypeScript client (REST and WebSocket)', async (t) => {
  const k = await create('team-d');
  const dir = join(dataDir, 'client-project');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'hello.txt'), 'hello from the workspace\n');
  const flag = await run(['--url', srv.url, '--key', k.key, 'run', '-q', dir, '--', 'cat hello.txt']);
  t.equal(flag.code, 0, flag.stderr);
  t.equal(flag.stdout, 'hello from the workspace\n', 'run --key streams the task output');
  const env = await run(['--url', srv.url, 'run', '-q', dir, '--', 'echo from-env'], { SANDBOXSHIFT_KEY: k.key });
  t.equal(env.code, 0, env.stderr);
  t.equal(env.stdout, 'from-env\n', 'SANDBOXSHIFT_KEY works the same');
  const without = await run(['--url', srv.url, 'run', '-q', dir, '--', 'echo never']);
  t.equal(without.code, 125, 'without a key the run is refused');
  t.match(without.stderr, /UNAUTHENTICATED/);
  t.notOk(without.stdout.includes('never'));

  const client = new SandboxShiftClient({ url: srv.url, apiKey: k.key });
  const task = await client.submitTask({ command: 'echo over-the-stream' });
  let out = '';
  for await (const f of client.events(task.id)) if (f.type === 'stdout') out += f.data;
  t.equal(out, 'over-the-stream\n', 'the TypeScript client streams with its key');
  const keyless = new SandboxShiftClient({ url: srv.url });
  const err = await keyless.getTask(task.id).catch((e: unknown) => e);
  t.ok(err instanceof SandboxShiftError);
  t.match(err, { status: 401, code: 'UNAUTHENTICATED' });
});

t.test('sandboxshift mcp passes SANDBOXSHIFT_KEY through to every request', async (t) => {
  const k = await create('team-e');
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
  const connect = async (env: Record<string, string>) => {
    const mcp = new Client({ name: 'sandboxshift-test', version: '1.0.0' });
    await mcp.connect(new StdioClientTransport({ command: process.execPath, args: [cli, 'mcp', '--url', srv.url], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stderr: 'pipe' }));
    t.teardown(() => mcp.close());
    return mcp;
  };
  const keyed = await connect({ SANDBOXSHIFT_KEY: k.key });
  const ran = (await keyed.callTool({ name: 'run_command', arguments: { command: 'echo via-mcp' } })) as { isError?: boolean; structuredContent?: unknown; content: unknown };
  t.notOk(ran.isError, JSON.stringify(ran.content));
  t.match(ran.structuredContent, { status: 'succeeded', stdout: 'via-mcp\n' });
  const keyless = await connect({});
  const refused = (await keyless.callTool({ name: 'create_workspace', arguments: {} })) as { isError?: boolean; structuredContent?: unknown };
  t.equal(refused.isError, true, 'without a key the tool call is refused');
  t.match(refused.structuredContent, { error: { code: 'UNAUTHENTICATED', status: 401 } });
});

t.test('keys create and revoke are in the audit log, in one chain with the running server', async (t) => {
  const k = await create('team-f', 'admin');
  t.equal((await run(['keys', 'revoke', k.id, '--config', config])).code, 0);
  // A 401 after the revocation: the server's own record, after the CLI's.
  t.equal((await api(srv.url, 'GET', '/v1/tasks', undefined, bearer(k.key))).status, 401);
  const records = readFileSync(join(dataDir, 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { seq: number; event: string; keyId: string | null; tenant: string | null; role?: string });
  const mine = records.filter((r) => r.keyId === k.id);
  t.match(mine, [
    { event: 'key.created', tenant: 'team-f', role: 'admin' },
    { event: 'key.revoked', tenant: 'team-f', role: 'admin' },
  ]);
  t.ok(records.findIndex((r) => r.event === 'auth.failed' && r.seq > mine[1]!.seq) >= 0, 'the server appended after the CLI');
  t.notOk(readFileSync(join(dataDir, 'audit.jsonl'), 'utf8').includes(k.key.slice(4)), 'never the key');
  const verify = await run(['audit', 'verify', '--config', config]);
  t.equal(verify.code, 0, `the chain of both processes holds: ${verify.stderr}`);
});
