import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { DEFAULT_IMAGES } from '../../src/config/schema.js';
import { detectImage } from '../../src/detection/detect.js';
import { applyImageRecord, readImageRecord, withImageRecord, type ImageRecord } from '../../src/detection/record.js';
import { requiredImages } from '../../src/readiness.js';

const entry = (image: string, build: string) => ({ image, build, built: true, versions: {} });
const OFFLINE: ImageRecord = {
  version: 1,
  mode: 'offline',
  images: {
    python: entry('sandboxshift/runtime-python:3.11', 'bash images/offline/build.sh python'),
    node: entry('sandboxshift/runtime-node:20', 'bash images/offline/build.sh node'),
    multi: entry('sandboxshift/runtime-multi:latest', 'bash images/offline/build.sh multi'),
    go: entry('sandboxshift/runtime-go:1.19', 'bash images/offline/build.sh go'),
    java: entry('sandboxshift/runtime-java:17', 'bash images/offline/build.sh java'),
    rust: entry('sandboxshift/runtime-rust:1.63', 'bash images/offline/build.sh rust'),
    cobol: entry('sandboxshift/runtime-cobol:1', 'true'),
  },
};

t.test('the record replaces built-in entries with the tags this machine builds', async (t) => {
  const images = applyImageRecord(parseConfig({}).images, OFFLINE);
  t.same(images.languages.go, { image: 'sandboxshift/runtime-go:1.19', build: 'bash images/offline/build.sh go' });
  t.same(images.languages.java, { image: 'sandboxshift/runtime-java:17', build: 'bash images/offline/build.sh java' });
  t.same(images.languages.rust, { image: 'sandboxshift/runtime-rust:1.63', build: 'bash images/offline/build.sh rust' });
  t.equal(images.languages.python!.build, 'bash images/offline/build.sh python', 'build commands are the offline ones');
  t.same(images.multi, { image: 'sandboxshift/runtime-multi:latest', build: 'bash images/offline/build.sh multi', languages: ['python', 'node'] });
  t.notOk('cobol' in images.languages, 'languages the table does not have are ignored');
  t.equal(detectImage(['go.mod'], images).name, 'sandboxshift/runtime-go:1.19', 'detection uses the recorded tag');
  t.same(requiredImages(images), ['sandboxshift/runtime-python:3.11', 'sandboxshift/runtime-node:20', 'sandboxshift/runtime-multi:latest']);
});

t.test('an entry the operator configured explicitly wins over the record', async (t) => {
  const cfg = parseConfig({
    images: {
      ...DEFAULT_IMAGES,
      languages: { ...DEFAULT_IMAGES.languages, go: { image: 'registry.example/go:1.23', build: 'make go' } },
      multi: { image: 'registry.example/multi:1', build: '', languages: ['python', 'node'] },
    },
  });
  const images = applyImageRecord(cfg.images, OFFLINE);
  t.same(images.languages.go, { image: 'registry.example/go:1.23', build: 'make go' });
  t.equal(images.multi!.image, 'registry.example/multi:1');
  t.equal(images.languages.java!.image, 'sandboxshift/runtime-java:17', 'untouched defaults still take the record');
});

t.test('requiredForReady names follow the record', async (t) => {
  const cfg = parseConfig({ images: { ...DEFAULT_IMAGES, requiredForReady: ['sandboxshift/runtime-go:1.22', 'other/image:1'] } });
  t.same(applyImageRecord(cfg.images, OFFLINE).requiredForReady, ['sandboxshift/runtime-go:1.19', 'other/image:1']);
});

t.test('withImageRecord: a new frozen config; no record leaves the config as it is', async (t) => {
  const config = parseConfig({});
  t.equal(withImageRecord(config, null), config);
  const applied = withImageRecord(config, OFFLINE);
  t.not(applied, config);
  t.ok(Object.isFrozen(applied.images.languages.go), 'frozen');
  t.equal(config.images.languages.go!.image, 'sandboxshift/runtime-go:1.22', 'the original is unchanged');
});

t.test('readImageRecord: absent, valid, broken', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-record-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.same(readImageRecord(dir), { record: null, error: null }, 'no file: no record, no error');
  writeFileSync(join(dir, 'images.json'), JSON.stringify(OFFLINE));
  t.same(readImageRecord(dir).record, OFFLINE);
  writeFileSync(join(dir, 'images.json'), '{"version": 1, "mode": "offline", "images": {');
  t.match(readImageRecord(dir), { record: null, error: /not valid JSON/ });
  writeFileSync(join(dir, 'images.json'), JSON.stringify({ ...OFFLINE, images: { go: { image: 'Not A Name', build: '', built: true } } }));
  t.match(readImageRecord(dir), { record: null, error: /images\.go\.image/ });
  writeFileSync(join(dir, 'images.json'), JSON.stringify({ ...OFFLINE, version: 2 }));
  t.match(readImageRecord(dir), { record: null, error: /version/ });
});
