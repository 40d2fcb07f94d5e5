import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { ERRORS, type ErrorCode } from '../../src/errors.js';
import { openapiDocument, openapiYaml } from '../../src/http/openapi.js';

// ajv and ajv-formats are CommonJS modules that also set `exports.default`.
const Ajv2020 = Ajv2020Module.default;
const addFormats = addFormatsModule.default;

const yamlFile = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));
const REGEN = 'run `npm run build && npm run openapi` and commit openapi.yaml';

type Json = Record<string, any>;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Every responses map of the document, with where it is. */
function responseMaps(doc: Json): { where: string; responses: Record<string, Json> }[] {
  const out: { where: string; responses: Record<string, Json> }[] = [];
  for (const [path, item] of Object.entries<Json>(doc.paths)) {
    for (const [method, op] of Object.entries<Json>(item)) {
      if (METHODS.includes(method)) out.push({ where: `${method.toUpperCase()} ${path}`, responses: op.responses });
    }
  }
  out.push({ where: 'x-unmatched-route', responses: doc['x-unmatched-route'].responses });
  return out;
}

t.test('openapi.yaml is exactly what openapiDocument() generates', async (t) => {
  const onDisk = readFileSync(yamlFile, 'utf8');
  const doc = openapiDocument();
  t.same(parseYaml(onDisk), doc, `openapi.yaml is out of date: ${REGEN}`);
  t.equal(onDisk, openapiYaml(doc), `openapi.yaml is not formatted as generated: ${REGEN}`);
});

t.test('the document is deterministic and plain JSON', async (t) => {
  const a = openapiDocument();
  t.same(openapiDocument(), a, 'two calls build the same document');
  t.equal(openapiYaml(openapiDocument()), openapiYaml(a), 'and the same YAML text');
  t.same(JSON.parse(JSON.stringify(a)), a, 'nothing is lost through JSON (no undefined, no functions)');
  t.equal(a.openapi, '3.1.0');
  t.equal(a.jsonSchemaDialect, 'https://json-schema.org/draft/2020-12/schema');
});

t.test('every error code in ERRORS appears in the spec', async (t) => {
  const doc = openapiDocument() as Json;
  const documented = new Set<string>();
  for (const { responses } of responseMaps(doc)) {
    for (const r of Object.values(responses)) for (const c of r['x-error-codes'] ?? []) documented.add(c);
  }
  const frameCodes: string[] = doc.paths['/v1/tasks/{id}/stream'].get['x-websocket'].errorFrameCodes;
  for (const c of frameCodes) documented.add(c);
  for (const code of Object.keys(ERRORS)) t.ok(documented.has(code), `${code} is listed in some x-error-codes (or the WebSocket error frame codes)`);
  t.same(doc.components.schemas.ErrorCode.enum, Object.keys(ERRORS), 'the ErrorCode schema enumerates ERRORS in table order');
});

t.test('every code in the spec exists in ERRORS with the same status', async (t) => {
  const doc = openapiDocument() as Json;
  let checked = 0;
  for (const { where, responses } of responseMaps(doc)) {
    for (const [status, r] of Object.entries(responses)) {
      t.match(status, /^[1-5]\d\d$/, `${where}: ${status} is an HTTP status`);
      const codes: string[] | undefined = r['x-error-codes'];
      if (!codes) {
        t.notOk(Number(status) >= 400 && r.content?.['application/json']?.schema?.$ref === '#/components/schemas/Error', `${where} ${status}: an error envelope response names its codes`);
        continue;
      }
      t.ok(codes.length > 0, `${where} ${status}: x-error-codes is not empty`);
      t.same(r.content, { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } }, `${where} ${status}: the body is the error envelope`);
      t.equal(new Set(codes).size, codes.length, `${where} ${status}: no duplicate codes`);
      for (const code of codes) {
        checked++;
        t.ok(code in ERRORS, `${where}: ${code} is in ERRORS`);
        t.equal(String(ERRORS[code as ErrorCode]?.status), status, `${where}: ${code} has status ${status} in ERRORS`);
      }
      const retryable = ['QUEUE_FULL', 'TENANT_QUEUED_LIMIT', 'RATE_LIMITED', 'TOO_MANY_STREAMS', 'SHUTTING_DOWN'].some((c) => codes.includes(c));
      t.equal(!!r.headers?.['Retry-After'], retryable, `${where} ${status}: Retry-After is documented exactly with QUEUE_FULL, TENANT_QUEUED_LIMIT, RATE_LIMITED, TOO_MANY_STREAMS and SHUTTING_DOWN`);
    }
  }
  t.ok(checked > 30, `checked ${checked} code listings`);
  for (const code of openapiDocument()['paths' as never]['/v1/tasks/{id}/stream']['get']['x-websocket'].errorFrameCodes as string[]) {
    t.ok(code in ERRORS, `WebSocket error frame code ${code} is in ERRORS`);
  }
});

t.test('the routes the brief requires are documented with their main codes', async (t) => {
  const doc = openapiDocument() as Json;
  const codesOf = (method: string, path: string) =>
    Object.values<Json>(doc.paths[path]?.[method]?.responses ?? {}).flatMap((r) => r['x-error-codes'] ?? []);
  t.same(
    Object.entries<Json>(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`)).sort(),
    [
      'DELETE /v1/workspaces/{id}',
      'GET /healthz',
      'GET /metrics',
      'GET /openapi.json',
      'GET /readyz',
      'GET /v1/audit',
      'GET /v1/tasks',
      'GET /v1/tasks/{id}',
      'GET /v1/tasks/{id}/egress',
      'GET /v1/tasks/{id}/logs',
      'GET /v1/tasks/{id}/stream',
      'GET /v1/workspaces',
      'GET /v1/workspaces/{id}',
      'GET /v1/workspaces/{id}/archive',
      'GET /v1/workspaces/{id}/files/{path}',
      'POST /v1/tasks',
      'POST /v1/tasks/{id}/cancel',
      'POST /v1/workspaces',
    ],
  );
  t.same(
    [...codesOf('post', '/v1/tasks')].sort(),
    [
      'ARCHIVE_COMPRESSION_RATIO', 'ARCHIVE_CORRUPT', 'ARCHIVE_EXPANDED_TOO_LARGE', 'ARCHIVE_TOO_LARGE', 'ARCHIVE_TOO_MANY_ENTRIES',
      'BODY_TIMEOUT', 'BODY_TOO_LARGE', 'EGRESS_OUTSIDE_CEILING', 'EGRESS_PATTERN_INVALID', 'EGRESS_PATTERN_TOO_BROAD', 'EGRESS_POLICY_UNENFORCED', 'EGRESS_RELAY_MISSING',
      'ENGINE_UNAVAILABLE', 'HOST_NOT_ALLOWED', 'IMAGE_AMBIGUOUS', 'IMAGE_MISSING', 'IMAGE_UNKNOWN', 'INTERNAL', 'ISOLATION_NOT_ALLOWED', 'ISOLATION_UNAVAILABLE',
      'LIMIT_ABOVE_MAXIMUM', 'MALFORMED_JSON', 'MULTIPART_INVALID', 'ORIGIN_NOT_ALLOWED', 'PROJECT_FILE_INVALID', 'PROJECT_FILE_TOO_LARGE',
      'QUEUE_FULL', 'RATE_LIMITED', 'SHUTTING_DOWN', 'TENANT_QUEUED_LIMIT', 'TENANT_STORAGE_LIMIT', 'UNAUTHENTICATED', 'UNSUPPORTED_MEDIA_TYPE',
      'VALIDATION_FAILED', 'WORKSPACE_ENTRY_CONFLICT', 'WORKSPACE_LINK_ESCAPE', 'WORKSPACE_NOT_FOUND', 'WORKSPACE_PATH_ESCAPE', 'WORKSPACE_PATH_INVALID',
      'WORKSPACE_PATH_TOO_DEEP', 'WORKSPACE_QUOTA_EXCEEDED', 'WORKSPACE_SPECIAL_FILE', 'WORKSPACE_TOO_LARGE', 'WORKSPACE_TOO_MANY_FILES',
    ],
  );
  t.ok(doc.paths['/v1/tasks'].post.responses['429'].headers['Retry-After'], '429 documents Retry-After');
  t.ok(doc.paths['/v1/tasks'].post.responses['503'].headers['Retry-After'], '503 documents Retry-After (SHUTTING_DOWN)');
  // The Host and Origin checks run before routing: every route, and an unmatched one, documents them.
  for (const { where, responses } of responseMaps(doc)) {
    // The admin-only routes answer a key of role user with 403 too, and so do the lists' ?tenant= filters.
    const admin = where === 'GET /metrics' || where === 'GET /v1/audit';
    const lists = where === 'GET /v1/tasks' || where === 'GET /v1/workspaces';
    const expected = admin ? ['ORIGIN_NOT_ALLOWED', 'ADMIN_REQUIRED'] : lists ? ['ORIGIN_NOT_ALLOWED', 'TENANT_FORBIDDEN'] : ['ORIGIN_NOT_ALLOWED'];
    t.same(responses['403']?.['x-error-codes'], expected, `${where}: 403 ${expected.join(' and ')}`);
    t.same(responses['421']?.['x-error-codes'], ['HOST_NOT_ALLOWED'], `${where}: 421 HOST_NOT_ALLOWED`);
  }
  t.ok(doc.paths['/v1/workspaces/{id}/archive'].get.responses['200'].headers['X-SandboxShift-Omitted'], 'the archive documents X-SandboxShift-Omitted');
  t.ok(codesOf('get', '/v1/workspaces/{id}/files/{path}').includes('WORKSPACE_FILE_TOO_LARGE'));
  const logs = doc.paths['/v1/tasks/{id}/logs'].get.responses['200'].content;
  t.same(Object.keys(logs).sort(), ['application/octet-stream', 'application/x-ndjson', 'text/event-stream', 'text/plain']);
  const ws = doc.paths['/v1/tasks/{id}/stream'].get;
  t.ok(ws.responses['101'], 'the WebSocket upgrade is documented');
  t.same(Object.keys(ws['x-websocket'].closeCodes).sort(), ['1000', '1009', '1011', '4008']);
  t.match(ws.description, /4008/);
  t.match(ws.description, /1000/);
  for (const name of ['StatusFrame', 'OutputFrame', 'GapFrame', 'ExitFrame', 'StreamFrame', 'ErrorFrame', 'ClientFrame']) {
    t.ok(doc.components.schemas[name], `components.schemas.${name}`);
  }
  t.notOk('seq' in doc.components.schemas.ErrorFrame.properties, 'the out-of-band error frame has no seq');
});

t.test('every $ref resolves and every schema compiles under JSON Schema 2020-12 (ajv strict)', async (t) => {
  const doc = openapiDocument() as Json;
  const refs: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref') refs.push(x as string);
        else walk(x);
      }
    }
  };
  walk(doc);
  for (const r of new Set(refs)) {
    const m = /^#\/components\/schemas\/([A-Za-z]+)$/.exec(r);
    t.ok(m && doc.components.schemas[m[1]!], `${r} resolves`);
  }
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true });
  addFormats(ajv);
  const base = 'https://sandboxshift.invalid/openapi.json';
  const rewritten = JSON.parse(JSON.stringify(doc.components.schemas).replaceAll('"#/components/schemas/', `"${base}#/$defs/`));
  ajv.addSchema({ $id: base, $defs: rewritten });
  for (const [name, s] of Object.entries<Json>(rewritten)) {
    t.doesNotThrow(() => ajv.compile(s), `components.schemas.${name} compiles`);
  }
});
