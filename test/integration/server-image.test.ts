// deploy/Containerfile builds offline (deploy/container/build.sh: the base from the offline image
// cache, no container registry) and the image runs the server's CLI: --help, and check-config of
// the example production configuration mounted where the image expects its configuration.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { installDir } from '../../src/paths.js';

const root = installDir();
const TAG = `localhost/sandboxshift/server:test-${process.pid}`;
const env = { ...process.env, CONTAINERS_CONF: join(root, 'deploy', 'containers.conf') };
const podman = (args: string[]) => spawnSync('podman', ['--runtime', 'runc', ...args], { encoding: 'utf8', env });

t.teardown(() => {
  podman(['rmi', '-f', TAG]);
});

t.test('the server image builds offline and runs the CLI', { timeout: 600_000 }, async (t) => {
  const build = spawnSync('bash', [join(root, 'deploy', 'container', 'build.sh'), '--tag', TAG], { encoding: 'utf8', env, cwd: root });
  t.equal(build.status, 0, build.stderr.slice(-2000));
  t.match(build.stderr, /built localhost\/sandboxshift\/server:test-/);

  const help = podman(['run', '--rm', '--network', 'none', TAG, '--help']);
  t.equal(help.status, 0, help.stderr);
  t.match(help.stdout, /Usage: sandboxshift/);

  const example = join(root, 'deploy', 'sandboxshift.example.yaml');
  const check = podman(['run', '--rm', '--network', 'none', '-v', `${example}:/etc/sandboxshift/sandboxshift.yaml:ro`, TAG, 'check-config']);
  t.equal(check.status, 0, check.stderr);
  t.equal(JSON.parse(check.stdout).engine.socket, 'unix:///run/sandboxshift/podman.sock');

  const tools = podman(['run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', TAG, '-c', 'for b in mkfs.ext4 losetup mount git node; do command -v $b; done | wc -l; id -u']);
  t.equal(tools.stdout, '5\n0\n', 'the tools the server runs are in the image, and it runs as root');
});
