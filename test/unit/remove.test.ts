import type Docker from 'dockerode';
import t from 'tap';
import { isBusyRemoval, removeContainer } from '../../src/runtime/remove.js';

type Failure = Error & { statusCode?: number; json?: { message?: string } };

function failure(statusCode: number, message: string): Failure {
  return Object.assign(new Error(`(HTTP code ${statusCode}) server error - ${message}`), { statusCode, json: { message } });
}

const busy = () =>
  failure(500, 'removing container 4ace root filesystem: 1 error occurred:\n\t* unlinkat /var/lib/containers/storage/overlay-containers/4ace/userdata/shm: device or resource busy');

/** A fake engine whose removals fail with the given errors in turn, then succeed. */
function engine(failures: Failure[]) {
  const calls: Array<{ id: string; opts: unknown }> = [];
  const getContainer = (id: string) => ({
    remove: async (opts: unknown) => {
      calls.push({ id, opts });
      const next = failures.shift();
      if (next) throw next;
    },
  });
  return Object.assign({ getContainer } as unknown as Pick<Docker, 'getContainer'>, { calls });
}

t.test('a removal that races the cleanup for the shm mount is tried again until it succeeds', async (t) => {
  const fake = engine([busy(), busy()]);
  await removeContainer(fake, 'c1', [1, 1, 1]);
  t.equal(fake.calls.length, 3);
  t.same(fake.calls[0], { id: 'c1', opts: { force: true, v: true } });
});

t.test('a container that stays busy fails after the last retry with the engine error', async (t) => {
  const fake = engine([busy(), busy(), busy()]);
  await t.rejects(removeContainer(fake, 'c1', [1, 1]), /device or resource busy/);
  t.equal(fake.calls.length, 3);
});

t.test('a missing container counts as removed; other errors are not retried', async (t) => {
  const gone = engine([failure(404, 'no such container')]);
  await removeContainer(gone, 'c1', [1]);
  t.equal(gone.calls.length, 1);
  const conflict = engine([failure(500, 'container is paused')]);
  await t.rejects(removeContainer(conflict, 'c1', [1]), /paused/);
  t.equal(conflict.calls.length, 1);
});

t.test('only a 500 naming a busy mount is the race', async (t) => {
  t.ok(isBusyRemoval(busy()));
  t.notOk(isBusyRemoval(failure(409, 'device or resource busy')));
  t.notOk(isBusyRemoval(failure(500, 'no space left on device')));
  t.notOk(isBusyRemoval(new Error('socket hang up')));
});
