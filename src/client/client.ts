import { createReadStream } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConnectionError, errorFromBody, SandboxShiftError } from './errors.js';
import { packDirectory, type PackedDirectory } from './pack.js';
import { TaskStream, type TaskStreamOptions } from './stream.js';
import type { SubmittedTask, Task, TaskPage, TaskRequest, TaskStatus, Workspace, WorkspacePage } from './types.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export interface ClientOptions {
  /** Server base URL (default http://127.0.0.1:8080). */
  url?: string;
  /**
   * API key (`ssk_…`): sent as `Authorization: Bearer <key>` and, on WebSocket streams, offered
   * as the subprotocols `sandboxshift.v1` and `bearer.<key>`.
   */
  apiKey?: string;
  /** The same as `apiKey` (used when `apiKey` is not given). */
  key?: string;
}

export type ArchiveType = 'application/gzip' | 'application/x-tar' | 'application/zip' | 'application/octet-stream';

export interface UploadOptions {
  /** Called as the body is sent: bytes so far and the total. */
  onProgress?: (sent: number, total: number) => void;
}

/** What a directory upload left out (see packDirectory). */
export interface DirectoryUpload {
  workspace: Workspace;
  packed: Pick<PackedDirectory, 'bytes' | 'files' | 'links' | 'skipped'>;
}

/** A typed client of the SandboxShift HTTP API. */
export class SandboxShiftClient {
  readonly url: string;
  private readonly key: string | undefined;

  constructor(opts: ClientOptions = {}) {
    this.url = (opts.url ?? DEFAULT_URL).replace(/\/+$/, '');
    this.key = opts.apiKey || opts.key || undefined;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.key ? { authorization: `Bearer ${this.key}` } : {}), ...extra };
  }

  private async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { ...init, headers: this.headers((init.headers as Record<string, string>) ?? {}) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ConnectionError(`cannot reach ${this.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, err);
    }
    if (!res.ok) throw errorFromBody(res.status, await res.text().catch(() => ''));
    return res;
  }

  private async json<T>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
    const { json, ...rest } = init;
    const res = await this.fetch(path, json === undefined ? rest : { ...rest, body: JSON.stringify(json), headers: { 'content-type': 'application/json' } });
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  // ---- tasks ---------------------------------------------------------------------------------

  submitTask(body: TaskRequest): Promise<SubmittedTask> {
    return this.json('/v1/tasks', { method: 'POST', json: body });
  }

  getTask(id: string): Promise<Task> {
    return this.json(`/v1/tasks/${encodeURIComponent(id)}`);
  }

  listTasks(q: { status?: TaskStatus; limit?: number; cursor?: string } = {}): Promise<TaskPage> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return this.json(`/v1/tasks${qs ? `?${qs}` : ''}`);
  }

  cancelTask(id: string): Promise<Task> {
    return this.json(`/v1/tasks/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  /** The task's frames, live, reconnecting on its own: `for await (const f of client.events(id))`. */
  events(id: string, opts: Omit<TaskStreamOptions, 'headers' | 'protocols'> = {}): TaskStream {
    const ws = this.url.replace(/^http/, 'ws');
    return new TaskStream(`${ws}/v1/tasks/${encodeURIComponent(id)}/stream`, {
      ...opts,
      headers: this.headers(),
      protocols: this.key ? ['sandboxshift.v1', `bearer.${this.key}`] : [],
    });
  }

  /** Recorded (or, with follow, live) frames as NDJSON over HTTP, one parsed frame at a time. */
  async *logs(id: string, opts: { follow?: boolean; after?: number; signal?: AbortSignal } = {}): AsyncGenerator<import('./types.js').StreamFrame> {
    const res = await this.fetch(`/v1/tasks/${encodeURIComponent(id)}/logs?follow=${opts.follow ? 'true' : 'false'}&after=${opts.after ?? 0}`, {
      headers: { accept: 'application/x-ndjson' },
      signal: opts.signal,
    });
    let rest = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      rest += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = rest.indexOf('\n')) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line.trim()) yield JSON.parse(line);
      }
    }
  }

  // ---- workspaces ----------------------------------------------------------------------------

  /** A workspace from inline files (relative path → UTF-8 content). */
  createWorkspace(files: Record<string, string> = {}): Promise<Workspace> {
    return this.json('/v1/workspaces', { method: 'POST', json: { files } });
  }

  /** A workspace from a tar, tar.gz or zip archive: a buffer, or a file path with its size. */
  createWorkspaceFromArchive(archive: Buffer | { path: string; size: number }, type: ArchiveType = 'application/octet-stream', opts: UploadOptions = {}): Promise<Workspace> {
    const total = Buffer.isBuffer(archive) ? archive.length : archive.size;
    const source = Buffer.isBuffer(archive) ? Readable.from([archive]) : createReadStream(archive.path);
    return this.upload(source, total, type, opts);
  }

  /** A workspace from a local directory, packed as packDirectory does (.gitignore honoured, links never followed). */
  async createWorkspaceFromDirectory(dir: string, opts: UploadOptions & { hash?: boolean } = {}): Promise<DirectoryUpload> {
    const packed = await packDirectory(dir, { hash: opts.hash });
    try {
      const workspace = await this.createWorkspaceFromArchive({ path: packed.file, size: packed.bytes }, 'application/gzip', opts);
      return { workspace, packed };
    } finally {
      await packed.cleanup();
    }
  }

  listWorkspaces(q: { limit?: number; cursor?: string } = {}): Promise<WorkspacePage> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return this.json(`/v1/workspaces${qs ? `?${qs}` : ''}`);
  }

  getWorkspace(id: string): Promise<Workspace> {
    return this.json(`/v1/workspaces/${encodeURIComponent(id)}`);
  }

  async deleteWorkspace(id: string): Promise<void> {
    await this.json(`/v1/workspaces/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  /** The workspace as a tar.gz stream. */
  async downloadArchive(id: string): Promise<Readable> {
    const res = await this.fetch(`/v1/workspaces/${encodeURIComponent(id)}/archive`);
    return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
  }

  /** One regular file of the workspace (links are never followed by the server). */
  async readFile(id: string, path: string): Promise<Buffer> {
    const p = path.split('/').filter(Boolean).map(encodeURIComponent).join('/');
    const res = await this.fetch(`/v1/workspaces/${encodeURIComponent(id)}/files/${p}`);
    return Buffer.from(await res.arrayBuffer());
  }

  /** POST /v1/workspaces with a streamed body of known length (node:http: progress, and an early refusal is read). */
  private upload(source: Readable, total: number, type: string, opts: UploadOptions): Promise<Workspace> {
    const url = new URL(`${this.url}/v1/workspaces`);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Workspace>((resolve, reject) => {
      const req = request(url, {
        method: 'POST',
        headers: this.headers({ 'content-type': type, 'content-length': String(total) }),
      });
      let answered = false;
      req.on('response', (res: IncomingMessage) => {
        answered = true;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          if (res.statusCode === 201) resolve(JSON.parse(text) as Workspace);
          else reject(errorFromBody(res.statusCode ?? 0, text));
          source.destroy();
        });
        res.on('error', (err) => reject(new ConnectionError(`upload answer lost: ${err.message}`, err)));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!answered) reject(new ConnectionError(`cannot reach ${this.url}: ${err.code ?? err.message}`, err));
      });
      let sent = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          sent += chunk.length;
          opts.onProgress?.(sent, total);
          cb(null, chunk);
        },
      });
      pipeline(source, counter, req).catch(() => {
        // A refused upload closes the connection; the answer (or the error) settles the promise.
      });
    });
  }
}

export { SandboxShiftError };
