import { z } from 'zod';
import { TENANT_PATTERN } from '../auth/scope.js';

const envName = z.string().min(1).max(256).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a shell variable name');

export const workspaceRef = z.union([
  z.strictObject({
    files: z
      .record(z.string().max(4096), z.string())
      .describe('Inline files: relative path → UTF-8 content; they become a new workspace'),
  }),
  z.strictObject({
    id: z.string().min(1).max(128).describe('An existing workspace id'),
    readonly: z
      .boolean()
      .optional()
      .describe("Mount the workspace read-only (absent: the workspace sandboxshift.yaml's workspace.readonly, else false)"),
  }),
]);

export const createTaskBody = z
  .strictObject({
    command: z
      .string()
      .min(1)
      .max(131072)
      .refine((v) => !v.includes('\0'), 'must not contain NUL (it cannot be passed as an argument)')
      .describe('Shell command run as `/bin/sh -c <command>`'),
    workspace: workspaceRef.optional().describe('Absent: an empty workspace'),
    image: z.string().min(1).max(255).default('auto').describe('"auto" (detect from markers) or an image from the configured table'),
    env: z
      .record(envName, z.string().max(131072).refine((v) => !v.includes('\0'), 'must not contain NUL'))
      .refine((e) => !('HOME' in e), { message: 'HOME is set by the server (/workspace/.home)', path: ['HOME'] })
      .default({})
      .describe('Environment variables for the command'),
    secretEnv: z
      .record(envName, z.string().max(131072).refine((v) => !v.includes('\0'), 'must not contain NUL'))
      .refine((e) => !('HOME' in e), { message: 'HOME is set by the server (/workspace/.home)', path: ['HOME'] })
      .default({})
      .describe("Environment variables whose values are secret: every occurrence of a value in the task's output reads `***`, and values are never served, logged or stored unencrypted; names are served as `secretEnvKeys`"),
    timeoutSeconds: z.int().min(1).optional().describe('Wall-clock limit in seconds; above the server maximum: LIMIT_ABOVE_MAXIMUM'),
    resources: z
      .strictObject({
        cpus: z.number().min(0.1).optional(),
        memoryMb: z.int().min(16).optional(),
        pids: z.int().min(16).optional(),
      })
      .default({})
      .describe('Per-task limits; a value above the server maximum is LIMIT_ABOVE_MAXIMUM'),
    network: z
      .strictObject({
        allow: z
          .array(z.string().min(1).max(253))
          .max(256)
          .describe('Host names and `*.suffix` wildcards (subdomains only, not the apex) the task may reach through the egress proxy, ports 80/443 unless the server adds others; empty: no network at all'),
      })
      .optional()
      .describe("Egress allowlist. Absent: the workspace file's list, else the server default. Every entry must fall inside the server's ceiling; over-broad patterns (`*`, `*.com`, `*.co.uk`) are refused unless the server allows unrestricted egress"),
    stdin: z.boolean().default(false).describe('Accept stdin frames over the WebSocket stream'),
    isolation: z
      .string()
      .min(1)
      .max(64)
      .optional()
      .describe("runc or gvisor (absent: the server's engine.isolation). One the server's engine.allowedIsolation does not list: 422 ISOLATION_NOT_ALLOWED; allowed but unusable here: 503 ISOLATION_UNAVAILABLE"),
  })
  .superRefine((b, ctx) => {
    for (const name of Object.keys(b.secretEnv)) {
      if (name in b.env) ctx.addIssue({ code: 'custom', path: ['secretEnv', name], message: 'also set in env: a name is either plain or secret' });
    }
  })
  .describe('A task to run');

export type CreateTaskBody = z.infer<typeof createTaskBody>;

export const createWorkspaceBody = z
  .union([
    z.strictObject({
      files: z.record(z.string().max(4096), z.string()).describe('Relative path → UTF-8 content'),
    }),
    z.strictObject({
      git: z
        .strictObject({
          url: z.string().min(1).max(2048).describe('https URL of the repository (plain http only for configured test hosts)'),
          ref: z.string().min(1).max(255).describe('Branch, tag or commit to fetch at depth 1'),
        })
        .describe('A git repository, cloned shallow by the server from an allowed host'),
    }),
    z.strictObject({
      hostPath: z.string().min(1).max(4096).describe('"<root name>/<directory>" under a host root the operator configured'),
    }),
  ])
  .describe('A workspace from inline files, a git repository or a host directory (archives are sent as the raw body instead)');

/** `?tenant=`: an admin's filter (a user may name only its own tenant). */
const tenantQuery = z.string().regex(TENANT_PATTERN, 'a tenant name').optional();

export const listTasksQuery = z.strictObject({
  status: z.enum(['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'error']).optional(),
  limit: z.coerce.number().int().min(1).default(20),
  cursor: z.string().min(1).max(64).optional(),
  tenant: tenantQuery,
});

export const listWorkspacesQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).default(20),
  cursor: z.string().min(1).max(128).optional(),
  tenant: tenantQuery,
});

export const afterQuery = z.strictObject({
  after: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
});

export const logsQuery = z.strictObject({
  stream: z.enum(['stdout', 'stderr']).optional(),
  follow: z.enum(['true', 'false']).default('false'),
  after: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
});

export const stdinFrame = z.union([
  z.strictObject({ type: z.literal('stdin'), data: z.string().max(1024 * 1024) }),
  z.strictObject({ type: z.literal('stdin'), eof: z.literal(true) }),
  z.strictObject({ type: z.literal('cancel') }),
]);
