// Label and field selectors in the string form the API takes (`a=b,c!=d,e in (f,g),!h`).
import { ApiError } from './status.js';

type Requirement = (labels: Record<string, string>) => boolean;

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

function parseRequirement(term: string): Requirement {
  let m = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
  if (m) {
    const key = m[1]!;
    const values = new Set(m[3]!.split(',').map((v) => v.trim()));
    return m[2] === 'in'
      ? (l) => key in l && values.has(l[key]!)
      : (l) => !(key in l) || !values.has(l[key]!);
  }
  m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(term);
  if (m) {
    const key = m[1]!;
    const value = m[3]!;
    return m[2] === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
  }
  m = /^!\s*([^\s!=(),]+)$/.exec(term);
  if (m) {
    const key = m[1]!;
    return (l) => !(key in l);
  }
  m = /^([^\s!=(),]+)$/.exec(term);
  if (m) {
    const key = m[1]!;
    return (l) => key in l;
  }
  throw new ApiError(400, `unable to parse requirement: ${JSON.stringify(term)}`, 'BadRequest');
}

/** Parses a labelSelector; an empty or missing one selects everything. */
export function parseLabelSelector(text: string | undefined): (obj: any) => boolean {
  if (!text) return () => true;
  const reqs = splitTopLevel(text).map(parseRequirement);
  return (obj) => {
    const labels = (obj?.metadata?.labels ?? {}) as Record<string, string>;
    return reqs.every((r) => r(labels));
  };
}

const FIELDS: Record<string, (obj: any) => string | undefined> = {
  'metadata.name': (o) => o?.metadata?.name,
  'metadata.namespace': (o) => o?.metadata?.namespace,
  'status.phase': (o) => o?.status?.phase,
  'spec.nodeName': (o) => o?.spec?.nodeName,
  type: (o) => o?.type,
};

/** Parses a fieldSelector over the few fields the fake indexes (as the real server, an unknown field is a 400). */
export function parseFieldSelector(text: string | undefined): (obj: any) => boolean {
  if (!text) return () => true;
  const reqs = splitTopLevel(text).map((term) => {
    const m = /^([^\s!=]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw new ApiError(400, `invalid selector: '${text}'; can't understand '${term}'`, 'BadRequest');
    const getter = FIELDS[m[1]!];
    if (!getter) throw new ApiError(400, `field label not supported: ${m[1]}`, 'BadRequest');
    const value = m[3]!;
    const negate = m[2] === '!=';
    return (o: any) => ((getter(o) ?? '') === value) !== negate;
  });
  return (obj) => reqs.every((r) => r(obj));
}

/** Matches a structured LabelSelector (matchLabels + matchExpressions); `{}` selects everything. */
export function matchesLabelSelector(selector: any, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of selector?.matchExpressions ?? []) {
    const has = e.key in l;
    const values: string[] = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(l[e.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(l[e.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}
