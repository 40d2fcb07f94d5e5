import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { detectImage, resolveImage } from '../../src/detection/detect.js';

const images = parseConfig({}).images;
const PY = 'sandboxshift/runtime-python:3.11';
const NODE = 'sandboxshift/runtime-node:20';
const MULTI = 'sandboxshift/runtime-multi:latest';

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

t.test('several markers of one language pick that language', async (t) => {
  const withPyproject = parseConfig({
    images: { ...structuredClone(images), markers: { 'requirements.txt': 'python', 'pyproject.toml': 'python', 'package.json': 'node' }, requiredForReady: null },
  }).images;
  t.same(detectImage(['requirements.txt', 'pyproject.toml'], withPyproject), {
    name: PY,
    markers: ['pyproject.toml', 'requirements.txt'],
    languages: ['python'],
  });
});

t.test('languages the multi image does not carry need an explicit image', async (t) => {
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
  t.throws(() => resolveImage('alpine:3', d, images), { code: 'IMAGE_UNKNOWN' });
});
