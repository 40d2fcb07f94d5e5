// Static checks of the registry (Chainguard/Wolfi) Dockerfiles. No registry is reachable where
// this project is tested, so these images are never built here: this test pins their contract
// (images/README.md) and the offline images prove it at run time.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { DEFAULT_IMAGES } from '../../src/config/schema.js';

const dir = new URL('../../images/', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, dir), 'utf8');

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Dockerfile → instructions (continuations joined, comments dropped), with their stage index. */
function parse(text: string): Instruction[] {
  const logical: string[] = [];
  let cur = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && cur === '') continue;
    if (/\\\s*$/.test(line)) cur += line.replace(/\\\s*$/, ' ');
    else {
      cur += line;
      if (cur.trim()) logical.push(cur.trim());
      cur = '';
    }
  }
  let stage = -1;
  return logical.map((l) => {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/s.exec(l) ?? [];
    if (op.toUpperCase() === 'FROM') stage++;
    return { op: op.toUpperCase(), args: args.trim(), stage };
  });
}

// Image → the versioned Wolfi packages its tag relies on, and the runtime version check.
const IMAGES: Record<string, { tag: string; packages: string[]; check: RegExp | null }> = {
  python: { tag: DEFAULT_IMAGES.languages.python.image, packages: ['python-3.11'], check: /python3 --version \| grep -q "\^Python 3\\\.11\\\."/ },
  node: { tag: DEFAULT_IMAGES.languages.node.image, packages: ['nodejs-20'], check: /node --version \| grep -q "\^v20\\\."/ },
  multi: { tag: DEFAULT_IMAGES.multi.image, packages: ['python-3.11', 'nodejs-20'], check: /python3 --version .*node --version/ },
  go: { tag: DEFAULT_IMAGES.languages.go.image, packages: ['go-1.22'], check: /go version \| grep -q " go1\\\.22\\\."/ },
  java: { tag: DEFAULT_IMAGES.languages.java.image, packages: ['openjdk-21'], check: /java -version 2>&1 \| grep -q "version \\"21\\\."/ },
  rust: { tag: DEFAULT_IMAGES.languages.rust.image, packages: ['rust'], check: null },
};

const makefile = read('Makefile');
const lock = read('bases.lock')
  .split('\n')
  .filter((l) => l.trim() && !l.startsWith('#'))
  .map((l) => l.trim().split(/\s+/));

t.test('bases.lock: every base has a reference and a digest or the word "unresolved" (never an invented one)', async (t) => {
  t.ok(lock.length >= 1, 'at least one base');
  for (const [name, ref, digest] of lock) {
    t.match(ref, /^cgr\.dev\/chainguard\/[a-z0-9-]+:[\w.-]+$/, `${name}: a Chainguard reference`);
    t.match(digest, /^(sha256:[0-9a-f]{64}|unresolved)$/, `${name}: digest ${digest}`);
  }
});

t.test('make refuses to build from an unpinned base, and passes REFERENCE@DIGEST when pinned', async (t) => {
  t.match(makefile, /--build-arg WOLFI_BASE=\$\(WOLFI_REF\)@\$\(WOLFI_DIGEST\)/);
  const wolfi = lock.find(([n]) => n === 'wolfi-base')!;
  const r = spawnSync('make', ['-s', '-C', new URL('.', dir).pathname, 'check-pins'], { encoding: 'utf8' });
  if (wolfi[2] === 'unresolved') {
    t.not(r.status, 0, 'check-pins fails while unresolved');
    t.match(r.stderr, /not pinned to a digest .*make -C images pin/, 'and says what to do');
  } else t.equal(r.status, 0, 'check-pins passes once pinned');
});

for (const [name, spec] of Object.entries(IMAGES)) {
  t.test(`images/${name}/Dockerfile`, async (t) => {
    const text = read(`${name}/Dockerfile`);
    const ins = parse(text);
    const froms = ins.filter((i) => i.op === 'FROM');
    const last = froms.length - 1;
    const final = ins.filter((i) => i.stage === last);
    t.ok(froms.length >= 2, 'multi-stage');
    for (const f of froms.slice(0, -1)) t.match(f.args, /^\$\{WOLFI_BASE\} AS \w+$/, `build stage from the pinned base: FROM ${f.args}`);
    t.match(froms[last]!.args, /^(scratch|\$\{WOLFI_BASE\})$/, `final stage FROM ${froms[last]!.args}`);
    const arg = ins.find((i) => i.op === 'ARG' && i.args.startsWith('WOLFI_BASE'));
    t.equal(arg?.args, 'WOLFI_BASE', 'ARG WOLFI_BASE has no default (an unpinned build cannot happen by accident)');
    t.equal(arg?.stage, -1, 'declared before the first FROM');

    for (const op of ['CMD', 'ENTRYPOINT', 'EXPOSE', 'VOLUME']) t.notOk(ins.some((i) => i.op === op), `no ${op}`);
    const users = final.filter((i) => i.op === 'USER');
    t.match(users.at(-1)?.args, /^65532(:65532)?$/, 'USER 65532 in the final stage');
    t.equal(final.filter((i) => i.op === 'WORKDIR').at(-1)?.args, '/workspace', 'WORKDIR /workspace');
    t.ok(ins.findIndex((i) => i.op === 'USER' && i.stage === last) > ins.findLastIndex((i) => i.op === 'RUN'), 'nothing runs as root after USER');

    const finalRuns = final.filter((i) => i.op === 'RUN').map((i) => i.args);
    t.notOk(finalRuns.some((r) => /\bapk\s+(add|update|upgrade|del)\b/.test(r)), 'no apk invocation in the final stage');
    t.ok(finalRuns.some((r) => /! command -v apk/.test(r)), 'the build fails if apk is in the final root');
    t.ok(final.some((i) => i.op === 'COPY' && /^--from=build \/rootfs\/ \/$/.test(i.args)), 'the final root comes from the build stage');

    // The egress relay: compiled statically in the build stage, copied into the final stage.
    const build = ins.filter((i) => i.stage < last);
    t.ok(build.some((i) => i.op === 'COPY' && /relay\/sbx-relay\.c/.test(i.args)), 'relay source copied into the build stage');
    t.ok(build.some((i) => i.op === 'RUN' && /gcc -static .*sbx-relay\.c/.test(i.args)), 'relay compiled statically');
    t.ok(final.some((i) => i.op === 'COPY' && /^--from=build \/sbx-relay \/usr\/local\/bin\/sbx-relay$/.test(i.args)), 'relay copied into the final stage');
    t.match(final.find((i) => i.op === 'LABEL')?.args, /io\.sandboxshift\.relay=\/usr\/local\/bin\/sbx-relay/, 'relay label');
    t.match(final.find((i) => i.op === 'LABEL')?.args, /io\.sandboxshift\.build=registry/, 'build mode label');
    t.match(final.find((i) => i.op === 'LABEL')?.args, /io\.sandboxshift\.relay\.stdin=1/, 'the relay has the stdin mode');

    const apkRoot = build.find((i) => i.op === 'RUN' && /apk add .*--root \/rootfs/.test(i.args))?.args ?? '';
    for (const p of ['busybox', ...spec.packages]) t.match(apkRoot, new RegExp(`\\s${p.replace('.', '\\.')}(\\s|$)`), `versioned package ${p} in the runtime root`);
    t.notMatch(apkRoot, /\sapk-tools\b/, 'apk-tools is not installed into the runtime root');
    if (spec.check) t.ok(finalRuns.some((r) => spec.check!.test(r)), 'the build checks the version the tag promises');
    t.match(text, /HOME=\/workspace\/\.home/, 'HOME in the workspace');

    t.match(makefile, new RegExp(`tag_${name} := ${spec.tag.replace(/[.]/g, '\\.')}\\n`), `make tags it ${spec.tag}`);
    t.ok(existsSync(new URL(`${name}/README.md`, dir)), `images/${name}/README.md exists`);
  });
}

t.test('Makefile targets of the issue exist', async (t) => {
  for (const target of ['pin', 'build-all', 'build-python', 'build-node', 'build-multi', 'push-all', 'offline-all', 'offline-python', 'offline-node', 'offline-multi', 'offline-go', 'offline-java', 'offline-rust']) {
    const r = spawnSync('make', ['-n', '-C', new URL('.', dir).pathname, target], { encoding: 'utf8', env: { ...process.env, IMAGE_REGISTRY: 'registry.invalid/x' } });
    t.ok(r.status === 0 || /not pinned/.test(r.stderr), `make -n ${target} (${r.stderr.trim().split('\n')[0] ?? ''})`);
  }
  t.match(makefile, /push-%:[\s\S]*IMAGE_REGISTRY/, 'push uses IMAGE_REGISTRY');
});
