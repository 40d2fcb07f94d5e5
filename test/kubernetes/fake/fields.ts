// Unknown-field detection for fieldValidation (Strict answers 400, Warn, the default, drops them
// with a Warning header, Ignore drops them silently), against client-node's own model metadata.
// client-node's typed calls already drop unknown fields while serializing, so only untyped bodies
// (patches, plain objects sent as `any`) can reach the server with them.
import * as k8s from '@kubernetes/client-node';
import type { Kind } from './store.js';
import { ApiError } from './status.js';

const MODELS: Record<Kind, string> = { jobs: 'V1Job', pods: 'V1Pod', secrets: 'V1Secret', networkpolicies: 'V1NetworkPolicy' };

interface Attribute {
  baseName: string;
  type: string;
}

function attributes(type: string): Attribute[] | undefined {
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] }>)[type];
  return typeof model?.getAttributeTypeMap === 'function' ? model.getAttributeTypeMap() : undefined;
}

/** Removes unknown fields from `value` (in place) and returns their paths. */
function strip(type: string, value: unknown, path: string, found: string[]): void {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => strip(array[1]!, v, `${path}[${i}]`, found));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) strip(map[1]!, v, `${path}[${k}]`, found);
    return;
  }
  const attrs = attributes(type);
  if (!attrs || typeof value !== 'object' || Array.isArray(value)) return;
  const known = new Map(attrs.map((a) => [a.baseName, a.type]));
  for (const key of Object.keys(value)) {
    const child = path ? `${path}.${key}` : key;
    const t = known.get(key);
    if (t === undefined) {
      found.push(child);
      delete (value as Record<string, unknown>)[key];
    } else strip(t, (value as Record<string, unknown>)[key], child, found);
  }
}

/** Applies fieldValidation to a create or update body; returns the Warning header value, if any. */
export function validateFields(kind: Kind, body: unknown, mode: string | undefined): string | undefined {
  const found: string[] = [];
  strip(MODELS[kind], body, '', found);
  if (found.length === 0) return undefined;
  const messages = found.map((f) => `unknown field "${f}"`);
  if (mode === 'Strict') throw new ApiError(400, `strict decoding error: ${messages.join(', ')}`, 'BadRequest');
  if (mode === 'Ignore') return undefined;
  return messages.map((m) => `299 - ${JSON.stringify(m)}`).join(', ');
}
