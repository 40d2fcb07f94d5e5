#!/usr/bin/env node
import { runCli } from './cli/program.js';

/** The package's `sandboxshift` bin (commands in src/cli/program.ts). */
runCli(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`sandboxshift: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
