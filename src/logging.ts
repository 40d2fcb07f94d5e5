import type { LoggerOptions } from 'pino';

/**
 * What the server's log never shows: request bodies (a task's secretEnv above all) and any
 * secretEnv an object being logged carries, whatever its depth up to three levels.
 */
export const LOG_REDACT: NonNullable<LoggerOptions['redact']> = {
  paths: ['req.body', 'request.body', 'body', 'secretEnv', '*.secretEnv', '*.*.secretEnv', '*.*.*.secretEnv'],
  censor: '[redacted]',
};

/** The server's logger options (the tests build theirs from the same). */
export function logOptions(extra: LoggerOptions = {}): LoggerOptions {
  return { name: 'sandboxshift', redact: LOG_REDACT, ...extra };
}
