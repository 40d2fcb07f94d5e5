import { pino } from 'pino';
import { buildApp } from './app.js';
import { exposureRefusal } from './auth/exposure.js';
import { hasAnyKey } from './auth/server-keys.js';
import { ConfigError, configPath, loadConfig } from './config/load.js';
import { logOptions } from './logging.js';
import { openapiDocument } from './http/openapi.js';
import { startServices } from './services.js';
import { installShutdown } from './shutdown.js';

/** The only file that listens, handles signals and exits. */
async function main(): Promise<void> {
  const log = pino(logOptions());
  let config;
  try {
    config = loadConfig(configPath(process.argv.slice(2), process.env));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sandboxshift: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  log.info({ listen: config.listen, dataDir: config.dataDir }, 'configuration loaded');
  // Before anything starts: a server without keys is open to whoever reaches its port.
  const refusal = exposureRefusal(config.listen.host, hasAnyKey(config));
  if (refusal) {
    process.stderr.write(`sandboxshift: refusing to start: ${refusal}\n`);
    process.exit(2);
  }
  const services = await startServices(config, log);
  const report = await services.readiness.check(true);
  if (report.ready) log.info('readiness: a hardened container started; required images present');
  else log.warn({ report }, 'not ready yet: /readyz answers 503 until this is fixed');
  const { warnings, ...versions } = report.runtime;
  log.info(versions, 'runtime versions');
  for (const warning of warnings) log.warn({ ...versions }, `runtime warning: ${warning}`);

  const app = await buildApp({ ...services, openapi: () => openapiDocument(), log });
  try {
    await app.listen({ host: config.listen.host, port: config.listen.port });
  } catch (err) {
    // Leave nothing behind (the owned Podman service above all) when the port cannot be had.
    await app.close();
    await services.close();
    throw err;
  }

  installShutdown(app, services, log);
}

main().catch((err: unknown) => {
  process.stderr.write(`sandboxshift: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
