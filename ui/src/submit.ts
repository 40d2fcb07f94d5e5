import { ApiError, postJson, request } from './api.js';
import { byId } from './dom.js';

interface Accepted {
  id: string;
}

function archiveType(file: File): string {
  const name = file.name.toLowerCase();
  if (name.endsWith('.zip')) return 'application/zip';
  if (name.endsWith('.tar.gz') || name.endsWith('.tgz')) return 'application/gzip';
  if (name.endsWith('.tar')) return 'application/x-tar';
  return file.type || 'application/octet-stream';
}

function invalid(message: string): ApiError {
  return new ApiError('INVALID_INPUT', message, 0);
}

function selectedKind(): string {
  return (document.querySelector<HTMLInputElement>('input[name="ws-kind"]:checked')?.value ?? 'empty');
}

/** Shows the inputs of the chosen workspace kind only. */
export function syncWorkspaceKind(): void {
  const kind = selectedKind();
  for (const part of document.querySelectorAll<HTMLElement>('.ws-part')) part.hidden = part.dataset.kind !== kind;
}

/**
 * The submit form: a command against a new empty workspace, inline files, an uploaded archive
 * (multipart: the task part, then the archive) or an existing workspace id; timeout, image,
 * egress allowlist and stdin. Resolves the new task's id.
 */
export async function submitTask(): Promise<string> {
  const command = byId<HTMLTextAreaElement>('command').value;
  if (!command.trim()) throw invalid('enter a command');
  const task: Record<string, unknown> = { command };
  const image = byId<HTMLInputElement>('image').value.trim();
  if (image && image !== 'auto') task.image = image;
  const timeout = byId<HTMLInputElement>('timeout').value.trim();
  if (timeout) {
    const n = Number(timeout);
    if (!Number.isInteger(n) || n < 1) throw invalid('the timeout is a whole number of seconds, at least 1');
    task.timeoutSeconds = n;
  }
  const allow = byId<HTMLTextAreaElement>('allow')
    .value.split(/\s+/)
    .map((s) => s.trim())
    .filter(Boolean);
  if (allow.length > 0) task.network = { allow };
  if (byId<HTMLInputElement>('stdin').checked) task.stdin = true;

  const kind = selectedKind();
  if (kind === 'archive') {
    const file = byId<HTMLInputElement>('archive').files?.[0];
    if (!file) throw invalid('choose an archive to upload');
    const form = new FormData();
    form.append('task', JSON.stringify(task));
    form.append('workspace', new Blob([file], { type: archiveType(file) }), file.name);
    const res = await request('POST', '/v1/tasks', form);
    return ((await res.json()) as Accepted).id;
  }
  if (kind === 'files') {
    let files: unknown;
    try {
      files = JSON.parse(byId<HTMLTextAreaElement>('files').value);
    } catch (err) {
      throw invalid(`the files are not valid JSON: ${(err as Error).message}`);
    }
    task.workspace = { files };
  } else if (kind === 'existing') {
    const id = byId<HTMLInputElement>('workspace-id').value.trim();
    if (!id) throw invalid('enter a workspace id');
    task.workspace = { id, ...(byId<HTMLInputElement>('readonly').checked ? { readonly: true } : {}) };
  }
  return (await postJson<Accepted>('/v1/tasks', task)).id;
}
