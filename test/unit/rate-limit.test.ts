import t from 'tap';
import { RateBuckets } from '../../src/http/rate-limit.js';

t.test('a bucket allows a burst of perMinute, then refills evenly', async (t) => {
  let now = 0;
  const b = new RateBuckets(() => now);
  for (let i = 0; i < 3; i++) t.equal(b.take('x', 3), 0, `request ${i + 1} of 3 passes`);
  t.equal(b.take('x', 3), 20, 'the fourth waits 20 s (3 per minute)');
  t.equal(b.take('y', 3), 0, 'another key has its own bucket');
  now += 19_000;
  t.equal(b.take('x', 3), 1, 'a second short of a token: 1 s');
  now += 1_000;
  t.equal(b.take('x', 3), 0, 'the token arrived');
  t.equal(b.take('x', 3), 20);
  now += 10 * 60_000;
  for (let i = 0; i < 3; i++) t.equal(b.take('x', 3), 0, 'refilled to the burst, not beyond');
  t.ok(b.take('x', 3) > 0);
  t.equal(b.waitSeconds('z', 1), 0, 'waitSeconds takes nothing');
  t.equal(b.waitSeconds('z', 1), 0);
});

t.test('the number of buckets is bounded', async (t) => {
  const b = new RateBuckets(() => 0);
  for (let i = 0; i < 10_050; i++) b.take(`k${i}`, 1);
  t.equal(b.size, 10_000, 'the least recently used are dropped');
});
