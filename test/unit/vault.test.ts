import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SecretVault } from '../../src/tasks/vault.js';

function vault(t: Tap.Test) {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-vault-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, v: new SecretVault(join(dir, 'secrets'), join(dir, 'secrets.key')) };
}

t.test('round trip, encrypted at rest, key 0600 created on first use, deleted', async (t) => {
  const { dir, v } = vault(t);
  t.notOk(existsSync(join(dir, 'secrets.key')), 'no key before a secret is kept');
  t.equal(v.get('tsk_a'), null);
  v.put('tsk_a', { TOKEN: 'hunter2', OTHER: 'x' });
  t.equal(statSync(join(dir, 'secrets.key')).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'secrets.key')).size, 32);
  const file = join(dir, 'secrets', 'tsk_a.enc');
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.notOk(readFileSync(file).includes('hunter2'), 'not in the clear');
  t.same(new SecretVault(join(dir, 'secrets'), join(dir, 'secrets.key')).get('tsk_a'), { TOKEN: 'hunter2', OTHER: 'x' }, 'a later server reads it with the same key');
  v.delete('tsk_a');
  t.equal(v.get('tsk_a'), null);
  t.same(readdirSync(join(dir, 'secrets')), []);
});

t.test('a file edited, moved to another task or read with another key does not decrypt', async (t) => {
  const { dir, v } = vault(t);
  v.put('tsk_a', { TOKEN: 'hunter2' });
  const file = join(dir, 'secrets', 'tsk_a.enc');
  renameSync(file, join(dir, 'secrets', 'tsk_b.enc'));
  t.throws(() => v.get('tsk_b'), 'the task id is bound to the ciphertext');
  v.put('tsk_a', { TOKEN: 'hunter2' });
  const data = readFileSync(file);
  data[data.length - 1] ^= 1;
  writeFileSync(file, data);
  t.throws(() => v.get('tsk_a'), 'tampering is detected');
  v.put('tsk_a', { TOKEN: 'hunter2' });
  rmSync(join(dir, 'secrets.key'));
  t.throws(() => new SecretVault(join(dir, 'secrets'), join(dir, 'secrets.key')).get('tsk_a'), 'a new key cannot read it');
});

t.test('a key file others may read is refused; sweep keeps only the named tasks', async (t) => {
  const { dir, v } = vault(t);
  v.put('tsk_a', { A: '1' });
  v.put('tsk_b', { B: '2' });
  t.equal(v.sweep(new Set(['tsk_b'])), 1);
  t.same(readdirSync(join(dir, 'secrets')), ['tsk_b.enc']);
  chmodSync(join(dir, 'secrets.key'), 0o644);
  t.throws(() => new SecretVault(join(dir, 'secrets'), join(dir, 'secrets.key')).get('tsk_b'), /mode 0600/);
});
