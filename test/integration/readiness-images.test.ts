// /readyz and the runtime images: ready when the default images (the default language's, the
// multi image and the images of the languages it carries: python, node, multi) are present; the
// optional ones (go, java, rust) are listed in the body either way.
import t from 'tap';
import { DEFAULT_IMAGES } from '../../src/config/schema.js';
import { api } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const ABSENT = 'sandboxshift/runtime-absent:0';
type Row = { name: string; present: boolean; required: boolean; build: string };

t.test('default images present → 200; optional images listed with required: false', async (t) => {
  const srv = await startTestServer({
    images: { ...DEFAULT_IMAGES, languages: { ...DEFAULT_IMAGES.languages, absent: { image: ABSENT, build: 'echo build-absent' } } },
  });
  t.teardown(() => srv.close());
  const r = await api(srv.url, 'GET', '/readyz');
  t.equal(r.status, 200, JSON.stringify(r.json));
  const rows = new Map((r.json.images as Row[]).map((i) => [i.name, i]));
  const { languages, multi } = srv.services.config.images;
  for (const name of [languages.python!.image, languages.node!.image, multi!.image]) {
    t.match(rows.get(name), { present: true, required: true }, `${name}: default, present`);
  }
  for (const lang of ['go', 'java', 'rust']) {
    t.match(rows.get(languages[lang]!.image), { required: false }, `${languages[lang]!.image}: optional, listed`);
  }
  t.same(rows.get(ABSENT), { name: ABSENT, present: false, required: false, build: 'echo build-absent' }, 'a missing optional image does not block readiness');
});

t.test('a missing default image (the multi image) → 503 naming it and its build command', async (t) => {
  const srv = await startTestServer({ images: { ...DEFAULT_IMAGES, multi: { image: ABSENT, build: 'echo build-multi', languages: ['python', 'node'] } } });
  t.teardown(() => srv.close());
  const r = await api(srv.url, 'GET', '/readyz');
  t.equal(r.status, 503);
  t.equal(r.json.ready, false);
  t.same((r.json.images as Row[]).find((i) => i.name === ABSENT), { name: ABSENT, present: false, required: true, build: 'echo build-multi' });
  t.equal(r.json.engine.canStartContainer, true, 'the engine itself is fine');
});
