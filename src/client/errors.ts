import type { ErrorCode } from '../errors.js';

/** An error answered by the server: its stable code, HTTP status, message and details. */
export class SandboxShiftError extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly status: number,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'SandboxShiftError';
  }
}

/** The server could not be reached (refused, reset, DNS, or a stream that kept failing to reconnect). */
export class ConnectionError extends Error {
  readonly code = 'UNREACHABLE';
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'ConnectionError';
  }
}

/** Builds a SandboxShiftError from an error response body (`{"error":{code,message,details}}`). */
export function errorFromBody(status: number, text: string): SandboxShiftError {
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string; details?: Record<string, unknown> } };
    if (body.error?.code) {
      return new SandboxShiftError(body.error.code as ErrorCode, status, body.error.message ?? body.error.code, body.error.details);
    }
  } catch {
    // not JSON: fall through
  }
  return new SandboxShiftError((status >= 500 ? 'INTERNAL' : 'VALIDATION_FAILED') as ErrorCode, status, `HTTP ${status}: ${text.slice(0, 200)}`);
}
