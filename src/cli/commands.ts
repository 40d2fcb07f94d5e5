import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ArchiveType, SandboxShiftClient } from '../client/client.js';
import type { Task, TaskStatus } from '../client/types.js';
import { reportError } from './exit-codes.js';
import { ProgressLine } from './progress.js';

type Out = (s: string) => void;

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
}

/** `tasks`: newest first, one line each (or the page as JSON). */
export async function tasksCommand(client: SandboxShiftClient, opts: { status?: TaskStatus; limit?: number; json?: boolean }, out: Out): Promise<number> {
  const page = await client.listTasks({ status: opts.status, limit: opts.limit });
  if (opts.json) {
    out(`${JSON.stringify(page)}\n`);
    return 0;
  }
  const widths = [28, 10, 5, 24];
  out(`${row(['ID', 'STATUS', 'EXIT', 'CREATED', 'COMMAND'], widths)}\n`);
  for (const t of page.tasks as Task[]) {
    const cmd = t.command.length > 60 ? `${t.command.slice(0, 57)}...` : t.command;
    out(`${row([t.id, t.status, t.exitCode === null ? '-' : String(t.exitCode), t.createdAt, cmd.replace(/\n/g, ' ')], widths)}\n`);
  }
  return 0;
}

/** `logs ID [-f]`: stdout to stdout, stderr to stderr; with -f until the task ends. */
export async function logsCommand(client: SandboxShiftClient, id: string, opts: { follow?: boolean }, io: { stdout: Out; stderr: Out }): Promise<number> {
  for await (const f of client.logs(id, { follow: opts.follow })) {
    if (f.type === 'stdout') io.stdout(f.data);
    else if (f.type === 'stderr') io.stderr(f.data);
    else if (f.type === 'gap') io.stderr(`sandboxshift: ${f.droppedBytes} bytes of ${f.stream} were dropped by the server's output limit\n`);
  }
  return 0;
}

export async function cancelCommand(client: SandboxShiftClient, id: string, out: Out): Promise<number> {
  const t = await client.cancelTask(id);
  out(`${t.id} ${t.status}\n`);
  return 0;
}

/** `workspaces list`: newest first, one line each (or the page as JSON). */
export async function workspaceListCommand(client: SandboxShiftClient, opts: { limit?: number; json?: boolean }, out: Out): Promise<number> {
  const page = await client.listWorkspaces({ limit: opts.limit });
  if (opts.json) {
    out(`${JSON.stringify(page)}\n`);
    return 0;
  }
  const widths = [28, 8, 12, 24];
  out(`${row(['ID', 'FILES', 'BYTES', 'CREATED', 'EXPIRES'], widths)}\n`);
  for (const w of page.workspaces) out(`${row([w.id, String(w.files), String(w.bytes), w.createdAt, w.expiresAt], widths)}\n`);
  return 0;
}

const ARCHIVE_TYPES: [RegExp, ArchiveType][] = [
  [/\.(tar\.gz|tgz)$/i, 'application/gzip'],
  [/\.tar$/i, 'application/x-tar'],
  [/\.zip$/i, 'application/zip'],
];

/** `workspaces create PATH`: a directory is packed like `run` does; a file is sent as an archive. */
export async function workspaceCreateCommand(
  client: SandboxShiftClient,
  path: string,
  opts: { json?: boolean; quiet?: boolean },
  io: { stdout: Out; stderr: Out; tty: NodeJS.WriteStream },
): Promise<number> {
  const abs = resolve(path);
  const st = await stat(abs);
  const progress = ProgressLine.for(io.tty, 'uploading', Boolean(opts.quiet || opts.json));
  const onProgress = (sent: number, total: number) => progress?.update(sent, total);
  let workspace;
  if (st.isDirectory()) {
    const up = await client.createWorkspaceFromDirectory(abs, { onProgress });
    for (const s of up.packed.skipped) if (!opts.quiet) io.stderr(`sandboxshift: skipped ${s.path}: ${s.why}\n`);
    workspace = up.workspace;
  } else {
    const type = ARCHIVE_TYPES.find(([re]) => re.test(abs))?.[1] ?? 'application/octet-stream';
    await (await open(abs)).close(); // readable, or the error names the file
    workspace = await client.createWorkspaceFromArchive({ path: abs, size: st.size }, type, { onProgress });
  }
  progress?.done();
  out(io.stdout, opts.json ? JSON.stringify(workspace) : `${workspace.id} ${workspace.files} files ${workspace.bytes} bytes`);
  return 0;
}

function out(w: Out, line: string) {
  w(`${line}\n`);
}

export async function workspaceGetCommand(client: SandboxShiftClient, id: string, out: Out): Promise<number> {
  out(`${JSON.stringify(await client.getWorkspace(id), null, 2)}\n`);
  return 0;
}

export async function workspaceDeleteCommand(client: SandboxShiftClient, id: string, out: Out): Promise<number> {
  await client.deleteWorkspace(id);
  out(`${id} deleted\n`);
  return 0;
}

/** Runs a client command, printing a server error as its code and message. */
export async function guarded(fn: () => Promise<number>, stderr: Out): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    return reportError(err, stderr);
  }
}
