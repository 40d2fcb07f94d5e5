import type { Config } from '../config/schema.js';
import { AppError } from '../errors.js';
import type { CreateTaskBody } from './schemas.js';

/**
 * A task's limits: the request's values, else the server defaults, each checked against its
 * server maximum. Never lowered silently: a value above a maximum is LIMIT_ABOVE_MAXIMUM naming
 * the field and the bound.
 */
export function resolveLimits(body: CreateTaskBody, config: Pick<Config, 'defaults' | 'maxima' | 'requests'>) {
  const { defaults, maxima, requests } = config;
  const atMost = (field: string, value: number, maximum: number) => {
    if (value > maximum) throw new AppError('LIMIT_ABOVE_MAXIMUM', { field, value, maximum });
  };
  atMost('command', Buffer.byteLength(body.command), requests.commandBytes);
  const envEntries = Object.entries(body.env);
  atMost('env', envEntries.length, requests.envEntries);
  for (const [k, v] of envEntries) atMost(`env.${k}`, Buffer.byteLength(v), requests.envValueBytes);
  const resources = {
    cpus: body.resources.cpus ?? defaults.cpus,
    memoryMb: body.resources.memoryMb ?? defaults.memoryMb,
    pids: body.resources.pids ?? defaults.pids,
  };
  atMost('resources.cpus', resources.cpus, maxima.cpus);
  atMost('resources.memoryMb', resources.memoryMb, maxima.memoryMb);
  atMost('resources.pids', resources.pids, maxima.pids);
  const timeoutSeconds = body.timeoutSeconds ?? defaults.timeoutSeconds;
  atMost('timeoutSeconds', timeoutSeconds, maxima.timeoutSeconds);
  return { resources, timeoutSeconds };
}
