import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';

interface Rule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo: number; op: string }[];
  includes?: { arches?: string[]; caps?: string[] };
  excludes?: { arches?: string[]; caps?: string[] };
}
const profile = JSON.parse(readFileSync(new URL('../../deploy/seccomp.json', import.meta.url), 'utf8')) as {
  defaultAction: string;
  syscalls: Rule[];
};
const rulesFor = (name: string) => profile.syscalls.filter((r) => r.names.includes(name));
const CLONE_NEWUSER = 0x10000000;

t.test('the shipped profile denies by default', async (t) => {
  t.equal(profile.defaultAction, 'SCMP_ACT_ERRNO');
});

t.test('nested user namespaces, mount and keyctl are never allowed', async (t) => {
  for (const name of ['unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'keyctl', 'add_key', 'request_key', 'fsopen', 'open_tree', 'mq_open']) {
    const rules = rulesFor(name);
    t.ok(rules.length > 0, `${name} has a rule`);
    t.ok(rules.every((r) => r.action === 'SCMP_ACT_ERRNO' && r.errnoRet === 1), `${name} → EPERM in every rule`);
  }
  const clone3 = rulesFor('clone3');
  t.ok(clone3.length > 0 && clone3.every((r) => r.action === 'SCMP_ACT_ERRNO' && r.errnoRet === 38), 'clone3 → ENOSYS (its flags cannot be inspected)');
  const cloneAllows = rulesFor('clone').filter((r) => r.action === 'SCMP_ACT_ALLOW');
  t.ok(cloneAllows.length > 0, 'plain clone stays allowed');
  for (const r of cloneAllows) {
    t.notOk(r.includes?.caps?.length, 'no capability re-allows clone');
    t.ok(
      r.args?.some((a) => a.op === 'SCMP_CMP_MASKED_EQ' && (a.value & CLONE_NEWUSER) !== 0 && a.valueTwo === 0),
      'clone is allowed only when CLONE_NEWUSER (and the other namespace flags) are clear',
    );
  }
});

t.test('the profile is what the generator makes of Podman\'s default', { skip: !canRead('/usr/share/containers/seccomp.json') && 'Podman is not installed' }, async (t) => {
  const out = execFileSync(process.execPath, ['scripts/gen-seccomp.mjs', '--check'], { encoding: 'utf8' });
  t.pass(`gen-seccomp --check: ${out.trim() || 'up to date'}`);
});

function canRead(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}
