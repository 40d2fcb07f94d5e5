import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exampleConfigText } from '../src/config/example.js';
import { installDir } from '../src/paths.js';

/** Writes deploy/sandboxshift.example.yaml from the config schema. */
const file = join(installDir(), 'deploy', 'sandboxshift.example.yaml');
writeFileSync(file, exampleConfigText());
process.stdout.write(`wrote ${file}\n`);
