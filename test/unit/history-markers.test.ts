// Comments and documents describe the code as it is: no issue numbers, no "part A/B" of some
// piece of work, no pointers to documents that live outside the repository.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = fileURLToPath(new URL('../..', import.meta.url));
const self = relative(root, fileURLToPath(import.meta.url));
const SCANNED = ['src', 'test', 'scripts', 'images', 'deploy', 'bench', 'openapi.yaml', 'README.md'];
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.tap', '.test-run']);

const MARKERS: [string, RegExp][] = [
  ['an issue number', /\bissues? #?\d+/i],
  ['a part of some piece of work', /\bpart [AB]\b/i],
  ['a design or notes document outside the repository', /\b(DESIGN|STYLE|STACK-NOTES|EGRESS-NOTES)(\.md)?\b/],
  ['a path outside the repository', /\.\.\/shared\b|\/work\/shared\b/],
];

function files(path: string): string[] {
  const st = statSync(path);
  if (st.isFile()) return [path];
  if (!st.isDirectory()) return [];
  return readdirSync(path)
    .filter((name) => !SKIPPED_DIRS.has(name))
    .flatMap((name) => files(join(path, name)));
}

t.test('no history markers or outside references in code, tests, scripts, images, docs', async (t) => {
  const scanned = SCANNED.flatMap((p) => files(join(root, p))).filter((f) => relative(root, f) !== self);
  t.ok(scanned.length > 100, `the scan sees the repository (${scanned.length} files)`);
  const found: string[] = [];
  for (const file of scanned) {
    const text = readFileSync(file);
    if (text.includes(0)) continue; // binary
    text
      .toString('utf8')
      .split('\n')
      .forEach((line, i) => {
        for (const [what, re] of MARKERS) if (re.test(line)) found.push(`${relative(root, file)}:${i + 1}: ${what}: ${line.trim()}`);
      });
  }
  t.same(found, [], 'state the fact instead');
});

t.test('the markers match what they are meant to catch', async (t) => {
  const caught = (line: string) => MARKERS.some(([, re]) => re.test(line));
  for (const line of ['(issue 4)', 'Issue 3 part B: lifecycle', 'see issue #12', 'DESIGN.md section 9', '(STACK-NOTES)', 'per EGRESS-NOTES.md', 'STYLE.md', '../shared/DESIGN']) {
    t.ok(caught(line), line);
  }
  for (const line of ['ctx.addIssue({ code })', 'the multipart body: a `task` part', 'a design of its own', 'shared by every task']) {
    t.notOk(caught(line), line);
  }
});
