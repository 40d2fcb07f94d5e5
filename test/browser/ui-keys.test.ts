/**
 * The web page in headless Chromium on a server with keys: the page loads without a key and asks
 * for one; a wrong key is shown as the server's code and message; signed in (the key kept in the
 * session), the REST calls carry the bearer header and the stream the bearer subprotocol; inline
 * files, stdin, a refused submission's error, the workspace archive download (fetched with the
 * key, saved from a blob), a reload that stays signed in, and signing out.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { hashKey } from '../../src/auth/keys.js';
import { launchBrowser, openPage, screenshot, submitCommand, terminalRows, waitForRow, waitForStatus } from '../helpers/browser.js';
import { startTestServer } from '../helpers/server.js';
import { builtUi } from '../helpers/ui.js';

const KEY = 'ssk_' + 'b'.repeat(40);
const uiDir = await builtUi(t);
const server = await startTestServer({ auth: { keys: [{ id: 'web', tenant: 'team', role: 'user', sha256: hashKey(KEY) }] } }, { uiDir });
t.teardown(() => server.close());
const browser = await launchBrowser(t);
const downloads = mkdtempSync(join(tmpdir(), 'sbx-ui-dl-'));
t.teardown(() => rmSync(downloads, { recursive: true, force: true }));

t.test('sign in, run, stdin, errors, download, reload, sign out', async (t) => {
  const { page, problems } = await openPage(browser);
  await page.goto(`${server.url}/ui/`);
  await page.waitForSelector('body[data-ui-ready]');
  t.ok(await page.isVisible('#key'), 'the page asks for a key');
  t.notOk(await page.isVisible('#error'), 'no error before signing in');
  t.equal(await page.$$eval('#tasks tbody tr', (r) => r.length), 0, 'no tasks shown without a key');

  await page.fill('#key', 'ssk_' + 'x'.repeat(40));
  await page.press('#key', 'Enter');
  await page.waitForSelector('#error:not([hidden])');
  t.equal(await page.textContent('#error-code'), 'UNAUTHENTICATED', 'a wrong key: the server\'s code');
  t.ok((await page.textContent('#error-message'))!.length > 0, 'and its message');
  await screenshot(page, 'ui-keys-refused');

  await page.fill('#key', KEY);
  await page.press('#key', 'Enter');
  await page.waitForSelector('#signed-in:not([hidden])');
  t.notOk(await page.isVisible('#error'), 'signed in: the error is cleared');
  t.equal(await page.evaluate(() => sessionStorage.getItem('sandboxshift.key')), KEY, 'the key is kept in the session');

  // Inline files; the stream authenticates with the bearer subprotocol.
  await page.check('input[name="ws-kind"][value="files"]');
  await page.fill('#files', JSON.stringify({ 'hello.txt': 'hi from a file\n' }));
  await submitCommand(page, 'cat hello.txt; echo made > out.txt');
  await waitForRow(page, 'hi from a file');
  t.equal(await waitForStatus(page, ['succeeded', 'failed', 'error']), 'succeeded', 'the task ran on its inline files');

  // The workspace archive, fetched with the bearer header and saved from a blob.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const saved = join(downloads, download.suggestedFilename());
  await download.saveAs(saved);
  t.match(download.suggestedFilename(), /^ws_.*\.tar\.gz$/, 'saved as <workspace>.tar.gz');
  const listing = execFileSync('tar', ['-tzf', saved], { encoding: 'utf8' });
  t.match(listing, /(^|\/)out\.txt$/m, 'the archive holds what the task wrote');
  t.match(listing, /(^|\/)hello\.txt$/m, 'and the inline file');

  // stdin.
  await page.check('input[name="ws-kind"][value="empty"]');
  await submitCommand(page, 'read line; echo "got $line"', { stdin: true });
  await waitForStatus(page, ['running']);
  await page.waitForSelector('#stdin-form:not([hidden])');
  await page.waitForFunction(() => document.getElementById('task-view')!.dataset.conn === 'live');
  await page.fill('#stdin-input', 'a line typed in the page');
  await page.press('#stdin-input', 'Enter');
  await waitForRow(page, 'got a line typed in the page');
  t.equal(await waitForStatus(page, ['succeeded', 'failed', 'error']), 'succeeded', 'the stdin task read the line and ended');

  // A refused submission: the server's code and message.
  await page.fill('#timeout', '100000');
  await page.fill('#command', 'true');
  await page.click('#run');
  await page.waitForSelector('#error:not([hidden])');
  t.equal(await page.textContent('#error-code'), 'LIMIT_ABOVE_MAXIMUM', 'a refused task shows its code');
  t.match(await page.textContent('#error-message'), /\S/, 'and message');
  await page.fill('#timeout', '');
  await screenshot(page, 'ui-keys-signed-in');

  // A reload stays signed in and reopens the task named in the address.
  const url = page.url();
  t.match(url, /#task=tsk_/, 'the address names the open task');
  await page.reload();
  await page.waitForSelector('body[data-ui-ready]');
  await page.waitForSelector('#signed-in:not([hidden])');
  await waitForRow(page, 'got a line typed in the page');
  t.same((await terminalRows(page)).filter((r) => r.startsWith('got ')), ['got a line typed in the page'], 'the finished task replays once');
  t.ok((await page.$$eval('#tasks tbody tr', (r) => r.length)) >= 2, 'the list shows the tasks');

  await page.click('#signout');
  t.equal(await page.evaluate(() => sessionStorage.getItem('sandboxshift.key')), null, 'signing out forgets the key');
  t.ok(await page.isVisible('#key'), 'and asks for one again');
  t.equal(await page.$$eval('#tasks tbody tr', (r) => r.length), 0, 'the list is cleared');
  t.same(problems, [], 'no CSP violation or page error');
  await page.context().close();
});
