/**
 * The write-back's text form (archive-text.ts): the CRC is POSIX cksum's, and the decoder passes
 * on exactly the bytes of a whole, untouched archive and refuses an altered, cut or failed one.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { ArchiveDecoder, Cksum, hasEndLine, markerLineAt, type ArchiveResult } from '../../src/runtime/kubernetes/archive-text.js';

const B = 'SANDBOXSHIFT-WRITEBACK-0123456789abcdef';

function cksumOf(data: Buffer): string {
  const sum = new Cksum();
  sum.update(data.subarray(0, 7));
  sum.update(data.subarray(7));
  return `${sum.digest()} ${sum.bytes}`;
}

/** The text the gate prints after its boundary line for `data`. */
function gateText(data: Buffer): string {
  const b64 = data.toString('base64').replace(/.{76}/g, '$&\n');
  return `${b64}${b64.endsWith('\n') || b64 === '' ? '' : '\n'}${B} END ${cksumOf(data)}\n`;
}

function decode(text: string, chunk = 13): { out: Buffer; result: ArchiveResult | null } {
  const parts: Buffer[] = [];
  let result: ArchiveResult | null = null;
  const d = new ArchiveDecoder(B, (b) => parts.push(b), (r) => (result = r));
  for (let i = 0; i < text.length; i += chunk) d.push(Buffer.from(text.slice(i, i + chunk), 'latin1'));
  d.end();
  return { out: Buffer.concat(parts), result };
}

t.test('Cksum is what the cksum tool prints', async (t) => {
  for (const size of [0, 1, 255, 256, 10_240, 70_001]) {
    const data = randomBytes(size);
    const tool = spawnSync('cksum', { input: data }).stdout.toString().trim();
    t.equal(cksumOf(data), tool, `${size} bytes`);
  }
});

t.test('a whole archive decodes to its bytes, in chunks of any size', async (t) => {
  for (const size of [0, 1, 57, 10_240, 100_000]) {
    const data = randomBytes(size);
    for (const chunk of [1, 13, 4096]) {
      const { out, result } = decode(gateText(data), chunk);
      t.same(result, { ok: true, bytes: size }, `${size} bytes in chunks of ${chunk}`);
      t.ok(out.equals(data));
    }
  }
});

t.test('an altered, cut or failed archive is refused, with the reason', async (t) => {
  const data = randomBytes(5000);
  const text = gateText(data);
  const lines = text.split('\n');
  const flipped = [...lines];
  flipped[3] = (flipped[3]![0] === 'A' ? 'B' : 'A') + flipped[3]!.slice(1);
  t.match(decode(flipped.join('\n')).result, { ok: false, reason: /checksum does not match/ }, 'one character changed');
  t.match(decode(lines.filter((_, i) => i !== 2).join('\n')).result, { ok: false, reason: /incomplete or altered: 4943 bytes arrived, the pod sent 5000/ }, 'a line dropped');
  t.match(decode(lines.slice(0, 20).join('\n') + '\n').result, { ok: false, reason: /incomplete: it ended after \d+ bytes, before its end line/ }, 'cut before the end line');
  const stray = [...lines];
  stray.splice(4, 0, 'Killed: 9');
  t.match(decode(stray.join('\n')).result, { ok: false, reason: /not base64/ }, 'a stray line');
  t.match(decode(`${B} FAILED the image lacks base64\n`).result, { ok: false, reason: /could not send it: the image lacks base64/ }, 'the gate said it could not');
  t.match(decode('A'.repeat(5000)).result, { ok: false, reason: /too long/ }, 'a line without end is not held');
});

t.test('the boundary and end lines are found at line starts only', async (t) => {
  t.equal(markerLineAt(Buffer.from(`out\n\n${B}\nAAAA\n`), B), 5);
  t.equal(markerLineAt(Buffer.from(`x${B}\n`), B), -1);
  t.equal(markerLineAt(Buffer.from(`${B}\n`), B), 0);
  t.ok(hasEndLine(Buffer.from(`AAAA\n${B} END 1 2\n`), B));
  t.ok(hasEndLine(Buffer.from(`${B} FAILED why\n`), B));
  t.notOk(hasEndLine(Buffer.from(`AAAA\n${B}\n`), B));
});
