import t from 'tap';
import { api, collectStream } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ pool: { size: 2 } });
t.teardown(() => srv.close());

for (const body of [{}, { resources: { pids: 255 } }]) {
  t.test(`probe ${JSON.stringify(body)}`, async (t) => {
    let missing = 0;
    await srv.services.pool.ready();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 8; i++) {
          const r = await api(srv.url, 'POST', '/v1/tasks', { command: 'echo hi; echo ho >&2', ...body });
          const s = await collectStream(srv.wsUrl, r.json.id);
          const n = s.frames.filter((f) => f.type === 'stdout' || f.type === 'stderr').length;
          if (n !== 2) {
            missing++;
            console.log('MISSING', JSON.stringify(s.frames));
          }
        }
      }),
    );
    console.log('handoffs', srv.services.engine.handoffs);
    t.equal(missing, 0);
  });
}
