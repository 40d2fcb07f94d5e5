/** The SandboxShift TypeScript client (`sandboxshift/client`). */
export { SandboxShiftClient, DEFAULT_URL, type ClientOptions, type ArchiveType, type UploadOptions, type DirectoryUpload } from './client.js';
export { TaskStream, type TaskStreamOptions } from './stream.js';
export { SandboxShiftError, ConnectionError } from './errors.js';
export { packDirectory, DEFAULT_EXCLUDES, type PackedDirectory } from './pack.js';
export type { ErrorCode } from '../errors.js';
export type * from './types.js';
