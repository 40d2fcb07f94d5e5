import t from 'tap';
import { SecretAutomaton, SecretMask, secretMasks } from '../../src/streaming/mask.js';

/** The rule, spelled out the slow way: hide every byte of every occurrence; one `***` per run of overlapping ones. */
function reference(text: string, values: string[]): string {
  const buf = Buffer.from(text);
  const hits: [number, number][] = [];
  for (const v of values.filter((x) => x.length > 0)) {
    const vb = Buffer.from(v);
    for (let i = buf.indexOf(vb); i >= 0; i = buf.indexOf(vb, i + 1)) hits.push([i, i + vb.length]);
  }
  hits.sort((a, b) => a[0] - b[0]);
  const runs: [number, number][] = [];
  for (const [s, e] of hits) {
    const last = runs[runs.length - 1];
    if (last && s < last[1]) last[1] = Math.max(last[1], e);
    else runs.push([s, e]);
  }
  const out: Buffer[] = [];
  let at = 0;
  for (const [s, e] of runs) {
    out.push(buf.subarray(at, s), Buffer.from('***'));
    at = e;
  }
  out.push(buf.subarray(at));
  return Buffer.concat(out).toString();
}

function masked(chunks: Buffer[], values: string[]): string {
  const m = new SecretMask(new SecretAutomaton(values.map((v) => Buffer.from(v))));
  const out = chunks.map((c) => m.push(c));
  out.push(m.finish());
  return Buffer.concat(out).toString();
}

/** Every way of cutting `text`'s bytes once, and twice. */
function splits(text: string): Buffer[][] {
  const b = Buffer.from(text);
  const out: Buffer[][] = [[b]];
  for (let i = 0; i <= b.length; i++) {
    out.push([b.subarray(0, i), b.subarray(i)]);
    for (let j = i; j <= b.length; j++) out.push([b.subarray(0, i), b.subarray(i, j), b.subarray(j)]);
  }
  return out;
}

function checkAllSplits(t: Tap.Test, text: string, values: string[], expected: string) {
  t.equal(reference(text, values), expected, `the rule: ${JSON.stringify(text)} → ${JSON.stringify(expected)}`);
  let bad: string[] | null = null;
  for (const parts of splits(text)) if (masked(parts, values) !== expected) bad ??= parts.map(String);
  t.same(bad, null, 'the same output wherever the reads were cut');
}

t.test('a value printed whole, and cut at every position', async (t) => {
  checkAllSplits(t, 'token=hunter2!\n', ['hunter2'], 'token=***!\n');
  checkAllSplits(t, 'hunter2hunter2 hunter2', ['hunter2'], '****** ***');
});

t.test('overlapping values, and a value overlapping itself, are one run', async (t) => {
  checkAllSplits(t, 'xabcdx', ['abc', 'bcd'], 'x***x');
  checkAllSplits(t, 'aaaaab', ['aa'], '***b');
  checkAllSplits(t, '-abab-abab', ['aba', 'bab'], '-***-***');
});

t.test('a value that is the prefix of another', async (t) => {
  checkAllSplits(t, 'pass password pas', ['pass', 'password'], '*** *** pas');
  checkAllSplits(t, 'passwor', ['pass', 'password'], '***wor');
  checkAllSplits(t, 'xpasswordy', ['password', 'pass', 'word'], 'x***y');
});

t.test('a partial value at the end of the output is let out at the end', async (t) => {
  checkAllSplits(t, 'the end: hunter', ['hunter2'], 'the end: hunter');
  checkAllSplits(t, 'hhhunter2', ['hunter2'], 'hh***');
});

t.test('random texts and values agree with the rule for every cut', async (t) => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const word = (n: number) => Array.from({ length: n }, () => 'ab'[rand(2)]).join('');
  let failures = 0;
  for (let round = 0; round < 300; round++) {
    const values = Array.from({ length: 1 + rand(3) }, () => word(1 + rand(4)));
    const text = word(rand(14));
    const expected = reference(text, values);
    for (const parts of splits(text)) if (masked(parts, values) !== expected) failures++;
  }
  t.equal(failures, 0);
});

t.test('only a possible beginning of a value is held back', async (t) => {
  const m = new SecretMask(new SecretAutomaton([Buffer.from('hunter2')]));
  t.equal(m.push(Buffer.from('abc hun')).toString(), 'abc ');
  t.equal(m.heldBytes, 3);
  t.equal(m.push(Buffer.from('g')).toString(), 'hung', 'decided as soon as it cannot be the value');
  t.equal(m.heldBytes, 0);
  t.equal(m.push(Buffer.from('hunter')).toString(), '');
  t.equal(m.push(Buffer.from('2\n')).toString(), '***\n');
});

t.test('multi-byte text and no values', async (t) => {
  checkAllSplits(t, 'é€😀 clé€ ok', ['clé€'], 'é€😀 *** ok');
  const { stdout } = secretMasks([]);
  const data = Buffer.from('untouched');
  t.equal(stdout.push(data), data, 'without secrets the bytes pass as they are');
});

t.test('what the mask holds back survives the caller reusing its buffer', async (t) => {
  const text = 'one hunt hunter2 two hunter2';
  const values = ['hunter2'];
  const expected = reference(text, values);
  const b = Buffer.from(text);
  for (let cut = 1; cut < b.length; cut++) {
    const m = new SecretMask(new SecretAutomaton(values.map((v) => Buffer.from(v))));
    // One read buffer for both reads, overwritten as the next read would.
    const read = Buffer.alloc(b.length);
    const out: Buffer[] = [];
    b.copy(read, 0, 0, cut);
    out.push(Buffer.from(m.push(read.subarray(0, cut))));
    read.fill(0x58);
    b.copy(read, 0, cut);
    out.push(Buffer.from(m.push(read.subarray(0, b.length - cut))));
    out.push(m.finish());
    t.equal(Buffer.concat(out).toString(), expected, `cut at ${cut}`);
  }
});
