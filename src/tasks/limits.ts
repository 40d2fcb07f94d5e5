import type { Config } from '../config/schema.js';
import { AppError } from '../errors.js';
import { composeCommand, FILE_KEYS, PROJECT_FILE, type ProjectDefaults } from '../workspace/projectfile.js';
import type { CreateTaskBody } from './schemas.js';

/**
 * A task's limits: the request's values, else the workspace's sandboxshift.yaml, else the server
 * defaults, each checked against its server maximum. Never lowered silently: a value above a
 * maximum is LIMIT_ABOVE_MAXIMUM naming the field (or the file key) and the bound.
 */
export function resolveLimits(
  body: CreateTaskBody,
  config: Pick<Config, 'defaults' | 'maxima' | 'requests'>,
  project: ProjectDefaults = {},
) {
  const { defaults, maxima, requests } = config;
  const fromFile: string[] = [];
  const atMost = (field: string, value: number, maximum: number, fileKey?: keyof ProjectDefaults) => {
    if (value > maximum) {
      throw new AppError(
        'LIMIT_ABOVE_MAXIMUM',
        fileKey ? { field: FILE_KEYS[fileKey], source: PROJECT_FILE, value, maximum } : { field, value, maximum },
        fileKey ? `${PROJECT_FILE}: ${FILE_KEYS[fileKey]} (${value}) is above the server maximum ${maximum}` : undefined,
      );
    }
  };
  /** The request's value, else the file's (noted), else the default. */
  const pick = <T>(req: T | undefined, key: keyof ProjectDefaults, def: T): [T, keyof ProjectDefaults | undefined] => {
    if (req !== undefined) return [req, undefined];
    const v = project[key] as T | undefined;
    if (v !== undefined) {
      fromFile.push(FILE_KEYS[key]);
      return [v, key];
    }
    return [def, undefined];
  };

  const setup = project.setup ?? null;
  if (setup !== null) fromFile.push(FILE_KEYS.setup);
  atMost('command', Buffer.byteLength(body.command), requests.commandBytes);
  const command = composeCommand(setup, body.command);
  atMost('command', Buffer.byteLength(command), requests.commandBytes, setup !== null ? 'setup' : undefined);

  // The file's env supplies defaults; the request's entries replace them key by key.
  const fileEnv = project.env ?? {};
  if (Object.keys(fileEnv).length > 0) fromFile.push(FILE_KEYS.env);
  // A secret of the same name replaces the file's plain default.
  const secretEnv = body.secretEnv ?? {};
  const env: Record<string, string> = { ...fileEnv, ...body.env };
  for (const name of Object.keys(secretEnv)) delete env[name];
  const envEntries = Object.entries(env);
  atMost('env', envEntries.length, requests.envEntries);
  for (const [k, v] of envEntries) atMost(`env.${k}`, Buffer.byteLength(v), requests.envValueBytes, k in body.env ? undefined : 'env');

  // Bounds of the secrets name the variable, never its value.
  const secretEntries = Object.entries(secretEnv);
  atMost('secretEnv', secretEntries.length, requests.secretEntries);
  for (const [k, v] of secretEntries) atMost(`secretEnv.${k}`, Buffer.byteLength(v), requests.secretValueBytes);

  const [cpus, cpusSrc] = pick(body.resources.cpus, 'cpus', defaults.cpus);
  const [memoryMb, memSrc] = pick(body.resources.memoryMb, 'memoryMb', defaults.memoryMb);
  const resources = { cpus, memoryMb, pids: body.resources.pids ?? defaults.pids };
  atMost('resources.cpus', resources.cpus, maxima.cpus, cpusSrc);
  atMost('resources.memoryMb', resources.memoryMb, maxima.memoryMb, memSrc);
  atMost('resources.pids', resources.pids, maxima.pids);
  const [timeoutSeconds, timeoutSrc] = pick(body.timeoutSeconds, 'timeoutSeconds', defaults.timeoutSeconds);
  atMost('timeoutSeconds', timeoutSeconds, maxima.timeoutSeconds, timeoutSrc);
  return { resources, timeoutSeconds, env, secretEnv, setup, command, fromFile };
}
