import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildUi } from '../../scripts/build-ui.js';

/** The web page bundled (as `npm run build` does) into a temporary directory of the test's own. */
export async function builtUi(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-ui-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return buildUi(undefined, dir);
}
