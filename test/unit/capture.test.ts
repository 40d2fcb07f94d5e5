import t from 'tap';
import { StreamCapture, TailBuffer, utf8Boundary } from '../../src/streaming/capture.js';

function capture(head: number, tail: number, frame = 1024) {
  const texts: string[] = [];
  const bytes: Buffer[] = [];
  const c = new StreamCapture(head, tail, frame, { text: (s) => texts.push(s), bytes: (b) => bytes.push(Buffer.from(b)) });
  return { c, texts, bytes };
}

t.test('under the head nothing is dropped', async (t) => {
  const { c, texts, bytes } = capture(100, 50);
  c.push(Buffer.from('hello '));
  c.push(Buffer.from('world'));
  t.same(c.finish(), { tail: Buffer.alloc(0), dropped: 0 });
  t.equal(texts.join(''), 'hello world');
  t.equal(Buffer.concat(bytes).toString(), 'hello world');
  t.equal(c.produced, 11);
});

t.test('past the head: live output stops, the tail keeps the end, dropped counts the middle', async (t) => {
  const { c, texts } = capture(10, 5);
  c.push(Buffer.from('0123456789abcdefghij'));
  c.push(Buffer.from('KLMNO'));
  const { tail, dropped } = c.finish();
  t.equal(texts.join(''), '0123456789');
  t.equal(tail.toString(), 'KLMNO');
  t.equal(dropped, 25 - 10 - 5);
  t.equal(c.produced, 25);
});

t.test('a character split across pushes is never broken', async (t) => {
  const { c, texts } = capture(100, 0);
  const e = Buffer.from('é€😀');
  for (const b of e) c.push(Buffer.from([b]));
  c.finish();
  t.equal(texts.join(''), 'é€😀');
  t.notOk(texts.some((s) => s.includes('\uFFFD')));
});

t.test('the head is cut on a character boundary', async (t) => {
  const { c, texts } = capture(4, 10);
  c.push(Buffer.from('abcé')); // 5 bytes: the cut at 4 would split é
  const { tail } = c.finish();
  t.equal(texts.join(''), 'abc');
  t.equal(tail.toString(), 'é');
  t.equal(utf8Boundary(Buffer.from('abcé'), 4), 3);
  t.equal(utf8Boundary(Buffer.from('abcd'), 2), 2);
});

t.test('frames respect frameBytes', async (t) => {
  const { c, texts } = capture(10_000, 0, 256);
  c.push(Buffer.alloc(1000, 'x'));
  c.finish();
  t.same(texts.map((s) => s.length), [256, 256, 256, 232]);
  t.same(StreamCapture.frames(Buffer.from('aé'), 2), ['a', 'é']);
});

t.test('the tail buffer keeps exactly the last bytes, whatever the sizes of the writes', async (t) => {
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (const capacity of [1, 5, 64, 1000]) {
    const tb = new TailBuffer(capacity);
    let all = Buffer.alloc(0);
    for (let i = 0; i < 300; i++) {
      const chunk = Buffer.from(Array.from({ length: rand(capacity * 2 + 3) }, () => 97 + rand(26)));
      tb.push(chunk);
      all = Buffer.concat([all, chunk]);
      t.equal(tb.length, Math.min(all.length, capacity));
      if (i % 50 === 49) {
        const kept = tb.take();
        t.equal(kept.toString(), all.subarray(Math.max(0, all.length - capacity)).toString(), `capacity ${capacity}, write ${i}`);
        t.equal(tb.dropped, all.length - kept.length);
        tb.dropped = 0;
        all = Buffer.alloc(0);
        t.equal(tb.length, 0, 'taking empties it');
      }
    }
  }
});

t.test('the tail buffer is bounded', async (t) => {
  const tb = new TailBuffer(8);
  for (let i = 0; i < 1000; i++) tb.push(Buffer.from(`${i % 10}`.repeat(3)));
  t.equal(tb.length, 8);
  t.equal(tb.dropped, 3000 - 8);
  const all = Array.from({ length: 1000 }, (_, i) => `${i % 10}`.repeat(3)).join('');
  t.equal(tb.take().toString(), all.slice(-8), 'the last 8 bytes');
  const zero = new TailBuffer(0);
  zero.push(Buffer.from('abc'));
  t.equal(zero.dropped, 3);
  t.equal(zero.length, 0);
});
