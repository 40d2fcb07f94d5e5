import t from 'tap';
import { runTask } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ pool: { size: 2 } });
t.teardown(() => srv.close());

t.test('a task of the default shape runs in a pre-started sandbox', async (t) => {
  t.ok(await srv.services.pool.ready(), 'pool filled');
  const before = srv.services.engine.handoffs;
  const t0 = Date.now();
  const r = await runTask(srv.url, 'echo hi; pwd; id -u; cat /proc/self/mountinfo | grep workspace');
  console.log(Date.now() - t0, r.stdout, r.stderr, r.task.status);
  t.equal(srv.services.engine.handoffs, before + 1);
  t.match(r.stdout, /^hi\n\/workspace\n65532\n/);
});
