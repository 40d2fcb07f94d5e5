import type { KeyDirectory, KnownKey } from './keys.js';

/**
 * The keys a server accepts: those of the configuration (`auth.keys`) and those of its database
 * (`sandboxshift keys create`), asked in that order on every request.
 */
export class CombinedKeys implements KeyDirectory {
  private readonly parts: readonly KeyDirectory[];

  constructor(...parts: KeyDirectory[]) {
    this.parts = parts;
  }

  hasKeys(): boolean {
    return this.parts.some((p) => p.hasKeys());
  }

  lookup(sha256: string): KnownKey | null {
    for (const p of this.parts) {
      const k = p.lookup(sha256);
      if (k) return k;
    }
    return null;
  }
}
