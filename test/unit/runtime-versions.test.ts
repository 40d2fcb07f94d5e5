import t from 'tap';
import {
  changelogTopVersion,
  cveIds,
  debianPackageVersion,
  parseRuncVersion,
  RUNC_CVES,
  runcUpstreamFixed,
  runcVersionText,
  runcWarnings,
  runtimeReport,
} from '../../src/runtime/versions.js';

const fixed = (text: string) => {
  const v = parseRuncVersion(text);
  if (!v) throw new Error(`unparsed: ${text}`);
  return runcUpstreamFixed(v);
};

t.test('parses runc version texts', async (t) => {
  t.same(parseRuncVersion('runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev'), { major: 1, minor: 1, patch: 5, rc: null, pre: null });
  t.same(parseRuncVersion('runc version 1.4.0-rc.3\ncommit: v1.4.0-rc.3-0-gabc'), { major: 1, minor: 4, patch: 0, rc: 3, pre: null });
  t.same(parseRuncVersion('runc version 1.4.0-rc2'), { major: 1, minor: 4, patch: 0, rc: 2, pre: null });
  t.same(parseRuncVersion('runc version 1.2.8-dev'), { major: 1, minor: 2, patch: 8, rc: null, pre: 'dev' });
  t.same(parseRuncVersion('1.3.3'), { major: 1, minor: 3, patch: 3, rc: null, pre: null });
  t.equal(parseRuncVersion('runc version unknown'), null);
  t.equal(parseRuncVersion(''), null);
});

t.test('the fixed-version rule', async (t) => {
  const cases: [string, boolean][] = [
    ['runc version 0.1.1', false],
    ['runc version 1.0.0-rc93', false],
    ['runc version 1.0.3', false],
    ['runc version 1.1.5+ds1', false],
    ['runc version 1.1.15', false],
    ['runc version 1.1.99', false],
    ['runc version 1.2.0', false],
    ['runc version 1.2.7', false],
    ['runc version 1.2.8-rc.1', false],
    ['runc version 1.2.8-dev', false],
    ['runc version 1.2.8', true],
    ['runc version 1.2.9', true],
    ['runc version 1.2.10', true],
    ['runc version 1.3.0', false],
    ['runc version 1.3.2', false],
    ['runc version 1.3.3', true],
    ['runc version 1.3.4', true],
    ['runc version 1.4.0-rc.1', false],
    ['runc version 1.4.0-rc.2', false],
    ['runc version 1.4.0-rc.3', true],
    ['runc version 1.4.0-rc.4', true],
    ['runc version 1.4.0', true],
    ['runc version 1.4.1', true],
    ['runc version 1.5.0-rc.1', true],
    ['runc version 1.5.0', true],
    ['runc version 2.0.0', true],
  ];
  for (const [text, want] of cases) t.equal(fixed(text), want, `${text} → ${want ? 'fixed' : 'unfixed'}`);
});

t.test('Debian package and changelog parsing', async (t) => {
  t.equal(debianPackageVersion('runc_1.1.5+ds1-1+deb12u1_amd64'), '1.1.5+ds1-1+deb12u1');
  t.equal(debianPackageVersion('runc_1:1.1.12-0ubuntu3_arm64'), '1:1.1.12-0ubuntu3');
  t.equal(debianPackageVersion('runc-1.1.12-1.fc39.x86_64'), null, 'an RPM name is not a Debian package');
  t.equal(debianPackageVersion(''), null);
  t.equal(changelogTopVersion('runc (1.1.5+ds1-1+deb12u1) bookworm-security; urgency=high\n\n  * Team upload.\n'), '1.1.5+ds1-1+deb12u1');
  t.equal(changelogTopVersion('garbage'), null);
  t.same(cveIds('CVE-2024-21626: x; cve-2023-25809 and CVE-2024-21626 again'), ['CVE-2024-21626', 'CVE-2023-25809']);
});

const DEBIAN = { text: 'runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1', package: 'runc_1.1.5+ds1-1+deb12u1_amd64' };

t.test('warnings name the three CVEs and the mitigation', async (t) => {
  const [w, ...rest] = runcWarnings({ ...DEBIAN, packageCves: ['CVE-2024-21626'] });
  t.equal(rest.length, 0, 'one warning');
  for (const cve of RUNC_CVES) t.match(w, cve);
  t.match(w, 'runc 1.1.5 (package runc_1.1.5+ds1-1+deb12u1_amd64)');
  t.match(w, /gVisor/);
  t.match(w, /engine.isolation: gvisor/, "names the setting that runs tasks under gVisor");
  t.match(w, /upgrade runc/);
  t.equal(runcWarnings({ ...DEBIAN, packageCves: null }).length, 1, 'no matching changelog: warned');
  t.equal(runcWarnings({ ...DEBIAN, packageCves: ['CVE-2025-31133', 'CVE-2025-52565'] }).length, 1, 'two of three backported: warned');
  t.same(runcWarnings({ ...DEBIAN, packageCves: ['CVE-2024-21626', ...RUNC_CVES] }), [], 'all three backported: no warning');
  t.same(runcWarnings({ text: 'runc version 1.3.3', package: null, packageCves: null }), [], 'fixed upstream version');
  t.same(runcWarnings(null), [], 'no runc in use: nothing to warn about');
  const unread = runcWarnings({ text: 'something else', package: null, packageCves: null });
  t.equal(unread.length, 1);
  t.match(unread[0], /version unreadable/);
});

t.test('the readiness runtime report', async (t) => {
  t.equal(runcVersionText('runc version 1.1.5+ds1\ncommit: x'), '1.1.5+ds1');
  t.same(runtimeReport(null, '6.1.0'), { podman: null, runc: null, runcPackage: null, runsc: null, kernel: '6.1.0', warnings: [] });
  const r = runtimeReport({ podman: '4.3.1', runc: { ...DEBIAN, packageCves: ['CVE-2024-21626'] }, runsc: '0.0~20221219.0' }, '6.1.0');
  t.match(r, { podman: '4.3.1', runc: '1.1.5+ds1', runcPackage: DEBIAN.package, runsc: '0.0~20221219.0', kernel: '6.1.0' });
  t.equal(r.warnings.length, 1);
});
