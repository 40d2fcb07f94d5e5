import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { SandboxShiftClient } from '../client/client.js';
import { ConnectionError, SandboxShiftError } from '../client/errors.js';
import type { TaskRequest } from '../client/types.js';
import { shellQuote } from '../cli/shell.js';

/** Output kept per stream in a run_command result; the rest is counted, not returned. */
export const RESULT_OUTPUT_MAX = 1024 * 1024;

export type Progress = (progress: number, message: string) => Promise<void>;

export function ok(text: string, structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

/** A refusal (or an unreachable server) as a tool error carrying the server's code. */
export function toolError(err: unknown): CallToolResult {
  if (err instanceof SandboxShiftError) {
    return {
      isError: true,
      content: [{ type: 'text', text: `${err.code}: ${err.message}${err.details ? ` ${JSON.stringify(err.details)}` : ''}` }],
      structuredContent: { error: { code: err.code, status: err.status, message: err.message, ...(err.details ? { details: err.details } : {}) } },
    };
  }
  const code = err instanceof ConnectionError ? 'UNREACHABLE' : 'CLIENT_ERROR';
  const message = err instanceof Error ? err.message : String(err);
  return { isError: true, content: [{ type: 'text', text: `${code}: ${message}` }], structuredContent: { error: { code, message } } };
}

export interface RunArgs {
  command: string;
  files?: Record<string, string>;
  workspaceId?: string;
  image?: string;
  timeoutSeconds?: number;
  allow?: string[];
  env?: Record<string, string>;
}

class Kept {
  text = '';
  bytes = 0;
  add(s: string) {
    this.bytes += Buffer.byteLength(s);
    if (this.text.length < RESULT_OUTPUT_MAX) this.text += s.slice(0, RESULT_OUTPUT_MAX - this.text.length);
  }
  get truncated() {
    return Buffer.byteLength(this.text) < this.bytes;
  }
}

/** run_command: one task, its output collected, progress reported per output frame (at most every 250 ms). */
export async function runTool(client: SandboxShiftClient, a: RunArgs, progress: Progress | null): Promise<CallToolResult> {
  if (a.files && a.workspaceId) return toolError(new Error('give files or workspaceId, not both'));
  const body: TaskRequest = {
    command: a.command,
    ...(a.files ? { workspace: { files: a.files } } : a.workspaceId ? { workspace: { id: a.workspaceId } } : {}),
    ...(a.image ? { image: a.image } : {}),
    ...(a.timeoutSeconds !== undefined ? { timeoutSeconds: a.timeoutSeconds } : {}),
    ...(a.allow ? { network: { allow: a.allow } } : {}),
    ...(a.env ? { env: a.env } : {}),
  };
  try {
    const task = await client.submitTask(body);
    const out = { stdout: new Kept(), stderr: new Kept() };
    let frames = 0;
    let lastReport = 0;
    let exit = null;
    await progress?.(0, `task ${task.id} queued`);
    for await (const f of client.events(task.id)) {
      frames++;
      if (f.type === 'stdout' || f.type === 'stderr') out[f.type].add(f.data);
      if (f.type === 'exit') exit = f;
      const now = Date.now();
      if (progress && f.type !== 'exit' && (f.type === 'status' || now - lastReport >= 250)) {
        lastReport = now;
        const msg = f.type === 'status' ? `task ${task.id} ${f.status}` : `${out.stdout.bytes + out.stderr.bytes} bytes of output`;
        await progress(frames, msg).catch(() => undefined);
      }
    }
    if (!exit) throw new ConnectionError('the task stream ended without an exit frame');
    const result = {
      taskId: task.id,
      workspaceId: task.workspaceId,
      status: exit.status,
      exitCode: exit.exitCode,
      reason: exit.reason,
      durationMs: exit.durationMs,
      stdout: out.stdout.text,
      stderr: out.stderr.text,
      stdoutTruncated: out.stdout.truncated,
      stderrTruncated: out.stderr.truncated,
    };
    const text = [
      `status: ${exit.status}${exit.reason ? ` (${exit.reason})` : ''}, exit code: ${exit.exitCode ?? 'none'}, task ${task.id}, workspace ${task.workspaceId}`,
      `--- stdout${result.stdoutTruncated ? ' (truncated)' : ''} ---`,
      out.stdout.text,
      `--- stderr${result.stderrTruncated ? ' (truncated)' : ''} ---`,
      out.stderr.text,
    ].join('\n');
    return ok(text, result);
  } catch (err) {
    return toolError(err);
  }
}

/** A workspace-relative path that stays inside: no absolute path, no `..`, no empty segment. */
function checkPath(p: string): string {
  const segs = p.split('/');
  if (p.startsWith('/') || segs.some((s) => s === '..' || s === '') || p.includes('\0')) {
    throw new SandboxShiftError('WORKSPACE_PATH_INVALID', 422, `not a relative path inside the workspace: ${JSON.stringify(p)}`, { path: p });
  }
  return p;
}

/**
 * write_files: without a workspace id, a new workspace holding the files; with one, a normal task
 * on that workspace writes them (each content passed in an environment variable, so the task's
 * limits and the environment's bounds apply).
 */
export async function writeFilesTool(client: SandboxShiftClient, a: { workspaceId?: string; files: Record<string, string>; image?: string }): Promise<CallToolResult> {
  try {
    if (!a.workspaceId) {
      const w = await client.createWorkspace(a.files);
      return ok(`created workspace ${w.id} with ${w.files} file(s)`, { workspaceId: w.id, written: Object.keys(a.files) });
    }
    const paths = Object.keys(a.files).map(checkPath);
    if (paths.length === 0) return ok('nothing to write', { workspaceId: a.workspaceId, written: [] });
    const env: Record<string, string> = {};
    const steps = paths.map((p, i) => {
      env[`SBX_FILE_${i}`] = a.files[p]!;
      const dir = p.includes('/') ? `mkdir -p -- ${shellQuote(p.slice(0, p.lastIndexOf('/')))} && ` : '';
      return `${dir}printf '%s' "$SBX_FILE_${i}" > ${shellQuote(p)}`;
    });
    const task = await client.submitTask({ command: steps.join(' && '), workspace: { id: a.workspaceId }, env, ...(a.image ? { image: a.image } : {}) });
    let exit = null;
    let stderr = '';
    for await (const f of client.events(task.id)) {
      if (f.type === 'stderr') stderr += f.data;
      if (f.type === 'exit') exit = f;
    }
    if (!exit || exit.status !== 'succeeded') {
      return {
        isError: true,
        content: [{ type: 'text', text: `WRITE_FAILED: task ${task.id} ${exit?.status ?? 'lost'} (exit ${exit?.exitCode ?? 'none'}): ${stderr.slice(0, 2000)}` }],
        structuredContent: { error: { code: 'WRITE_FAILED', message: stderr.slice(0, 2000), taskId: task.id, status: exit?.status ?? null } },
      };
    }
    return ok(`wrote ${paths.length} file(s) to workspace ${a.workspaceId}`, { workspaceId: a.workspaceId, written: paths, taskId: task.id });
  } catch (err) {
    return toolError(err);
  }
}

export async function readFileTool(client: SandboxShiftClient, a: { workspaceId: string; path: string }): Promise<CallToolResult> {
  try {
    const data = await client.readFile(a.workspaceId, a.path);
    const text = new TextDecoder('utf-8', { fatal: false }).decode(data);
    return ok(text, { workspaceId: a.workspaceId, path: a.path, bytes: data.length, content: text });
  } catch (err) {
    return toolError(err);
  }
}

export async function createWorkspaceTool(client: SandboxShiftClient, a: { files?: Record<string, string> }): Promise<CallToolResult> {
  try {
    const w = await client.createWorkspace(a.files ?? {});
    return ok(`created workspace ${w.id} (${w.files} file(s), expires ${w.expiresAt})`, { workspaceId: w.id, workspace: w });
  } catch (err) {
    return toolError(err);
  }
}

export async function deleteWorkspaceTool(client: SandboxShiftClient, a: { workspaceId: string }): Promise<CallToolResult> {
  try {
    await client.deleteWorkspace(a.workspaceId);
    return ok(`deleted workspace ${a.workspaceId}`, { workspaceId: a.workspaceId, deleted: true });
  } catch (err) {
    return toolError(err);
  }
}
