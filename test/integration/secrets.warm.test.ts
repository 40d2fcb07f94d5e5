// The secrets tests on the warm path: each task of the default shape is handed to a pre-started
// sandbox, which gets its secrets with the job line instead of a secrets file.
import t from 'tap';
import { expectAllWarm } from '../helpers/paths.js';

process.env.SANDBOXSHIFT_TEST_PATH = 'warm';
await import('./secrets.test.js');
expectAllWarm(t);
