import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { debianChangelogCves, runscVersion } from '../../src/runtime/host-versions.js';

const dir = mkdtempSync(join(tmpdir(), 'host-versions-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const PKG = 'runc_1.1.5+ds1-1+deb12u1_amd64';
const changelog = (top: string, body: string) => {
  const path = join(dir, `changelog-${Math.random().toString(36).slice(2)}.gz`);
  writeFileSync(path, gzipSync(`runc (${top}) bookworm-security; urgency=high\n\n${body}\n\nrunc (1.1.5+ds1-1) unstable; urgency=medium\n\n  * CVE-2023-25809\n`));
  return path;
};

t.test('the changelog counts only when its top entry is the installed package', async (t) => {
  const path = changelog('1.1.5+ds1-1+deb12u1', '  * CVE-2024-21626: leaked fds');
  t.same(await debianChangelogCves(PKG, path), ['CVE-2024-21626', 'CVE-2023-25809']);
  t.equal(await debianChangelogCves('runc_1.1.5+ds1-1+deb12u2_amd64', path), null, 'another package version: the file describes another runc');
  t.equal(await debianChangelogCves(null, path), null, 'no package');
  t.equal(await debianChangelogCves('runc-1.1.12-1.fc39.x86_64', path), null, 'not a Debian package');
  t.equal(await debianChangelogCves(PKG, join(dir, 'absent.gz')), null, 'no changelog');
  const notGz = join(dir, 'plain.gz');
  writeFileSync(notGz, 'runc (1.1.5+ds1-1+deb12u1) x; urgency=high\n');
  t.equal(await debianChangelogCves(PKG, notGz), null, 'not gzip');
  const bomb = join(dir, 'bomb.gz');
  writeFileSync(bomb, gzipSync(Buffer.concat([Buffer.from('runc (1.1.5+ds1-1+deb12u1) x; urgency=high\n'), Buffer.alloc(4 << 20, 0x20)])));
  t.equal(await debianChangelogCves(PKG, bomb), null, 'more than 1 MiB uncompressed is not read');
});

t.test('runsc --version', async (t) => {
  const fake = join(dir, 'runsc');
  writeFileSync(fake, '#!/bin/sh\n[ "$1" = --version ] && printf "runsc version 0.0~20221219.0\\nspec: 1.0.2-dev\\n"\n');
  chmodSync(fake, 0o755);
  t.equal(await runscVersion(fake), '0.0~20221219.0');
  t.equal(await runscVersion(join(dir, 'absent')), null);
  t.equal(await runscVersion(null), null);
  const failing = join(dir, 'runsc-fails');
  writeFileSync(failing, '#!/bin/sh\nexit 3\n');
  chmodSync(failing, 0o755);
  t.equal(await runscVersion(failing), null);
});
