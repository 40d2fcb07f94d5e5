// images/offline/record.sh (run by the set-up) writes the record the server reads
// (src/detection/record.ts): the two must agree on the format, and what it says must be true of
// the engine's images.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { detectImage } from '../../src/detection/detect.js';
import { applyImageRecord, readImageRecord } from '../../src/detection/record.js';
import { installDir } from '../../src/paths.js';
import { startTestServer } from '../helpers/server.js';

// The engine the tests use (the suite's socket, else a server's own service).
const srv = await startTestServer();
t.teardown(() => srv.close());
const docker = new Docker({ socketPath: srv.services.socketPath });

const dir = mkdtempSync(join(tmpdir(), 'sbx-record-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const run = spawnSync('bash', [join(installDir(), 'images/offline/record.sh'), dir], { encoding: 'utf8', timeout: 120_000 });
const { record, error } = readImageRecord(dir);

t.test('record.sh writes a record the server accepts, with the offline tags', async (t) => {
  t.equal(run.status, 0, `record.sh ran (stderr: ${run.stderr})`);
  t.equal(error, null, 'the server accepts the file');
  t.equal(record?.mode, 'offline');
  t.same(Object.keys(record?.images ?? {}).sort(), ['go', 'java', 'multi', 'node', 'python', 'rust']);
  t.match(record?.images, {
    python: { image: 'sandboxshift/runtime-python:3.11' },
    node: { image: 'sandboxshift/runtime-node:20' },
    multi: { image: 'sandboxshift/runtime-multi:latest' },
    go: { image: 'sandboxshift/runtime-go:1.19' },
    java: { image: 'sandboxshift/runtime-java:17' },
    rust: { image: 'sandboxshift/runtime-rust:1.63' },
  });
});

t.test('"built" and "versions" are what the engine has', async (t) => {
  for (const [key, entry] of Object.entries(record!.images)) {
    const info = await docker
      .getImage(entry.image)
      .inspect()
      .catch(() => null);
    t.equal(entry.built, info !== null, `${key}: built=${entry.built}`);
    t.match(entry.build, new RegExp(`^bash images/offline/build\\.sh ${key}$`), `${key}: its build command`);
    if (!info) continue;
    const labels = info.Config.Labels ?? {};
    for (const [tool, version] of Object.entries(entry.versions ?? {})) {
      t.equal(labels[`io.sandboxshift.${tool}.version`], version, `${key}: ${tool} ${version} as labelled`);
    }
    t.ok(Object.keys(entry.versions ?? {}).length > 0, `${key}: versions recorded`);
  }
});

t.test('applied on the built-in table, markers pick the recorded tags', async (t) => {
  const images = applyImageRecord(parseConfig({}).images, record);
  t.equal(detectImage(['go.mod'], images).name, 'sandboxshift/runtime-go:1.19');
  t.equal(detectImage(['pom.xml'], images).name, 'sandboxshift/runtime-java:17');
  t.equal(detectImage(['Cargo.toml'], images).name, 'sandboxshift/runtime-rust:1.63');
  t.equal(detectImage(['package.json', 'requirements.txt'], images).name, 'sandboxshift/runtime-multi:latest');
});
