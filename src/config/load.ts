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

/** Validate a plain object (parsed YAML) into a frozen Config, listing every problem by key path. */
export function parseConfig(raw: unknown, file: string | null = null): Readonly<Config> {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new ConfigError(file, problems);
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
