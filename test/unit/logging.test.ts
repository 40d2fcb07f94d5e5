import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { logOptions } from '../../src/logging.js';

t.test("the server's logger never writes a request body or a secretEnv", async (t) => {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _e, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = pino(logOptions({ level: 'info' }), dest);
  const body = { command: 'true', secretEnv: { TOKEN: 'hunter2' } };
  log.info({ req: { method: 'POST', body } }, 'request');
  log.info({ body }, 'body');
  log.info({ task: { secretEnv: { TOKEN: 'hunter2' } } }, 'nested');
  log.info(body, 'flat');
  t.equal(lines.length, 4);
  t.notOk(lines.join('').includes('hunter2'), lines.join(''));
  t.match(JSON.parse(lines[0]!), { req: { method: 'POST', body: '[redacted]' } });
});
