import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ContainerEngine, RunningSandbox, SandboxExit, SandboxHandlers, SandboxJob, SandboxShape, StreamName } from '../../src/runtime/engine.js';

/** An engine the contract runs against: each call of `engine()` is a new instance for the same server. */
export interface EngineUnderTest {
  shape: SandboxShape;
  engine(): Promise<ContainerEngine & { close?(): Promise<void> }>;
}

interface Tap {
  test(name: string, fn: (t: Tap) => Promise<void>): unknown;
  teardown(fn: () => unknown): void;
  equal(a: unknown, b: unknown, msg?: string): void;
  same(a: unknown, b: unknown, msg?: string): void;
  ok(v: unknown, msg?: string): void;
  match(a: unknown, b: unknown, msg?: string): void;
  notOk(v: unknown, msg?: string): void;
}

/** Output as it arrived: each event with its stream, and each stream's bytes. */
export class Collected {
  readonly events: { stream: StreamName | 'combined'; text: string }[] = [];
  readonly notes: string[] = [];

  handlers(): SandboxHandlers {
    return {
      onOutput: (stream, data) => this.events.push({ stream, text: data.toString() }),
      onCombined: (data) => this.events.push({ stream: 'combined', text: data.toString() }),
      onNote: (note) => this.notes.push(note),
    };
  }

  text(stream: StreamName | 'combined'): string {
    return this.events
      .filter((e) => e.stream === stream)
      .map((e) => e.text)
      .join('');
  }

  all(): string {
    return this.events.map((e) => e.text).join('');
  }

  /** Resolves once `pattern` has appeared in the output. */
  async waitFor(pattern: string, ms = 20_000): Promise<void> {
    const until = Date.now() + ms;
    while (!this.all().includes(pattern)) {
      if (Date.now() > until) throw new Error(`no ${JSON.stringify(pattern)} in output within ${ms} ms: ${JSON.stringify(this.all())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A host workspace directory with these files, owned by the sandbox user (65532). */
export function workspaceDir(t: Tap, files: Record<string, string> = {}): string {
  const root = mkdtempSync(join(tmpdir(), 'sbx-contract-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'ws');
  mkdirSync(dir, { mode: 0o755 });
  chownSync(dir, 65532, 65532);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
    chownSync(join(dir, name), 65532, 65532);
  }
  return dir;
}

let seq = 0;
const taskId = () => `tsk_Contract_${process.pid}_${Date.now().toString(36)}_${++seq}`;

function job(dir: string, command: string, over: Partial<SandboxJob> = {}): SandboxJob {
  return { taskId: taskId(), command, env: {}, workspaceDir: dir, workspaceReadonly: false, stdin: false, backstopSeconds: 120, ...over };
}

/** Resolves with the exit, or rejects after `ms`. */
function within(exit: Promise<SandboxExit>, ms: number, what: string): Promise<SandboxExit> {
  return Promise.race([exit, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no exit within ${ms} ms`)), ms).unref())]);
}

/**
 * The ContainerEngine contract: what every engine (Podman, Kubernetes) does the same way, as the
 * task runner relies on it.
 */
export function engineContract(t: Tap, sut: EngineUnderTest): void {
  const fresh = async (tt: Tap) => {
    const engine = await sut.engine();
    tt.teardown(() => engine.close?.());
    return engine;
  };

  t.test('stdout and stderr arrive apart, each in order, and in order with each other', async (tt) => {
    const engine = await fresh(tt);
    const out = new Collected();
    const cmd = 'echo o1; sleep 0.3; echo e1 >&2; sleep 0.3; echo o2; sleep 0.3; echo e2 >&2; sleep 0.3; printf tail';
    const sb = await engine.start(sut.shape, job(workspaceDir(tt), cmd), out.handlers());
    const exit = await within(sb.exit, 30_000, 'output');
    tt.equal(exit.exitCode, 0);
    tt.equal(out.text('stdout'), 'o1\no2\ntail', 'stdout, with a last line without newline');
    tt.equal(out.text('stderr'), 'e1\ne2\n', 'stderr');
    const order = out.events.map((e) => e.text).join('').replace(/\n/g, ' ');
    tt.equal(order, 'o1 e1 o2 e2 tail', 'the two streams in the order they were written');
  });

  t.test('exit codes are the command’s', async (tt) => {
    const engine = await fresh(tt);
    for (const [cmd, code] of [
      ['exit 7', 7],
      ['true', 0],
      ['kill -9 $$', 137],
    ] as const) {
      const sb = await engine.start(sut.shape, job(workspaceDir(tt), cmd), new Collected().handlers());
      tt.equal((await within(sb.exit, 30_000, cmd)).exitCode, code, cmd);
    }
  });

  t.test('stdin reaches the command and its end is an EOF', async (tt) => {
    const engine = await fresh(tt);
    const out = new Collected();
    const sb = await engine.start(sut.shape, job(workspaceDir(tt), 'cat; echo "[eof]"', { stdin: true }), out.handlers());
    tt.ok(sb.writeStdin(Buffer.from('line one\n')), 'stdin accepted');
    sb.writeStdin(Buffer.from('line two\n'));
    sb.endStdin();
    const exit = await within(sb.exit, 30_000, 'stdin');
    tt.equal(exit.exitCode, 0);
    tt.equal(out.text('stdout'), 'line one\nline two\n[eof]\n');
  });

  t.test('a task without stdin reads EOF at once', async (tt) => {
    const engine = await fresh(tt);
    const out = new Collected();
    const sb = await engine.start(sut.shape, job(workspaceDir(tt), 'cat; echo "[eof]"'), out.handlers());
    tt.equal((await within(sb.exit, 30_000, 'no stdin')).exitCode, 0);
    tt.equal(out.text('stdout'), '[eof]\n');
  });

  t.test('stop ends the whole tree, a child that ignores SIGTERM and holds stdout included', async (tt) => {
    const engine = await fresh(tt);
    const out = new Collected();
    const cmd = "trap '' TERM; (trap '' TERM; while :; do echo tick; sleep 0.2; done) & echo started; sleep 300";
    const sb = await engine.start(sut.shape, job(workspaceDir(tt), cmd), out.handlers());
    await out.waitFor('started');
    await sb.stop(1);
    const exit = await within(sb.exit, 30_000, 'stop');
    tt.ok(exit.exitCode === null || exit.exitCode >= 128, `killed (exit ${exit.exitCode})`);
    const after = out.all().length;
    await new Promise((r) => setTimeout(r, 600));
    tt.equal(out.all().length, after, 'nothing more arrives after the exit');
    tt.notOk((await engine.listOurs()).some((c) => c.containerId === sb.containerId && c.running), 'not running any more');
  });

  t.test('stop gives the command SIGTERM first: its own handler runs and sets the exit code', async (tt) => {
    const engine = await fresh(tt);
    const out = new Collected();
    const cmd = "trap 'echo got-term; exit 7' TERM; echo started; while :; do sleep 0.1; done";
    const sb = await engine.start(sut.shape, job(workspaceDir(tt), cmd), out.handlers());
    await out.waitFor('started');
    await sb.stop(10);
    const exit = await within(sb.exit, 30_000, 'stop with a handler');
    tt.equal(exit.exitCode, 7, 'the exit code is the handler\'s');
    tt.equal(out.text('stdout'), 'started\ngot-term\n');
  });

  t.test('the workspace is visible to the command and its changes come back', async (tt) => {
    const engine = await fresh(tt);
    const dir = workspaceDir(tt, { 'in.txt': 'input\n', 'sub/keep.txt': 'kept\n', 'gone.txt': 'x' });
    const out = new Collected();
    const cmd = 'cat in.txt sub/keep.txt; echo made > out.txt; mkdir -p new/deep; echo deep > new/deep/f; rm gone.txt';
    const sb = await engine.start(sut.shape, job(dir, cmd), out.handlers());
    tt.equal((await within(sb.exit, 30_000, 'workspace')).exitCode, 0);
    tt.equal(out.text('stdout'), 'input\nkept\n', 'the files were there');
    tt.equal(readFileSync(join(dir, 'out.txt'), 'utf8'), 'made\n', 'a new file came back');
    tt.equal(readFileSync(join(dir, 'new/deep/f'), 'utf8'), 'deep\n', 'a new directory tree came back');
    tt.equal(readFileSync(join(dir, 'sub/keep.txt'), 'utf8'), 'kept\n', 'an untouched file stayed');
    tt.notOk(readdirSync(dir).includes('gone.txt'), 'a removed file is gone');
  });

  t.test('a new engine instance lists a running sandbox and adopts it to its end', async (tt) => {
    const first = await sut.engine();
    const out1 = new Collected();
    const dir = workspaceDir(tt);
    const j = job(dir, 'echo before; sleep 2; echo after; echo done > result.txt');
    const sb = await first.start(sut.shape, j, out1.handlers());
    await out1.waitFor('before');
    await sb.detach();
    await first.close?.();
    const second = await fresh(tt);
    const mine = (await second.listOurs()).find((c) => c.containerId === sb.containerId);
    tt.ok(mine, 'listed by the new instance');
    tt.equal(mine?.taskId, j.taskId, 'with its task id');
    tt.equal(mine?.running, true, 'as running');
    const out2 = new Collected();
    const adopted = await second.adopt(sb.containerId, { stdin: false, from: null, workspaceDir: dir }, out2.handlers());
    tt.ok(adopted, 'adopted');
    const exit = await within(adopted!.exit, 30_000, 'adopted');
    tt.equal(exit.exitCode, 0);
    tt.match(out2.all(), /after/, 'output after the adoption arrives');
    tt.equal(readFileSync(join(dir, 'result.txt'), 'utf8'), 'done\n', 'the workspace written after the adoption is there');
    await second.whenRemoved?.(sb.containerId);
    tt.notOk((await second.listOurs()).some((c) => c.containerId === sb.containerId), 'gone after its exit');
  });

  t.test('remove stops and deletes a sandbox, and is idempotent', async (tt) => {
    const engine = await fresh(tt);
    const out = new Collected();
    const sb: RunningSandbox = await engine.start(sut.shape, job(workspaceDir(tt), 'echo up; sleep 300'), out.handlers());
    await out.waitFor('up');
    await engine.remove(sb.containerId);
    await engine.remove(sb.containerId);
    await within(sb.exit, 30_000, 'removed');
    await engine.whenRemoved?.(sb.containerId);
    tt.notOk((await engine.listOurs()).some((c) => c.containerId === sb.containerId), 'no longer listed');
    await engine.remove(sb.containerId);
    tt.ok(true, 'a third remove of a missing sandbox resolves');
  });
}
