// The runtime image contract (images/README.md), checked on every configured image
// that is present, started the way the server starts it: POST /v1/tasks with "image": name.
// A default image (python, node, multi) that is missing FAILS this test: setup must build them.
// Optional images (go, java, rust) are checked when present and listed when not.
import Docker from 'dockerode';
import t from 'tap';
import { imageTable } from '../../src/detection/detect.js';
import { requiredImages } from '../../src/readiness.js';
import { api, runTask } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());
const docker = new Docker({ socketPath: srv.services.socketPath });
const images = srv.services.config.images;
const table = imageTable(images);
const required = new Set(requiredImages(images));

/** Per language: a command printing the runtime's version, and how to read the version from it. */
const RUNTIMES: Record<string, { cmd: string; parse: RegExp }> = {
  python: { cmd: 'python3 --version', parse: /^Python (\d+\.\d+\.\d+)/ },
  node: { cmd: 'node --version', parse: /^v(\d+\.\d+\.\d+)/ },
  go: { cmd: 'go version', parse: /go version go(\d+\.\d+(?:\.\d+)?)/ },
  java: { cmd: 'java -version 2>&1 | head -n 1', parse: /version "(\d+(?:\.\d+)*)/ },
  rust: { cmd: 'rustc --version', parse: /^rustc (\d+\.\d+\.\d+)/ },
};

/** The version a tag promises: `:3.11` → "3.11"; `:latest` promises none. */
const promised = (image: string) => /:(\d+(?:\.\d+)*)$/.exec(image)?.[1] ?? null;
const withinSeries = (version: string, series: string) => version === series || version.startsWith(`${series}.`);

const present: string[] = [];
for (const name of table.keys()) if (await srv.services.engine.imagePresent(name)) present.push(name);

t.test('the default images are present (a missing one fails: setup builds them)', async (t) => {
  t.same([...required].sort(), [images.languages.python!.image, images.languages.node!.image, images.multi!.image].sort(), 'python, node, multi');
  for (const [name, entry] of table) {
    if (required.has(name)) t.ok(present.includes(name), `default image ${name} is present (build: ${entry.build})`);
    else if (!present.includes(name)) t.comment(`optional image ${name} (${entry.languages.join(', ')}) is not present: not checked (build: ${entry.build})`);
  }
});

for (const name of present) {
  const { languages } = table.get(name)!;
  t.test(`${name} meets the runtime image contract`, async (t) => {
    const info = await docker.getImage(name).inspect();
    const c = info.Config;
    t.notOk(c.Entrypoint?.length, 'no ENTRYPOINT baked in');
    t.notOk(c.Cmd?.length, 'no CMD baked in');
    t.notOk(Object.keys(c.ExposedPorts ?? {}).length, 'no EXPOSE');
    t.notOk(Object.keys(c.Volumes ?? {}).length, 'no VOLUME');
    t.match(c.User, /^65532(:65532)?$/, 'USER 65532');
    t.equal(c.WorkingDir, '/workspace', 'WORKDIR /workspace');
    const labels = c.Labels ?? {};
    t.equal(labels['io.sandboxshift.relay'], '/usr/local/bin/sbx-relay', 'the relay label');
    t.equal(labels['io.sandboxshift.relay.stdin'], '1', 'the relay has the stdin mode (label)');
    t.ok(labels['io.sandboxshift.build'], `build mode recorded: ${labels['io.sandboxshift.build']}`);
    t.ok(labels['io.sandboxshift.base'], `base recorded: ${labels['io.sandboxshift.base']}`);

    const versionCmds = languages.map((l) => `echo "${l}=$(${RUNTIMES[l]!.cmd})"`).join('; ');
    const cmd = `test -x /bin/sh && echo sh=yes; echo uid=$(id -u); echo pwd=$(pwd); echo home=$HOME; echo relay=$(/usr/local/bin/sbx-relay 3128 /tmp/egress.sock -- /bin/sh -c 'echo wrapped'); echo stdin=$(mkfifo /tmp/in && { printf '\\000\\003ok\\n\\000\\000' >/tmp/in & } && /usr/local/bin/sbx-relay --stdin /tmp/in -- /bin/cat); echo pkg=$(for p in apt apt-get dpkg apk; do command -v $p; done | tr '\\n' ' '); echo cas=$(grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt); ${versionCmds}`;
    const { task, stdout, stderr } = await runTask(srv.url, cmd, { image: name });
    t.equal(task.status, 'succeeded', `the task ran (stderr: ${stderr})`);
    t.equal(task.image.name, name, 'the task ran in the requested image');
    const out = Object.fromEntries(stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    t.equal(out.sh, 'yes', '/bin/sh exists');
    t.equal(out.uid, '65532', 'id -u is 65532');
    t.equal(out.pwd, '/workspace', 'the working directory is /workspace');
    t.equal(out.home, '/workspace/.home', 'HOME is in the workspace');
    t.equal(out.relay, 'wrapped', 'the egress relay runs: binds 127.0.0.1:3128 and execs the command, as allowlisted tasks start');
    t.equal(out.stdin, 'ok', "the relay's stdin mode runs: a frame through a named pipe becomes the command's stdin, then EOF");
    t.equal(out.pkg, '', 'no package manager (apt, apt-get, dpkg, apk) in the image');
    t.ok(Number(out.cas) > 50, `a public CA bundle at /etc/ssl/certs/ca-certificates.crt (${out.cas} certificates)`);

    for (const lang of languages) {
      const reported = RUNTIMES[lang]!.parse.exec(out[lang] ?? '')?.[1];
      t.ok(reported, `${lang} reports a version: ${out[lang]}`);
      if (!reported) continue;
      // The tag's promise: this image's own tag, or (multi) the tag of that language's image.
      const promise = promised(name) ?? promised(images.languages[lang]!.image);
      if (promise) t.ok(withinSeries(reported, promise), `${lang} ${reported} is what the tag promises (${promise})`);
      const label = labels[`io.sandboxshift.${lang}.version`];
      t.ok(label && withinSeries(reported, label), `label io.sandboxshift.${lang}.version=${label} matches ${reported}`);
    }
  });
}

async function workspace(files: Record<string, string>): Promise<string> {
  const r = await api(srv.url, 'POST', '/v1/workspaces', { files });
  if (r.status !== 201) throw new Error(`workspace: ${r.status} ${r.text}`);
  return r.json.id as string;
}

const PY_FIXTURE = {
  'fixture/pyproject.toml': [
    '[build-system]',
    'requires = ["setuptools"]',
    'build-backend = "setuptools.build_meta"',
    '[project]',
    'name = "sbx-fixture"',
    'version = "1.0.0"',
    '',
  ].join('\n'),
  'fixture/sbx_fixture/__init__.py': 'MAGIC = "fixture-" + str(6 * 7)\n',
};

for (const name of present.filter((n) => table.get(n)!.languages.includes('python'))) {
  t.test(`${name}: pip install from a workspace fixture persists to the next task`, async (t) => {
    const id = await workspace(PY_FIXTURE);
    // The fixture is built into a wheel in the workspace, then installed from it with no index:
    // no site-packages is writable, so pip installs into the user site under HOME (the workspace).
    const install = await runTask(
      srv.url,
      'pip wheel -q --no-index --no-build-isolation --no-deps -w dist ./fixture && pip install --no-index dist/sbx_fixture-1.0.0-py3-none-any.whl',
      { image: name, workspace: { id } },
    );
    t.equal(install.task.status, 'succeeded', `pip install ran (stderr: ${install.stderr.slice(-2000)})`);
    const use = await runTask(srv.url, 'cd / && python3 -c "import sbx_fixture; print(sbx_fixture.MAGIC, sbx_fixture.__file__)"', {
      image: name,
      workspace: { id },
    });
    t.equal(use.task.status, 'succeeded', `import ran (stderr: ${use.stderr})`);
    t.match(use.stdout, /^fixture-42 \/workspace\/\.home\/\.local\/lib\/python3\.\d+\/site-packages\/sbx_fixture\/__init__\.py\n$/, 'imported from the user site in the workspace');

    // A virtualenv in the workspace works too (no PIP_USER to break it).
    const venv = await runTask(
      srv.url,
      'python3 -m venv .venv && .venv/bin/pip install -q --no-index dist/sbx_fixture-1.0.0-py3-none-any.whl && .venv/bin/python -c "import sbx_fixture, sys; print(sys.prefix)"',
      { image: name, workspace: { id } },
    );
    t.equal(venv.task.status, 'succeeded', `venv + pip ran (stderr: ${venv.stderr.slice(-2000)})`);
    t.equal(venv.stdout.trim().split('\n').pop(), '/workspace/.venv');
  });
}

const JS_FIXTURE = {
  'fixture-js/package.json': JSON.stringify({ name: 'sbx-fixture-js', version: '1.0.0', main: 'index.js' }),
  'fixture-js/index.js': 'exports.magic = "fixture-js-" + 6 * 7;\n',
};

for (const name of present.filter((n) => table.get(n)!.languages.includes('node'))) {
  t.test(`${name}: npm install of a workspace fixture is require()able in the next task`, async (t) => {
    const id = await workspace(JS_FIXTURE);
    // npm pack builds the package tarball; installing it copies it into node_modules (no link).
    const install = await runTask(
      srv.url,
      'cd fixture-js && npm pack --silent && cd .. && npm install --offline --no-audit --no-fund ./fixture-js/sbx-fixture-js-1.0.0.tgz',
      { image: name, workspace: { id } },
    );
    t.equal(install.task.status, 'succeeded', `npm install ran (stderr: ${install.stderr.slice(-2000)})`);
    const use = await runTask(srv.url, `node -e "const m = require('sbx-fixture-js'); console.log(m.magic, require.resolve('sbx-fixture-js'))"`, {
      image: name,
      workspace: { id },
    });
    t.equal(use.task.status, 'succeeded', `require ran (stderr: ${use.stderr})`);
    t.equal(use.stdout, 'fixture-js-42 /workspace/node_modules/sbx-fixture-js/index.js\n', 'required from the workspace');
  });
}
