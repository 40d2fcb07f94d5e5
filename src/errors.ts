/**
 * The one table of error codes. Domain code throws `AppError(code, details)`; the HTTP layer maps
 * the code to its status through this table and nothing else. openapi.yaml lists the same codes
 * (a test keeps them in step).
 */
export const ERRORS = {
  VALIDATION_FAILED: { status: 400, message: 'The request does not match the schema' },
  MALFORMED_JSON: { status: 400, message: 'The request body is not valid JSON' },
  NOT_FOUND: { status: 404, message: 'No such route' },
  TASK_NOT_FOUND: { status: 404, message: 'No task with this id' },
  WORKSPACE_NOT_FOUND: { status: 404, message: 'No workspace with this id' },
  // Browser-facing checks made before any other work (src/http/request-guard.ts).
  ORIGIN_NOT_ALLOWED: { status: 403, message: "The request comes from a web page of another origin (Origin or Sec-Fetch-Site) that http.allowedOrigins does not list" },
  HOST_NOT_ALLOWED: { status: 421, message: 'The Host header names neither this server (its listen address, a loopback name) nor an entry of http.allowedHosts' },
  UNAUTHENTICATED: { status: 401, message: 'The request needs Authorization: Bearer <API key> naming a key this server knows' },
  TENANT_FORBIDDEN: { status: 403, message: 'Only an admin key may filter by another tenant' },
  ADMIN_REQUIRED: { status: 403, message: 'Only an API key with the role admin may use this route' },
  TASK_NOT_ACTIVE: { status: 409, message: 'The task has already finished' },
  STDIN_NOT_ENABLED: { status: 409, message: 'The task was not submitted with "stdin": true' },
  BODY_TIMEOUT: { status: 408, message: 'The request body did not arrive within the configured time' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body exceeds the configured maximum' },
  WORKSPACE_TOO_MANY_FILES: { status: 413, message: 'The workspace has more files than allowed' },
  WORKSPACE_TOO_LARGE: { status: 413, message: 'The workspace content exceeds the allowed size' },
  WORKSPACE_PATH_TOO_DEEP: { status: 413, message: 'A workspace path is nested deeper than allowed' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Unsupported Content-Type' },
  WORKSPACE_PATH_INVALID: { status: 422, message: 'A workspace path is not a valid relative path' },
  WORKSPACE_PATH_ESCAPE: { status: 422, message: 'A workspace path leaves the workspace' },
  LIMIT_ABOVE_MAXIMUM: { status: 422, message: 'A requested limit is above the server maximum' },
  IMAGE_UNKNOWN: { status: 422, message: 'The image is not in the configured image table' },
  IMAGE_AMBIGUOUS: { status: 422, message: 'The workspace markers need an explicit image' },
  IMAGE_MISSING: { status: 422, message: 'The image is not present on the engine' },
  // Egress allowlists: src/egress/policy.ts and the relay check in the task manager.
  EGRESS_PATTERN_INVALID: { status: 400, message: 'An egress allowlist entry is not a host name or *.suffix' },
  EGRESS_PATTERN_TOO_BROAD: { status: 422, message: 'An egress allowlist entry covers a whole public suffix' },
  EGRESS_OUTSIDE_CEILING: { status: 422, message: "An egress allowlist entry is outside the server's ceiling" },
  EGRESS_RELAY_MISSING: { status: 422, message: 'The image has no egress relay, so tasks in it cannot have an allowlist' },
  ISOLATION_NOT_ALLOWED: { status: 422, message: "The requested isolation is not in the server's engine.allowedIsolation" },
  QUEUE_FULL: { status: 429, message: 'The task queue is full' },
  // Per-tenant quotas and rate limits (tenants.*, requests.authFailuresPerMinute).
  TENANT_QUEUED_LIMIT: { status: 429, message: "The tenant's queued tasks are at its limit (tenants maxQueued)" },
  RATE_LIMITED: { status: 429, message: 'Too many requests; retry after the time in Retry-After' },
  TENANT_STORAGE_LIMIT: { status: 413, message: "The tenant's workspaces would take more disk than its limit (tenants workspaceBytes)" },
  TOO_MANY_STREAMS: { status: 429, message: 'Too many live streams are open on this server' },
  ENGINE_UNAVAILABLE: { status: 503, message: 'The container engine is unreachable' },
  EGRESS_POLICY_UNENFORCED: { status: 503, message: "Tasks with an egress allowlist cannot run here now: the Kubernetes cluster's NetworkPolicy self-test did not show that task pods are held to the egress proxy" },
  ISOLATION_UNAVAILABLE: { status: 503, message: 'The requested isolation is allowed but cannot start a hardened container on this machine now' },
  SHUTTING_DOWN: { status: 503, message: 'The server is shutting down; submit again once it is back' },
  // Workspace intake (archives, git, host roots, multipart): details name the entry, the rule and the bound.
  ARCHIVE_TOO_LARGE: { status: 413, message: 'The archive exceeds the compressed size limit' },
  ARCHIVE_EXPANDED_TOO_LARGE: { status: 413, message: 'The archive expands past the allowed size' },
  ARCHIVE_TOO_MANY_ENTRIES: { status: 413, message: 'The archive has more entries than allowed' },
  ARCHIVE_COMPRESSION_RATIO: { status: 413, message: 'The archive expands at a compression ratio above the allowed maximum' },
  ARCHIVE_CORRUPT: { status: 400, message: 'The archive is corrupt or truncated' },
  WORKSPACE_LINK_ESCAPE: { status: 422, message: 'A link in the workspace points outside it or through another link' },
  WORKSPACE_SPECIAL_FILE: { status: 422, message: 'The workspace may hold only regular files, directories and links' },
  WORKSPACE_ENTRY_CONFLICT: { status: 422, message: 'An entry would replace or write through an earlier entry' },
  GIT_URL_REFUSED: { status: 422, message: 'The git URL is not allowed (https only, no credentials, ports 80/443 or configured)' },
  GIT_HOST_NOT_ALLOWED: { status: 422, message: 'The git host is not in the configured allowed list' },
  GIT_ADDRESS_FORBIDDEN: { status: 422, message: 'The git host resolves to an address the server may not connect to' },
  GIT_CLONE_FAILED: { status: 422, message: 'The repository or ref could not be fetched' },
  GIT_TIMEOUT: { status: 422, message: 'Fetching the repository took longer than allowed' },
  GIT_TOO_LARGE: { status: 413, message: 'The repository is larger than allowed' },
  HOST_PATH_NOT_FOUND: { status: 404, message: 'No such directory under a configured host root' },
  MULTIPART_INVALID: { status: 400, message: 'The multipart body needs a "task" JSON part followed by one "workspace" archive part, and nothing else' },
  INTERNAL: { status: 500, message: 'Internal server error' },
  // Workspace storage, read-back, lifecycle and sandboxshift.yaml.
  WORKSPACE_BUSY: { status: 409, message: 'A task is queued or running on the workspace, or the server is reading it' },
  WORKSPACE_QUOTA_EXCEEDED: { status: 413, message: 'The workspace content exceeds the workspace disk quota' },
  WORKSPACE_FILE_NOT_FOUND: { status: 404, message: 'No such file in the workspace' },
  WORKSPACE_FILE_IS_LINK: { status: 422, message: 'The path is, or passes through, a symbolic link; links are never followed' },
  WORKSPACE_FILE_NOT_REGULAR: { status: 422, message: 'The path is not a regular file' },
  WORKSPACE_FILE_TOO_LARGE: { status: 422, message: "The file is larger than the workspace's disk quota (a sparse file), so it is not sent" },
  PROJECT_FILE_INVALID: { status: 422, message: 'The workspace sandboxshift.yaml is not valid' },
  PROJECT_FILE_TOO_LARGE: { status: 413, message: 'The workspace sandboxshift.yaml is larger than allowed' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ErrorCode,
    details?: Record<string, unknown>,
    message?: string,
    headers?: Record<string, string>,
  ) {
    super(message ?? ERRORS[code].message);
    this.name = 'AppError';
    this.code = code;
    this.details = details;
    this.headers = headers;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details === undefined ? {} : { details: this.details }),
      },
    };
  }
}
