#!/usr/bin/env node
import { ConfigError, configPath, loadConfig } from './config/load.js';

const USAGE = `usage: sandboxshift [serve] [--config FILE]     run the server
       sandboxshift check-config [--config FILE]   validate a configuration and print the result
       sandboxshift images [--config FILE] [--socket PATH] [--json]
                                   configured runtime images: present or missing, and how to build
                                   each missing one (exit 1 when a default image is missing)
The config path may also come from SANDBOXSHIFT_CONFIG; no file means the embedded defaults.`;

/** The package's `sandboxshift` bin: a thin dispatcher over the server and the config loader. */
async function main(argv: string[]): Promise<number> {
  const [command = 'serve', ...rest] = argv[0] === '--help' || argv[0] === '-h' ? ['help'] : argv[0]?.startsWith('-') ? ['serve', ...argv] : argv;
  switch (command) {
    case 'serve':
      process.argv = [process.argv[0]!, process.argv[1]!, ...rest];
      await import('./server.js');
      return -1; // the server keeps the process alive and exits on its own
    case 'check-config':
      try {
        const config = loadConfig(configPath(rest, process.env));
        process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
        return 0;
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`sandboxshift: ${err.message}\n`);
        return 2;
      }
    case 'images':
      try {
        const config = loadConfig(configPath(rest, process.env));
        const { imagesCommand, UsageError } = await import('./images-command.js');
        return await imagesCommand(config, rest, { env: process.env, cwd: process.cwd(), out: (s) => process.stdout.write(s) }).catch((err: unknown) => {
          if (!(err instanceof UsageError)) throw err;
          process.stderr.write(`${err.message}\n`);
          return 64;
        });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`sandboxshift: ${err.message}\n`);
        return 2;
      }
    case 'help':
    case '--help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`sandboxshift: unknown command "${command}"\n${USAGE}\n`);
      return 64;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`sandboxshift: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
