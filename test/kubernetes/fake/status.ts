// Status bodies as kube-apiserver writes them for failures, and the error type the handlers throw.
import type { ServerResponse } from 'node:http';

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Gone',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: Array<{ reason?: string; message?: string; field?: string }>;
}

export function statusBody(code: number, message: string, reason?: string, details?: StatusDetails): Record<string, unknown> {
  const body: Record<string, unknown> = {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: reason ?? REASONS[code] ?? 'Unknown',
    code,
  };
  if (details) body.details = details;
  return body;
}

export function successStatus(details: StatusDetails): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details };
}

/** A failure the HTTP layer turns into a Status response with this code. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason?: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
  }
  body(): Record<string, unknown> {
    return statusBody(this.code, this.message, this.reason, this.details);
  }
}

export function notFound(resource: string, group: string, name: string): ApiError {
  const qualified = group ? `${resource}.${group}` : resource;
  return new ApiError(404, `${qualified} "${name}" not found`, 'NotFound', { name, group, kind: resource });
}

export function alreadyExists(resource: string, group: string, name: string): ApiError {
  const qualified = group ? `${resource}.${group}` : resource;
  return new ApiError(409, `${qualified} "${name}" already exists`, 'AlreadyExists', { name, group, kind: resource });
}

export function invalid(kind: string, group: string, name: string, field: string, detail: string): ApiError {
  const qualified = group ? `${kind}.${group}` : kind;
  return new ApiError(422, `${qualified} "${name}" is invalid: ${field}: ${detail}`, 'Invalid', {
    name,
    group,
    kind,
    causes: [{ reason: 'FieldValueInvalid', message: detail, field }],
  });
}

export function sendJson(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
