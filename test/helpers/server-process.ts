/**
 * The server as a process of its own, for tests that kill it (`kill -9`) or signal it: the same
 * wiring as src/server.ts (services, app, shutdown on SIGTERM/SIGINT), plus the suite's container
 * label. Usage: node <tap's TypeScript loader> server-process.ts <config.json>. Prints one line,
 * `{"url": ...}`, once it listens.
 */
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { buildApp } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { openapiDocument } from '../../src/http/openapi.js';
import { logOptions } from '../../src/logging.js';
import { startServices } from '../../src/services.js';
import { installShutdown } from '../../src/shutdown.js';

const config = parseConfig(JSON.parse(readFileSync(process.argv[2]!, 'utf8')));
const log = pino(logOptions({ level: process.env.SANDBOXSHIFT_TEST_LOG ?? 'silent' }), pino.destination(2));
const services = await startServices(config, log, { extraLabels: { 'io.sandboxshift.test': '1' }, env: {} });
const app = await buildApp({ ...services, openapi: () => openapiDocument(), log });
await app.listen({ host: '127.0.0.1', port: 0 });
const addr = app.server.address();
installShutdown(app, services, log);
process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}` })}\n`);
