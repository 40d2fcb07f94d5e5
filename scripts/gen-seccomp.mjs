#!/usr/bin/env node
// Generates deploy/seccomp.json (the seccomp profile of task containers) from Podman's default
// profile. Plain Node ESM, no dependencies. See deploy/README-seccomp.md.
//
//   node scripts/gen-seccomp.mjs [input=/usr/share/containers/seccomp.json] [output=deploy/seccomp.json]
//   node scripts/gen-seccomp.mjs --check [input] [output]   exit 1 if output is not up to date
//
// Deterministic: same input → byte-identical output (fixed key order, 2-space JSON, trailing
// newline). Idempotent: running it on its own output gives the same output.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const DEFAULT_INPUT = '/usr/share/containers/seccomp.json';
const DEFAULT_OUTPUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'deploy', 'seccomp.json');

// Namespace flags of clone(2). Their OR is the mask Docker's default profile uses
// (2114060288 = 0x7E020000).
const CLONE_NS_FLAGS = [
  ['CLONE_NEWNS', 0x00020000],
  ['CLONE_NEWCGROUP', 0x02000000],
  ['CLONE_NEWUTS', 0x04000000],
  ['CLONE_NEWIPC', 0x08000000],
  ['CLONE_NEWUSER', 0x10000000],
  ['CLONE_NEWPID', 0x20000000],
  ['CLONE_NEWNET', 0x40000000],
];
const CLONE_NS_MASK = CLONE_NS_FLAGS.reduce((m, [, f]) => m | f, 0);

// Denied outright with EPERM, whatever the capabilities or the architecture.
const DENIED = [
  'unshare', 'setns',
  'mount', 'umount', 'umount2', 'pivot_root',
  'keyctl', 'add_key', 'request_key',
  'fsopen', 'fsmount', 'fsconfig', 'fspick', 'move_mount', 'open_tree', 'mount_setattr',
  // POSIX message queues are charged to a per-UID byte budget (RLIMIT_MSGQUEUE) that every task
  // shares: ten default-sized queues held by one task leave every other task with EMFILE.
  'mq_open',
];
// Every syscall whose rules this script owns: removed from every rule of the input, then given
// exactly the rules below.
const MANAGED = new Set(['clone', 'clone3', ...DENIED]);

const TAG = 'SandboxShift:';
// clone's flags are arg 0, except on s390/s390x where they are arg 1.
const CLONE_ARCH_VARIANTS = [
  { index: 0, includes: {}, excludes: { arches: ['s390', 's390x'] }, note: '' },
  { index: 1, includes: { arches: ['s390', 's390x'] }, excludes: {}, note: ' (s390: flags are arg 1)' },
];

const OWN_RULES = [
  ...CLONE_ARCH_VARIANTS.flatMap(({ index, includes, excludes, note }) => [
    {
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index, value: CLONE_NS_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      comment: `${TAG} clone only without namespace flags${note}`,
      includes,
      excludes,
    },
    // Without these, a clone with a namespace flag would get the default action (ENOSYS);
    // EPERM is the honest answer ("not allowed"), as under Docker's default profile.
    ...CLONE_NS_FLAGS.map(([flagName, flag]) => ({
      names: ['clone'],
      action: 'SCMP_ACT_ERRNO',
      args: [{ index, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      comment: `${TAG} clone with ${flagName} is refused${note}`,
      includes,
      excludes,
      errnoRet: 1,
      errno: 'EPERM',
    })),
  ]),
  {
    names: ['clone3'],
    action: 'SCMP_ACT_ERRNO',
    args: [],
    comment: `${TAG} clone3 flags are in memory seccomp cannot read; ENOSYS makes libc fall back to clone`,
    includes: {},
    excludes: {},
    errnoRet: 38,
    errno: 'ENOSYS',
  },
  {
    names: [...DENIED],
    action: 'SCMP_ACT_ERRNO',
    args: [],
    comment: `${TAG} no namespaces, mounts or kernel keyrings in task containers`,
    includes: {},
    excludes: {},
    errnoRet: 1,
    errno: 'EPERM',
  },
];

// Key order of Podman's own file; keys not listed come after, sorted.
const KEY_ORDER = [
  'defaultAction', 'defaultErrnoRet', 'defaultErrno', 'architectures', 'archMap', 'syscalls',
  'architecture', 'subArchitectures',
  'names', 'name', 'action', 'args', 'comment', 'includes', 'excludes', 'errnoRet', 'errno',
  'index', 'value', 'valueTwo', 'op',
  'arches', 'caps', 'minKernel',
];

function ordered(v) {
  if (Array.isArray(v)) return v.map(ordered);
  if (v === null || typeof v !== 'object') return v;
  const rank = (k) => (KEY_ORDER.includes(k) ? KEY_ORDER.indexOf(k) : KEY_ORDER.length);
  const keys = Object.keys(v).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(keys.map((k) => [k, ordered(v[k])]));
}

function fail(msg) {
  throw new Error(msg);
}

export function generate(profile) {
  if (!profile || !Array.isArray(profile.syscalls)) fail('input has no "syscalls" array');
  const allowing = (a) => a === 'SCMP_ACT_ALLOW' || a === 'SCMP_ACT_LOG';
  if (allowing(profile.defaultAction)) {
    fail(`input defaultAction ${profile.defaultAction} is not a deny-by-default profile`);
  }
  const syscalls = [];
  for (const rule of profile.syscalls) {
    const names = [rule.names ?? [], rule.name ? [rule.name] : []].flat();
    const kept = names.filter((n) => !MANAGED.has(n));
    if (kept.length === 0) continue; // the rule only covered syscalls we own
    const { name: _drop, ...rest } = rule;
    syscalls.push({ ...rest, names: kept });
  }
  syscalls.push(...structuredClone(OWN_RULES));
  const out = ordered({ ...profile, syscalls });
  selfCheck(out);
  return out;
}

// The guarantees the README promises, checked on the generated profile itself.
function selfCheck(p) {
  for (const r of p.syscalls) {
    for (const n of r.names) {
      if (!MANAGED.has(n)) continue;
      const own = OWN_RULES.some((o) => o.names.includes(n) && o.comment === r.comment);
      if (!own) fail(`self-check: ${n} appears in a rule not generated here`);
    }
    if (r.names.some((n) => DENIED.includes(n) || n === 'clone3') && r.action !== 'SCMP_ACT_ERRNO') {
      fail(`self-check: a denied syscall is in a ${r.action} rule`);
    }
    if (r.names.includes('clone')) {
      const a = r.args ?? [];
      const one = a.length === 1 && a[0].op === 'SCMP_CMP_MASKED_EQ' && !(r.includes?.caps?.length) &&
        !(r.excludes?.caps?.length);
      const allow = one && r.action === 'SCMP_ACT_ALLOW' && a[0].value === CLONE_NS_MASK && a[0].valueTwo === 0;
      const deny = one && r.action === 'SCMP_ACT_ERRNO' && r.errnoRet === 1 && a[0].value === a[0].valueTwo &&
        CLONE_NS_FLAGS.some(([, f]) => f === a[0].value);
      if (!allow && !deny) fail('self-check: a clone rule is not one of the masked, capability-independent ones');
    }
  }
}

export function render(profile) {
  return JSON.stringify(profile, null, 2) + '\n';
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  try {
    main();
  } catch (e) {
    process.stderr.write(`gen-seccomp: ${e.message}\n`);
    process.exit(1);
  }
}

function main() {
  const args = process.argv.slice(2);
  const check = args[0] === '--check';
  if (check) args.shift();
  const input = args[0] ?? DEFAULT_INPUT;
  const output = args[1] ?? DEFAULT_OUTPUT;
  let profile;
  try {
    profile = JSON.parse(readFileSync(input, 'utf8'));
  } catch (e) {
    fail(`cannot read ${input}: ${e.message}`);
  }
  const text = render(generate(profile));
  if (check) {
    let current = '';
    try { current = readFileSync(output, 'utf8'); } catch { /* missing counts as stale */ }
    if (current !== text) fail(`${output} is not what ${input} generates; rerun without --check`);
    process.stdout.write(`gen-seccomp: ${output} is up to date\n`);
  } else {
    writeFileSync(output, text);
    process.stdout.write(`gen-seccomp: wrote ${output} from ${input}\n`);
  }
}
