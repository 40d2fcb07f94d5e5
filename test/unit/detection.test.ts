import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { detectImage, imageTable, resolveImage } from '../../src/detection/detect.js';
import { ERRORS } from '../../src/errors.js';

const images = parseConfig({}).images;
const PY = 'sandboxshift/runtime-python:3.11';
const NODE = 'sandboxshift/runtime-node:20';
const MULTI = 'sandboxshift/runtime-multi:latest';
const GO = 'sandboxshift/runtime-go:1.22';
const JAVA = 'sandboxshift/runtime-java:21';
const RUST = 'sandboxshift/runtime-rust:latest';

t.test('the default marker table (seed + V2)', async (t) => {
  t.same(images.markers, {
    'requirements.txt': 'python',
    'pyproject.toml': 'python',
    'package.json': 'node',
    'go.mod': 'go',
    'Cargo.toml': 'rust',
    'pom.xml': 'java',
    'build.gradle': 'java',
  });
  t.same(images.multi?.languages, ['python', 'node'], 'the multi image carries python and node');
  t.equal(images.default, 'python');
  t.same(
    [...imageTable(images).keys()].sort(),
    [GO, JAVA, MULTI, NODE, PY, RUST].sort(),
    'six images: python, node, multi (default) and go, java, rust (optional)',
  );
});

t.test('the seed table', async (t) => {
  t.same(detectImage([], images), { name: PY, markers: [], languages: [] }, 'none → default (python)');
  t.same(detectImage(['requirements.txt', 'main.py'], images), { name: PY, markers: ['requirements.txt'], languages: ['python'] });
  t.same(detectImage(['package.json', 'index.js'], images), { name: NODE, markers: ['package.json'], languages: ['node'] });
  t.same(detectImage(['package.json', 'requirements.txt'], images), {
    name: MULTI,
    markers: ['package.json', 'requirements.txt'],
    languages: ['node', 'python'],
  });
  t.same(detectImage(['README.md', 'setup.cfg'], images).name, PY, 'unrelated files → default');
});

t.test('one V2 marker → its image', async (t) => {
  t.same(detectImage(['go.mod', 'main.go'], images), { name: GO, markers: ['go.mod'], languages: ['go'] });
  t.same(detectImage(['Cargo.toml', 'src'], images), { name: RUST, markers: ['Cargo.toml'], languages: ['rust'] });
  t.same(detectImage(['pom.xml'], images), { name: JAVA, markers: ['pom.xml'], languages: ['java'] });
  t.same(detectImage(['build.gradle'], images), { name: JAVA, markers: ['build.gradle'], languages: ['java'] });
  t.same(detectImage(['pom.xml', 'build.gradle'], images), { name: JAVA, markers: ['build.gradle', 'pom.xml'], languages: ['java'] }, 'two java markers: one language');
  t.same(detectImage(['pyproject.toml'], images), { name: PY, markers: ['pyproject.toml'], languages: ['python'] });
  t.same(detectImage(['requirements.txt', 'pyproject.toml'], images), {
    name: PY,
    markers: ['pyproject.toml', 'requirements.txt'],
    languages: ['python'],
  });
});

t.test('markers are exact root file names (case and path matter)', async (t) => {
  t.equal(detectImage(['Go.mod', 'cargo.toml', 'POM.xml', 'sub/package.json'], images).name, PY, 'look-alikes → the default');
  t.same(detectImage(['Go.mod', 'cargo.toml', 'POM.xml'], images).markers, []);
});

t.test('the multi rule: python + node (with any of their markers) → multi; anything else beyond one language → ambiguous', async (t) => {
  t.equal(detectImage(['pyproject.toml', 'package.json'], images).name, MULTI);
  t.equal(detectImage(['pyproject.toml', 'requirements.txt', 'package.json'], images).name, MULTI);
  for (const other of ['go.mod', 'Cargo.toml', 'pom.xml', 'build.gradle']) {
    t.equal(detectImage([other, 'requirements.txt'], images).name, null, `${other} + python`);
    t.equal(detectImage([other, 'package.json'], images).name, null, `${other} + node`);
    t.equal(detectImage([other, 'package.json', 'requirements.txt'], images).name, null, `${other} + python + node`);
  }
  t.equal(detectImage(['go.mod', 'Cargo.toml'], images).name, null, 'go + rust');
  t.equal(detectImage(['go.mod', 'pom.xml'], images).name, null, 'go + java');
  t.equal(detectImage(['Cargo.toml', 'build.gradle'], images).name, null, 'rust + java');
  const d = detectImage(['go.mod', 'requirements.txt'], images);
  t.same(d, { name: null, markers: ['go.mod', 'requirements.txt'], languages: ['go', 'python'] });
  t.throws(() => resolveImage('auto', d, images), { code: 'IMAGE_AMBIGUOUS', details: { markers: ['go.mod', 'requirements.txt'], languages: ['go', 'python'] } });
  t.equal(ERRORS.IMAGE_AMBIGUOUS.status, 422, 'IMAGE_AMBIGUOUS is a 422');
  t.equal(resolveImage(GO, d, images), GO, 'an explicit image settles it');
});

t.test('every combination of the seven default markers', async (t) => {
  const markers = Object.keys(images.markers);
  const imageOf: Record<string, string> = { python: PY, node: NODE, go: GO, java: JAVA, rust: RUST };
  let count = 0;
  for (let mask = 0; mask < 1 << markers.length; mask++) {
    const present = markers.filter((_, i) => mask & (1 << i));
    const langs = [...new Set(present.map((m) => images.markers[m]!))];
    const expected =
      langs.length === 0 ? PY : langs.length === 1 ? imageOf[langs[0]!]! : langs.every((l) => l === 'python' || l === 'node') ? MULTI : null;
    const got = detectImage([...present, 'unrelated.txt'], images);
    if (got.name !== expected || got.markers.join() !== [...present].sort().join() || got.languages.join() !== langs.sort().join()) {
      t.fail(`markers ${JSON.stringify(present)}: expected ${expected}, got ${JSON.stringify(got)}`);
    }
    count++;
  }
  t.equal(count, 128, 'all 2^7 marker sets checked');
});

t.test('languages the multi image does not carry need an explicit image (custom table)', async (t) => {
  const cfg = parseConfig({
    images: {
      languages: { python: { image: PY }, node: { image: NODE }, go: { image: 'sandboxshift/runtime-go:1.19' } },
      multi: { image: MULTI, languages: ['python', 'node'] },
      default: 'python',
      markers: { 'requirements.txt': 'python', 'package.json': 'node', 'go.mod': 'go' },
    },
  }).images;
  const d = detectImage(['go.mod', 'requirements.txt'], cfg);
  t.same(d, { name: null, markers: ['go.mod', 'requirements.txt'], languages: ['go', 'python'] });
  t.throws(() => resolveImage('auto', d, cfg), { code: 'IMAGE_AMBIGUOUS' });
  t.equal(resolveImage('sandboxshift/runtime-go:1.19', d, cfg), 'sandboxshift/runtime-go:1.19');
  t.same(detectImage(['go.mod'], cfg).name, 'sandboxshift/runtime-go:1.19');
  t.same(detectImage(['go.mod', 'package.json', 'requirements.txt'], cfg).name, null);
});

t.test('without a multi image, two languages are ambiguous', async (t) => {
  const cfg = parseConfig({ images: { ...structuredClone(images), multi: null, requiredForReady: null } }).images;
  t.equal(detectImage(['package.json', 'requirements.txt'], cfg).name, null);
});

t.test('explicit images must be in the table', async (t) => {
  const d = detectImage([], images);
  t.equal(resolveImage('auto', d, images), PY);
  t.equal(resolveImage(MULTI, d, images), MULTI);
  t.equal(resolveImage(RUST, d, images), RUST);
  t.throws(() => resolveImage('alpine:3', d, images), { code: 'IMAGE_UNKNOWN' });
});
