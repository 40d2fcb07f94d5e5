// PATCH bodies: JSON merge patch (RFC 7386), strategic merge (applied as a merge patch: the
// fake's objects have no lists a strategic patch would merge by key that tests rely on), and
// JSON patch (RFC 6902).
import { ApiError } from './status.js';

export function mergePatch(target: any, patch: any): any {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const out = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new ApiError(422, `invalid JSON pointer ${JSON.stringify(path)}`, 'Invalid');
  return path.slice(1).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: any, parts: string[]): { parent: any; key: string } {
  let node = doc;
  for (const part of parts.slice(0, -1)) {
    node = Array.isArray(node) ? node[Number(part)] : node?.[part];
    if (node === undefined || node === null || typeof node !== 'object') {
      throw new ApiError(422, `the server rejected our request due to an error in our request: missing path ${parts.join('/')}`, 'Invalid');
    }
  }
  return { parent: node, key: parts[parts.length - 1]! };
}

export function jsonPatch(doc: any, ops: any): any {
  if (!Array.isArray(ops)) throw new ApiError(400, 'a JSON patch must be an array of operations', 'BadRequest');
  let out = structuredClone(doc);
  for (const op of ops) {
    const parts = pointer(String(op.path ?? ''));
    if (parts.length === 0) {
      if (op.op === 'replace' || op.op === 'add') out = structuredClone(op.value);
      continue;
    }
    const { parent, key } = parentOf(out, parts);
    const isArray = Array.isArray(parent);
    const index = key === '-' ? parent.length : Number(key);
    switch (op.op) {
      case 'add':
        if (isArray) parent.splice(index, 0, structuredClone(op.value));
        else parent[key] = structuredClone(op.value);
        break;
      case 'replace':
        if (isArray ? index >= parent.length : !(key in parent)) {
          throw new ApiError(422, `replace operation does not apply: doc is missing key: ${op.path}`, 'Invalid');
        }
        if (isArray) parent[index] = structuredClone(op.value);
        else parent[key] = structuredClone(op.value);
        break;
      case 'remove':
        if (isArray ? index >= parent.length : !(key in parent)) {
          throw new ApiError(422, `remove operation does not apply: doc is missing path: ${op.path}`, 'Invalid');
        }
        if (isArray) parent.splice(index, 1);
        else delete parent[key];
        break;
      case 'test':
        if (JSON.stringify(isArray ? parent[index] : parent[key]) !== JSON.stringify(op.value)) {
          throw new ApiError(422, `testing value ${op.path} failed`, 'Invalid');
        }
        break;
      default:
        throw new ApiError(422, `unsupported JSON patch operation ${JSON.stringify(op.op)}`, 'Invalid');
    }
  }
  return out;
}

export function applyPatch(contentType: string, doc: any, body: any): any {
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json-patch+json') return jsonPatch(doc, body);
  if (type === 'application/merge-patch+json' || type === 'application/strategic-merge-patch+json') {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new ApiError(400, 'a merge patch must be a JSON object', 'BadRequest');
    }
    return mergePatch(doc, body);
  }
  throw new ApiError(415, `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`, 'UnsupportedMediaType');
}
