import { ApiError } from './api.js';
import { byId } from './dom.js';

/** Shows a server error as its code and message (or a local failure as CLIENT_ERROR). */
export function showError(err: unknown): void {
  const code = err instanceof ApiError ? err.code : 'CLIENT_ERROR';
  const message = err instanceof Error ? err.message : String(err);
  showErrorText(code, message);
}

export function showErrorText(code: string, message: string): void {
  byId('error-code').textContent = code;
  byId('error-message').textContent = message;
  byId('error').hidden = false;
}

export function clearError(): void {
  byId('error').hidden = true;
}
