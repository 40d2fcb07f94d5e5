// The stdin restart tests on the warm path: each runc task is handed to a pre-started sandbox, its pipe mounted onto the slot.
import t from 'tap';
import { expectAllWarm } from '../helpers/paths.js';

process.env.SANDBOXSHIFT_TEST_PATH = 'warm';
await import('./stdin-restart.test.js');
expectAllWarm(t);
