import { resolve } from 'node:path';
import { SandboxShiftClient } from '../client/client.js';
import { SandboxShiftError } from '../client/errors.js';
import type { ExitFrame, TaskRequest } from '../client/types.js';
import { downloadChanged } from './download.js';
import { EXIT, exitCodeFor, reportError } from './exit-codes.js';
import { ProgressLine } from './progress.js';
import { commandLine } from './shell.js';

export interface RunOptions {
  allow?: string[];
  timeout?: number;
  memoryMb?: number;
  cpus?: number;
  env?: string[];
  image?: string;
  workspace?: string;
  download?: string;
  json?: boolean;
  quiet?: boolean;
  stdin?: boolean;
  keepWorkspace?: boolean;
}

export interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
}

/** Most output kept in memory for --json, per stream. */
const JSON_OUTPUT_MAX = 16 * 1024 * 1024;
const STDIN_CHUNK = 256 * 1024;

function parseEnv(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`--env needs K=V, got "${p}"`);
    env[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return env;
}

export class UsageError extends Error {}

async function write(out: NodeJS.WriteStream, data: string): Promise<void> {
  if (!out.write(data)) await new Promise<void>((r) => out.once('drain', r));
}

/** `sandboxshift run DIR -- COMMAND...`: upload, run, stream, exit with the task's code. */
export async function runCommand(client: SandboxShiftClient, dir: string, words: string[], opts: RunOptions, io: Io): Promise<number> {
  let command: string;
  let env: Record<string, string>;
  try {
    command = commandLine(words);
    env = parseEnv(opts.env ?? []);
  } catch (err) {
    io.stderr.write(`sandboxshift run: ${(err as Error).message}\n`);
    return EXIT.USAGE;
  }
  const say = (s: string) => {
    if (!opts.quiet && !opts.json) io.stderr.write(s);
  };

  let workspaceId = opts.workspace;
  let uploaded: Map<string, string | null> | null = null;
  let ownWorkspace = false;
  try {
    if (!workspaceId) {
      const progress = ProgressLine.for(io.stderr, 'uploading', Boolean(opts.quiet || opts.json));
      const up = await client.createWorkspaceFromDirectory(resolve(dir), {
        hash: Boolean(opts.download),
        onProgress: (sent, total) => progress?.update(sent, total),
      });
      if (progress) {
        progress.update(up.packed.bytes, up.packed.bytes, true);
        progress.done();
      }
      for (const s of up.packed.skipped) say(`sandboxshift: skipped ${s.path}: ${s.why}\n`);
      workspaceId = up.workspace.id;
      uploaded = up.packed.files;
      ownWorkspace = !opts.keepWorkspace;
    }

    const body: TaskRequest = {
      command,
      workspace: { id: workspaceId },
      env,
      stdin: Boolean(opts.stdin),
      ...(opts.image ? { image: opts.image } : {}),
      ...(opts.timeout !== undefined ? { timeoutSeconds: opts.timeout } : {}),
      ...(opts.memoryMb !== undefined || opts.cpus !== undefined
        ? { resources: { ...(opts.memoryMb !== undefined ? { memoryMb: opts.memoryMb } : {}), ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}) } }
        : {}),
      ...(opts.allow?.length ? { network: { allow: opts.allow } } : {}),
    };
    const task = await client.submitTask(body);

    const stream = client.events(task.id, { onServerError: (e) => say(`sandboxshift: ${e.code}: ${e.message}\n`) });
    let cancelled = false;
    const onSigint = () => {
      if (cancelled) process.exit(EXIT.CANCELLED); // a second Ctrl-C: leave at once
      cancelled = true;
      say('sandboxshift: cancelling the task (Ctrl-C again to leave at once)\n');
      client.cancelTask(task.id).catch((err: unknown) => {
        if (!(err instanceof SandboxShiftError && err.code === 'TASK_NOT_ACTIVE')) reportError(err, (s) => io.stderr.write(s));
      });
    };
    process.on('SIGINT', onSigint);

    if (opts.stdin) void forwardStdin(io.stdin, stream);

    const out = { stdout: '', stderr: '' };
    let exit: ExitFrame | null = null;
    try {
      for await (const frame of stream) {
        if (frame.type === 'stdout' || frame.type === 'stderr') {
          if (opts.json) {
            if (out[frame.type].length < JSON_OUTPUT_MAX) out[frame.type] += frame.data;
          } else await write(frame.type === 'stdout' ? io.stdout : io.stderr, frame.data);
        } else if (frame.type === 'gap') {
          say(`sandboxshift: ${frame.droppedBytes} bytes of ${frame.stream} were dropped by the server's output limit\n`);
        } else if (frame.type === 'exit') exit = frame;
      }
    } finally {
      process.off('SIGINT', onSigint);
      if (opts.stdin) io.stdin.pause();
    }
    if (!exit) throw new Error('the task stream ended without an exit frame');

    let downloaded: string[] | undefined;
    if (opts.download) {
      const t = await client.getTask(task.id);
      const r = await downloadChanged(client, workspaceId, resolve(opts.download), uploaded, t.startedAt ? new Date(t.startedAt) : null);
      for (const s of r.skipped) say(`sandboxshift: not downloaded ${s.path}: ${s.why}\n`);
      say(`sandboxshift: downloaded ${r.written.length} file(s) to ${opts.download}\n`);
      downloaded = r.written;
    }
    if (opts.json) {
      const { status, exitCode, reason, durationMs } = exit;
      io.stdout.write(`${JSON.stringify({ taskId: task.id, workspaceId, status, exitCode, reason, durationMs, stdout: out.stdout, stderr: out.stderr, ...(downloaded ? { downloaded } : {}) })}\n`);
    } else if (exit.status !== 'succeeded' && exit.status !== 'failed') {
      say(`sandboxshift: task ${task.id} ${exit.status}${exit.reason ? ` (${exit.reason})` : ''}\n`);
    } else if (exit.reason === 'oom' || exit.reason === 'disk_quota') {
      say(`sandboxshift: task ${task.id} failed: ${exit.reason}\n`);
    }
    return exitCodeFor(exit);
  } catch (err) {
    return reportError(err, (s) => io.stderr.write(s));
  } finally {
    if (ownWorkspace && workspaceId) await client.deleteWorkspace(workspaceId).catch(() => undefined);
  }
}

/** Own stdin → the task's stdin, paced by the socket; end of input closes the task's stdin. */
async function forwardStdin(stdin: NodeJS.ReadStream, stream: import('../client/stream.js').TaskStream): Promise<void> {
  stdin.setEncoding('utf8');
  try {
    for await (const chunk of stdin as AsyncIterable<string>) {
      for (let i = 0; i < chunk.length; i += STDIN_CHUNK) stream.sendStdin(chunk.slice(i, i + STDIN_CHUNK));
      while (stream.bufferedAmount > 1024 * 1024) await new Promise((r) => setTimeout(r, 20));
    }
    stream.endStdin();
  } catch {
    // stdin closed under us: nothing more to send
  }
}
