import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { AppError } from '../errors.js';

/** The per-workspace project file, read from the workspace root. */
export const PROJECT_FILE = 'sandboxshift.yaml';

/**
 * The per-workspace `sandboxshift.yaml` (what users of the original tool keep in their project
 * root). It supplies task defaults; the request overrides them; server maxima bound both
 * (tasks/limits.ts). The file is task-writable, so it is untrusted input like a request body:
 * parsed with a bounded alias count, checked by a strict schema, every problem named.
 */
export interface ProjectDefaults {
  timeoutSeconds?: number;
  setup?: string;
  /** network.allow: the egress allowlist this workspace asks for (the request's list replaces it). */
  allow?: string[];
  cpus?: number;
  memoryMb?: number;
  env?: Record<string, string>;
  readonly?: boolean;
}

/** "4GB" → 4096, "512MB" → 512, 512 → 512 (MB). Also G/M and GiB/MiB; the result must be whole MB. */
export function parseMemoryMb(value: string | number): number | null {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(GB|G|GiB|MB|M|MiB)?\s*$/i.exec(value);
  if (!m) return null;
  const n = Number(m[1]) * (/^g/i.test(m[2] ?? 'MB') ? 1024 : 1);
  return Number.isInteger(n) && n > 0 ? n : null;
}

const envName = z.string().min(1).max(256).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a shell variable name');

const fileSchema = z.strictObject({
  sandbox: z
    .strictObject({
      timeout: z.int().min(1).optional().describe('Seconds'),
      setup: z
        .string()
        .min(1)
        .refine((v) => !v.includes('\0'), 'must not contain NUL')
        .optional()
        .describe('Runs before the command in the same shell: `setup && command`'),
    })
    .optional(),
  network: z.strictObject({ allow: z.array(z.string().min(1).max(253)).max(256).optional() }).optional(),
  resources: z
    .strictObject({
      cpu: z.number().min(0.1).optional(),
      memory: z
        .union([z.number(), z.string()])
        .refine((v) => parseMemoryMb(v) !== null, 'must be MB as a whole number, or a size like "512MB" or "4GB"')
        .optional(),
    })
    .optional(),
  env: z
    .record(envName, z.union([z.string(), z.number(), z.boolean()]).transform(String))
    .refine((e) => !('HOME' in e), { message: 'HOME is set by the server (/workspace/.home)' })
    .refine((e) => Object.values(e).every((v) => !v.includes('\0')), 'values must not contain NUL')
    .optional(),
  workspace: z.strictObject({ readonly: z.boolean().optional() }).optional(),
});

const invalid = (problem: string, key?: string) =>
  new AppError('PROJECT_FILE_INVALID', { file: PROJECT_FILE, problem, ...(key ? { key } : {}) }, `${PROJECT_FILE} is not valid: ${key ? `${key}: ` : ''}${problem}`);

/** Parses the file's text; throws PROJECT_FILE_INVALID naming the problem (and the key). */
export function parseProjectFile(text: string): ProjectDefaults {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) throw invalid(`not valid YAML: ${doc.errors[0]!.message}`);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 50 });
  } catch (err) {
    throw invalid(`not valid YAML: ${(err as Error).message}`);
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('the top level must be a mapping');
  const r = fileSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    // A bad env name is reported by zod as "Invalid key in record": say what is wrong with it.
    const inner = issue.code === 'invalid_key' ? issue.issues[0] : undefined;
    throw invalid(inner ? `key ${JSON.stringify(issue.path.at(-1))}: ${inner.message}` : issue.message, issue.path.join('.') || undefined);
  }
  const f = r.data;
  const out: ProjectDefaults = {};
  if (f.sandbox?.timeout !== undefined) out.timeoutSeconds = f.sandbox.timeout;
  if (f.sandbox?.setup !== undefined) out.setup = f.sandbox.setup;
  if (f.network?.allow !== undefined) out.allow = f.network.allow;
  if (f.resources?.cpu !== undefined) out.cpus = f.resources.cpu;
  if (f.resources?.memory !== undefined) out.memoryMb = parseMemoryMb(f.resources.memory)!;
  if (f.env !== undefined) out.env = f.env;
  if (f.workspace?.readonly !== undefined) out.readonly = f.workspace.readonly;
  return out;
}

/** Names of the file keys a ProjectDefaults carries (recorded on the task). */
export const FILE_KEYS: Record<keyof ProjectDefaults, string> = {
  timeoutSeconds: 'sandbox.timeout',
  setup: 'sandbox.setup',
  allow: 'network.allow',
  cpus: 'resources.cpu',
  memoryMb: 'resources.memory',
  env: 'env',
  readonly: 'workspace.readonly',
};

/**
 * The shell text a task runs: `setup && command`, each in a brace group so that a `;` or `||`
 * in either keeps its meaning, and in the same shell (a `cd` or `export` in setup carries over).
 * The newline before `}` ends a last line that is a comment.
 */
export function composeCommand(setup: string | null, command: string): string {
  return setup ? `{ ${setup}\n} && { ${command}\n}` : command;
}

/**
 * Reads `sandboxshift.yaml` from a mounted workspace root: a regular file of at most `limit`
 * bytes, never through a link. Safe while a task changes the workspace: the root directory is the
 * mount root (a task cannot replace it), so O_NOFOLLOW on the one component is enough, and
 * O_NONBLOCK keeps a FIFO planted under the name from hanging the request. Null when absent.
 */
export async function readProjectFile(workspaceRoot: string, limit: number): Promise<string | null> {
  let fh;
  try {
    fh = await open(join(workspaceRoot, PROJECT_FILE), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new AppError('PROJECT_FILE_INVALID', { file: PROJECT_FILE, problem: 'it is a symbolic link' });
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new AppError('PROJECT_FILE_INVALID', { file: PROJECT_FILE, problem: 'it is not a regular file' });
    if (st.size > limit) throw new AppError('PROJECT_FILE_TOO_LARGE', { file: PROJECT_FILE, bytes: st.size, limit });
    const buf = Buffer.alloc(limit + 1);
    const { bytesRead } = await fh.read(buf, 0, limit + 1, 0);
    if (bytesRead > limit) throw new AppError('PROJECT_FILE_TOO_LARGE', { file: PROJECT_FILE, bytes: bytesRead, limit });
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}
