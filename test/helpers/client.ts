import WebSocket from 'ws';
import { beforeSubmit } from './paths.js';

export interface Frame {
  type: string;
  seq: number;
  [k: string]: unknown;
}

/** One request; a string or Buffer body is sent as is, anything else as JSON (a `content-type` header overrides). */
export async function api(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, json, text };
}

export async function submit(base: string, body: Record<string, unknown>) {
  await beforeSubmit(base, body);
  const r = await api(base, 'POST', '/v1/tasks', body);
  if (r.status !== 202) throw new Error(`submit failed: ${r.status} ${r.text}`);
  return r.json as { id: string; links: { stream: string; logs: string } };
}

/** Polls GET /v1/tasks/:id until the task is terminal. */
export async function waitDone(base: string, id: string, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await api(base, 'GET', `/v1/tasks/${id}`);
    if (!['queued', 'running'].includes(r.json.status)) return r.json;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`task ${id} did not finish within ${timeoutMs} ms`);
}

export interface StreamResult {
  frames: Frame[];
  closeCode: number;
}

/** Opens the task's WebSocket stream and collects frames until the server closes it. */
export function collectStream(wsBase: string, id: string, opts: { after?: number; onOpen?: (ws: WebSocket) => void; onFrame?: (f: Frame, ws: WebSocket) => void } = {}): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const q = opts.after !== undefined ? `?after=${opts.after}` : '';
    const ws = new WebSocket(`${wsBase}/v1/tasks/${id}/stream${q}`);
    const frames: Frame[] = [];
    ws.on('open', () => opts.onOpen?.(ws));
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as Frame;
      frames.push(f);
      opts.onFrame?.(f, ws);
    });
    ws.on('close', (code) => resolve({ frames, closeCode: code }));
    ws.on('error', reject);
  });
}

/** Runs a command as a task to its end; returns the record and the exact stdout/stderr text. */
export async function runTask(base: string, command: string, extra: Record<string, unknown> = {}) {
  const { id } = await submit(base, { command, ...extra });
  const task = await waitDone(base, id);
  const stdout = (await api(base, 'GET', `/v1/tasks/${id}/logs?stream=stdout`)).text;
  const stderr = (await api(base, 'GET', `/v1/tasks/${id}/logs?stream=stderr`)).text;
  return { id, task, stdout, stderr };
}
