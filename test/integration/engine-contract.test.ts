import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { fromInstall } from '../../src/paths.js';
import { writeSandboxHosts } from '../../src/runtime/hosts.js';
import { KernelLogOomProbe } from '../../src/runtime/oom.js';
import { PodmanEngine } from '../../src/runtime/podman.js';
import { engineContract } from '../helpers/engine-contract.js';
import { TEST_LABEL } from '../helpers/server.js';

// The ContainerEngine contract against real Podman (the suite's API socket).
const socket = process.env.SANDBOXSHIFT_TEST_SOCKET;
if (!socket) {
  t.skip('SANDBOXSHIFT_TEST_SOCKET is not set: no Podman API socket to run the engine contract against');
} else {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-podman-contract-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const settings = {
    serverId: `srv_contract_${process.pid}`,
    seccompProfilePath: fromInstall('deploy/seccomp.json'),
    hostsFilePath: writeSandboxHosts(join(dir, 'sandbox')),
    tmpfsMb: 16,
    nofile: 1024,
    nproc: 4096,
    logMaxBytes: 8 * 1024 * 1024,
    extraLabels: TEST_LABEL,
    caBundlePath: null,
    secretsDir: join(dir, 'secrets'),
  };
  const log = pino({ level: 'silent' });
  engineContract(t, {
    shape: { image: 'sandboxshift/runtime-python:3.11', cpus: 1, memoryMb: 256, pids: 64, isolation: 'runc' },
    engine: async () => PodmanEngine.forSocket(socket, settings, new KernelLogOomProbe(), log),
  });
}
