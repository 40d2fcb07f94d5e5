import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

const SRC = new URL('../../src/', import.meta.url).pathname;

/** The relative imports of every .ts file under src/<dir>/, as paths under src/. */
function importsOf(dir: string): { file: string; target: string }[] {
  const out: { file: string; target: string }[] = [];
  for (const name of readdirSync(join(SRC, dir), { recursive: true }) as string[]) {
    if (!name.endsWith('.ts')) continue;
    const file = join(dir, name);
    const text = readFileSync(join(SRC, file), 'utf8');
    for (const m of text.matchAll(/\bfrom\s+'(\.[^']+)'/g)) {
      out.push({ file, target: join(file, '..', m[1]!) });
    }
  }
  return out;
}

t.test('store/ is below tasks/: nothing in src/store imports src/tasks (the task ports live in tasks/)', async (t) => {
  const upward = importsOf('store').filter((i) => i.target.startsWith('tasks/'));
  t.same(upward, [], 'no import from src/store into src/tasks');
});

t.test('the task ports are in src/tasks/ports.ts', async (t) => {
  const ports = readFileSync(join(SRC, 'tasks/ports.ts'), 'utf8');
  t.match(ports, /export interface TaskStore\b/);
  t.match(ports, /export interface TaskWorkspaces\b/);
});
