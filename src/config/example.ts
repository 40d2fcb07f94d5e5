import { z } from 'zod';
import { stringify } from 'yaml';
import { parseConfig } from './load.js';
import { configSchema } from './schema.js';

/**
 * The example production configuration (deploy/sandboxshift.example.yaml), generated from the
 * schema so that it names every key with its description: values are the embedded defaults
 * except the production settings below. Keys that name host files, test-only keys and the image
 * table (an image set in a config file wins over the tags the set-up recorded) are shown
 * commented out, so that the file loads on any host.
 */
export const PRODUCTION_VALUES: Readonly<Record<string, unknown>> = {
  dataDir: '/var/lib/sandboxshift',
  'engine.socket': 'unix:///run/sandboxshift/podman.sock',
  'sandbox.seccompProfile': '/opt/sandboxshift/deploy/seccomp.json',
};

/** Key paths shown commented out (a prefix covers the whole section). */
export const COMMENTED_OUT: readonly string[] = [
  'images',
  'workspaces.hostRoots',
  'egress.testHosts',
  'egress.allowPrivateRanges',
  'tasks.caBundle',
  'tasks.publicCaFile',
];

/** Values shown for commented-out keys whose default (null) says nothing. */
const COMMENTED_EXAMPLES: Readonly<Record<string, unknown>> = {
  'tasks.caBundle': '/etc/sandboxshift/corporate-ca.pem',
  'workspaces.hostRoots': { projects: '/srv/projects' },
};

interface JsonSchemaNode {
  type?: string;
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
}

const HEADER = `# SandboxShift: an example production configuration (sandboxshift.yaml).
#
# Every key the server accepts is listed with what it means; the values are the embedded
# defaults, except dataDir, engine.socket and sandbox.seccompProfile, which match the systemd
# units in deploy/systemd/. Keys naming host files and test-only keys are commented out.
# Validate a configuration with:  sandboxshift check-config --config /etc/sandboxshift/sandboxshift.yaml
# This file is generated from the schema (npm run example-config); a test keeps it in step.
`;

function isCommented(path: string): boolean {
  return COMMENTED_OUT.some((p) => path === p || path.startsWith(`${p}.`));
}

function valueAt(root: unknown, path: string[]): unknown {
  let v: unknown = root;
  for (const k of path) v = (v as Record<string, unknown> | undefined)?.[k];
  return v;
}

function comment(text: string, indent: string): string[] {
  return text.split('\n').map((l) => `${indent}# ${l}`.trimEnd());
}

function leaf(key: string, value: unknown, indent: string, commented: boolean): string[] {
  const doc = stringify({ [key]: value }, { lineWidth: 0 }).trimEnd().split('\n');
  return doc.map((l) => (commented ? `${indent}# ${l}` : `${indent}${l}`));
}

function section(node: JsonSchemaNode, path: string[], defaults: unknown, depth: number): string[] {
  const indent = '  '.repeat(depth);
  const out: string[] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const p = [...path, key];
    const dotted = p.join('.');
    const isSection = child.type === 'object' && !!child.properties && Object.keys(child.properties).length > 0;
    // A section whose every key is commented out is commented out too (an empty key reads null).
    const commented = isCommented(dotted) || (isSection && leafPaths(child, p).every(isCommented));
    if (depth === 0) out.push('');
    if (child.description) out.push(...comment(child.description, indent));
    if (isSection) {
      out.push(commented ? `${indent}# ${key}:` : `${indent}${key}:`);
      out.push(...section(child, p, defaults, depth + 1));
    } else {
      const value = dotted in PRODUCTION_VALUES ? PRODUCTION_VALUES[dotted] : dotted in COMMENTED_EXAMPLES ? COMMENTED_EXAMPLES[dotted] : valueAt(defaults, p);
      out.push(...leaf(key, value ?? null, indent, commented));
    }
  }
  return out;
}

function leafPaths(node: JsonSchemaNode, path: string[]): string[] {
  const paths: string[] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const p = [...path, key];
    if (child.type === 'object' && child.properties && Object.keys(child.properties).length > 0) paths.push(...leafPaths(child, p));
    else paths.push(p.join('.'));
  }
  return paths;
}

/** The YAML text of deploy/sandboxshift.example.yaml. */
export function exampleConfigText(): string {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
  const defaults = parseConfig({});
  return `${HEADER}${section(schema, [], defaults, 0).join('\n')}\n`;
}

/** Every leaf key path of the schema (for the test that the example names them all). */
export function configKeyPaths(): string[] {
  return leafPaths(z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode, []);
}
