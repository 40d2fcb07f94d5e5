import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildCaBundle, CA_BUNDLE_MAX_BYTES, parseCertificates } from '../../src/trust/ca-bundle.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-ca-unit-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const f = (n: string) => join(dir, n);
for (const name of ['a', 'b']) {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=Test CA ${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`)], { stdio: 'ignore' });
}
const a = readFileSync(f('a.pem'), 'utf8');
const b = readFileSync(f('b.pem'), 'utf8');

t.test('certificates are accepted, with comments between them', async (t) => {
  const certs = parseCertificates(`# corporate roots\n${a}\nsome text\n${b}`, 'x.pem');
  t.same(certs.map((c) => c.subject), ['CN=Test CA a', 'CN=Test CA b']);
});

t.test('anything but certificates is refused', async (t) => {
  t.throws(() => parseCertificates(a + readFileSync(f('a.key'), 'utf8'), 'x.pem'), /holds a "PRIVATE KEY" block: only certificates/);
  t.throws(() => parseCertificates('no pem here', 'x.pem'), /holds no certificate/);
  t.throws(() => parseCertificates(a.replace(/\n[A-Za-z0-9+/]{10}/, '\nAAAAAAAAAA'), 'x.pem'), /does not parse|no certificate/);
  t.throws(() => parseCertificates(`${a}-----BEGIN CERTIFICATE-----\nAAAA\n`, 'x.pem'), /malformed PEM block/);
});

t.test('the bundle is the public CAs followed by the operator CAs, readable by all', async (t) => {
  writeFileSync(f('public.pem'), a);
  const bundle = buildCaBundle(f('b.pem'), f('public.pem'), join(dir, 'out'));
  t.same({ operatorCerts: bundle.operatorCerts, publicCerts: bundle.publicCerts }, { operatorCerts: 1, publicCerts: 1 });
  t.same(parseCertificates(readFileSync(bundle.path, 'utf8'), bundle.path).map((c) => c.subject), ['CN=Test CA a', 'CN=Test CA b']);
  t.equal(statSync(bundle.path).mode & 0o777, 0o644);
  const noPublic = buildCaBundle(f('b.pem'), f('absent.pem'), join(dir, 'out2'));
  t.equal(noPublic.publicCerts, 0, 'a host without public CAs still gets the operator CAs');
});

t.test('unreadable or oversized operator files are refused', async (t) => {
  t.throws(() => buildCaBundle(f('absent.pem'), f('public.pem'), join(dir, 'out3')), /tasks\.caBundle .*absent\.pem: cannot be read/);
  writeFileSync(f('big.pem'), Buffer.alloc(CA_BUNDLE_MAX_BYTES + 1, 0x41));
  t.throws(() => buildCaBundle(f('big.pem'), f('public.pem'), join(dir, 'out3')), /above the 4194304-byte bound/);
});
