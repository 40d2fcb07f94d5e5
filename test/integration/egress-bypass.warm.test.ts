// The egress bypass and cross-task isolation tests on the warm path: each task of the default shape is handed to a pre-started sandbox.
import t from 'tap';
import { expectAllWarm } from '../helpers/paths.js';

process.env.SANDBOXSHIFT_TEST_PATH = 'warm';
await import('./egress-bypass.test.js');
expectAllWarm(t);
