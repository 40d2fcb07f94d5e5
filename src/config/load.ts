import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(
    readonly file: string | null,
    readonly problems: string[],
  ) {
    super(`invalid configuration${file ? ` in ${file}` : ''}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Keys that were replaced: a config naming one is refused with the key to use instead. */
const RENAMED: readonly { section: string; key: string; problem: string }[] = [
  { section: 'engine', key: 'runtime', problem: 'engine.runtime: replaced by engine.isolation (runc or gvisor; runsc is gvisor) and engine.allowedIsolation' },
];

function renamedKeys(raw: unknown): string[] {
  if (!raw || typeof raw !== 'object') return [];
  return RENAMED.filter(({ section, key }) => {
    const s = (raw as Record<string, unknown>)[section];
    return s !== null && typeof s === 'object' && Object.hasOwn(s, key);
  }).map((r) => r.problem);
}

/** Validate a plain object (parsed YAML) into a frozen Config, listing every problem by key path. */
export function parseConfig(raw: unknown, file: string | null = null): Readonly<Config> {
  const renamed = renamedKeys(raw);
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success || renamed.length > 0) {
    const issues = result.success ? [] : result.error.issues;
    // The schema's own "unrecognized key" for a renamed key says less than the rename does.
    const problems = issues
      .filter((i) => !(renamed.length > 0 && i.code === 'unrecognized_keys' && RENAMED.some((r) => i.path.join('.') === r.section && i.keys.every((k) => k === r.key))))
      .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new ConfigError(file, [...renamed, ...problems]);
  }
  return deepFreeze(result.data);
}

/** Where the config file comes from: --config, then SANDBOXSHIFT_CONFIG, else none (defaults). */
export function configPath(argv: readonly string[], env: NodeJS.ProcessEnv): string | null {
  const i = argv.indexOf('--config');
  if (i >= 0) {
    const p = argv[i + 1];
    if (!p) throw new ConfigError(null, ['--config needs a file path']);
    return p;
  }
  const eq = argv.find((a) => a.startsWith('--config='));
  if (eq) return eq.slice('--config='.length);
  return env.SANDBOXSHIFT_CONFIG || null;
}

export function loadConfig(file: string | null, cwd = process.cwd()): Readonly<Config> {
  if (file === null) return parseConfig({});
  const path = isAbsolute(file) ? file : resolve(cwd, file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read the file: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    const msg = err instanceof YAMLParseError ? err.message : String(err);
    throw new ConfigError(path, [`not valid YAML: ${msg}`]);
  }
  return parseConfig(raw, path);
}
