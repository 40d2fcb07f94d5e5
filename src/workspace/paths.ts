import { AppError } from '../errors.js';

export interface PathLimits {
  maxDepth: number;
  maxPathBytes: number;
}

/** Longest name of one path component in bytes (NAME_MAX of Linux filesystems). */
export const MAX_COMPONENT_BYTES = 255;

/**
 * Checks one relative workspace path and returns its segments. Refuses absolute paths, `..`,
 * `.`/empty segments, NUL, over-long paths or components and over-deep names, each with its own
 * code and rule.
 */
export function checkRelativePath(path: string, limits: PathLimits): string[] {
  if (path.length === 0 || path.includes('\0')) {
    throw new AppError('WORKSPACE_PATH_INVALID', { path, rule: path.length === 0 ? 'empty' : 'nul_byte' });
  }
  const bytes = Buffer.byteLength(path);
  if (bytes > limits.maxPathBytes) {
    throw new AppError('WORKSPACE_PATH_INVALID', { path: path.slice(0, 256), rule: 'too_long', bytes, limit: limits.maxPathBytes });
  }
  if (path.startsWith('/')) throw new AppError('WORKSPACE_PATH_ESCAPE', { path, rule: 'absolute' });
  const segments = path.split('/');
  if (segments.includes('..')) throw new AppError('WORKSPACE_PATH_ESCAPE', { path, rule: 'dot_dot' });
  if (segments.some((s) => s === '' || s === '.')) throw new AppError('WORKSPACE_PATH_INVALID', { path, rule: 'empty_or_dot_segment' });
  const long = segments.find((s) => Buffer.byteLength(s) > MAX_COMPONENT_BYTES);
  if (long !== undefined) {
    throw new AppError('WORKSPACE_PATH_INVALID', {
      path: path.slice(0, 256),
      rule: 'component_too_long',
      component: long.slice(0, 64),
      bytes: Buffer.byteLength(long),
      limit: MAX_COMPONENT_BYTES,
    });
  }
  if (segments.length > limits.maxDepth) {
    throw new AppError('WORKSPACE_PATH_TOO_DEEP', { path: path.slice(0, 256), depth: segments.length, limit: limits.maxDepth });
  }
  return segments;
}
