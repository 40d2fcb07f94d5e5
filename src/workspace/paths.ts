import { AppError } from '../errors.js';

export interface PathLimits {
  maxDepth: number;
  maxPathBytes: number;
}

/**
 * Checks one relative workspace path and returns its segments. Refuses absolute paths, `..`,
 * `.`/empty segments, NUL and over-long or over-deep names, each with its own code.
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
  if (segments.length > limits.maxDepth) {
    throw new AppError('WORKSPACE_PATH_TOO_DEEP', { path: path.slice(0, 256), depth: segments.length, limit: limits.maxDepth });
  }
  return segments;
}
