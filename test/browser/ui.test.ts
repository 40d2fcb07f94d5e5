/**
 * The web page in a real headless Chromium against a real server and real Podman, on a server
 * without keys: a task printing coloured lines over a few seconds shows its first lines before it
 * ends, survives a severed WebSocket (replayed from the last seq, nothing lost or doubled), ends
 * with its exit status; output and commands containing markup stay text; a second task is
 * cancelled from the page; the page works at 360 px and its controls are labelled.
 */
import t from 'tap';
import { launchBrowser, openPage, screenshot, submitCommand, terminalRows, waitForRow, waitForStatus } from '../helpers/browser.js';
import { tgz } from '../helpers/archives.js';
import { startTestServer } from '../helpers/server.js';
import { builtUi } from '../helpers/ui.js';

const uiDir = await builtUi(t);
// A small output head and tail, so that a task can overflow them (a gap) in a few kilobytes.
const server = await startTestServer({ output: { headBytes: 1024, tailBytes: 256 } }, { uiDir });
t.teardown(() => server.close());
const browser = await launchBrowser(t);

const N = 8;
// Green stdout and plain stderr lines, 0.4 s apart, then markup on stdout, then exit 3.
const COLOURED = `for i in $(seq 1 ${N}); do printf '\\033[32mline %s\\033[0m\\n' $i; printf 'warn %s\\n' $i >&2; sleep 0.4; done; printf '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">\\n'; exit 3`;

t.test('a live task: first lines before it ends, a severed socket replayed without loss or duplicates, exit status', async (t) => {
  const { page, problems } = await openPage(browser);
  await page.goto(`${server.url}/ui/`);
  await page.waitForSelector('body[data-ui-ready]');
  t.ok(await page.isVisible('#tasks'), 'the task list is drawn');
  t.notOk(await page.isVisible('#error'), 'no error on a server without keys');

  const id = await submitCommand(page, COLOURED);
  t.match(id, /^tsk_/, 'the task view opens on the new task');
  await waitForRow(page, 'line 1');
  const early = await terminalRows(page);
  const statusEarly = await page.$eval('#task-view', (s) => (s as HTMLElement).dataset.status);
  t.equal(statusEarly, 'running', 'the first line is shown while the task is still running');
  t.notOk(early.some((r) => r.includes(`line ${N}`)), `the last line is not there yet (${early.length} rows)`);
  await screenshot(page, 'ui-running');

  // Sever the connection from the server side mid-run: the page reconnects with ?after=.
  await waitForRow(page, 'line 3');
  t.ok(server.dropStreams() >= 1, 'the server dropped the page\'s socket');
  await page.waitForFunction(() => Number(document.getElementById('task-view')!.dataset.reconnects) >= 1, undefined, { timeout: 15_000 });

  const final = await waitForStatus(page, ['succeeded', 'failed', 'cancelled', 'timed_out', 'error']);
  t.equal(final, 'failed', 'the exit status is shown');
  t.match(await page.textContent('#task-exit'), /^3\b/, 'with the exit code');
  await waitForRow(page, '<script>');
  const rows = await terminalRows(page);
  for (let i = 1; i <= N; i++) {
    t.equal(rows.filter((r) => r === `line ${i}`).length, 1, `stdout line ${i} shown exactly once`);
    t.equal(rows.filter((r) => r === `warn ${i}`).length, 1, `stderr line ${i} shown exactly once`);
  }
  const order = rows.filter((r) => r.startsWith('line ')).map((r) => Number(r.slice(5)));
  t.same(order, Array.from({ length: N }, (_, i) => i + 1), 'stdout lines in order');
  t.equal(rows.length, 2 * N + 1, 'nothing else in the terminal');
  t.equal(rows[rows.length - 1], '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">', 'markup in the output is shown as text');
  t.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'and never ran');
  t.equal(await page.$$eval('#terminal script, #terminal img', (e) => e.length), 0, 'no element was made from it');

  // stdout and stderr told apart: the green stdout cells and the red stderr cells (ANSI 2 and 1).
  const colours = await page.$$eval('#terminal .xterm-rows > div', (divs) =>
    divs.map((d) => ({ text: (d.textContent ?? '').trim(), classes: [...d.querySelectorAll('span')].map((s) => s.className).join(' ') })),
  );
  t.ok(colours.filter((c) => c.text.startsWith('line ')).every((c) => /xterm-fg-2\b/.test(c.classes)), 'stdout lines are green as the task printed them');
  t.ok(colours.filter((c) => c.text.startsWith('warn ')).every((c) => /xterm-fg-1\b/.test(c.classes)), 'stderr lines are red');
  t.notOk(colours.filter((c) => c.text.startsWith('line ')).some((c) => /xterm-fg-1\b/.test(c.classes)), 'stdout is not red');

  // The list shows the task, its command as text.
  await page.waitForFunction((tid) => document.querySelector(`#tasks tr[data-task-id="${tid}"]`)?.getAttribute('data-status') === 'failed', id, { timeout: 10_000 });
  const cell = await page.textContent(`#tasks tr[data-task-id="${id}"] td.command`);
  t.ok(cell?.includes('<script>window.__pwned=1</script>'), 'the command in the list is text');
  t.equal(await page.$$eval('#tasks script, #tasks img', (e) => e.length), 0, 'the list made no element of it');
  t.match(await page.textContent(`#tasks tr[data-task-id="${id}"] td:last-child`), '3', 'the list shows the exit code');
  await screenshot(page, 'ui-finished');
  t.same(problems, [], 'no CSP violation or page error');
  await page.context().close();
});

t.test('cancel a running task from the page', async (t) => {
  const { page, problems } = await openPage(browser);
  await page.goto(`${server.url}/ui/`);
  await page.waitForSelector('body[data-ui-ready]');
  await submitCommand(page, 'echo started; sleep 120');
  await waitForRow(page, 'started');
  t.equal(await waitForStatus(page, ['running']), 'running');
  t.notOk(await page.isDisabled('#cancel'), 'cancel is offered while it runs');
  await page.click('#cancel');
  t.equal(await waitForStatus(page, ['cancelled', 'succeeded', 'failed', 'error'], 30_000), 'cancelled', 'the task ends cancelled');
  t.ok(await page.isDisabled('#cancel'), 'and cancel is no longer offered');
  t.same(problems, []);
  await page.context().close();
});

t.test('the list: newest first, a page at a time, filtered by status', async (t) => {
  const { page, problems } = await openPage(browser);
  await page.goto(`${server.url}/ui/?pageSize=1`);
  await page.waitForSelector('body[data-ui-ready]');
  const shown = () => page.$$eval('#tasks tbody tr', (rows) => rows.map((r) => (r as HTMLElement).dataset.status));
  t.same(await shown(), ['cancelled'], 'one task a page, the newest (the cancelled one) first');
  t.ok(await page.isDisabled('#newer'), 'no newer page');
  await page.click('#older');
  await page.waitForFunction(() => document.querySelector<HTMLElement>('#tasks tbody tr')?.dataset.status === 'failed');
  t.ok(await page.isDisabled('#older'), 'the oldest page is the last');
  await page.click('#newer');
  await page.waitForFunction(() => document.querySelector<HTMLElement>('#tasks tbody tr')?.dataset.status === 'cancelled');
  await page.selectOption('#status-filter', 'failed');
  await page.waitForFunction(() => document.querySelector<HTMLElement>('#tasks tbody tr')?.dataset.status === 'failed');
  t.same(await shown(), ['failed'], 'the status filter shows only failed tasks');
  t.ok(await page.isDisabled('#older'), 'one failed task: one page');
  await page.selectOption('#status-filter', 'timed_out');
  await page.waitForSelector('#tasks-empty:not([hidden])');
  t.same(await shown(), [], 'no timed-out task: the list says so');
  t.same(problems, []);
  await page.context().close();
});

t.test('workspaces: an uploaded archive, then the same workspace by id', async (t) => {
  const { page, problems } = await openPage(browser);
  await page.goto(`${server.url}/ui/`);
  await page.waitForSelector('body[data-ui-ready]');
  await page.check('input[name="ws-kind"][value="archive"]');
  t.ok(await page.isVisible('#archive'), 'the archive field is shown for that choice');
  t.notOk(await page.isVisible('#files'), 'the others are not');
  await page.setInputFiles('#archive', { name: 'project.tar.gz', mimeType: 'application/gzip', buffer: tgz([{ name: 'data/note.txt', data: 'from the archive\n' }]) });
  const first = await submitCommand(page, 'cat data/note.txt; echo second > data/two.txt');
  await waitForRow(page, 'from the archive');
  t.equal(await waitForStatus(page, ['succeeded', 'failed', 'error']), 'succeeded', 'the task ran on the uploaded archive');
  const ws = ((await (await fetch(`${server.url}/v1/tasks/${first}`)).json()) as { workspaceId: string }).workspaceId;

  await page.check('input[name="ws-kind"][value="existing"]');
  await page.fill('#workspace-id', ws);
  await page.check('#readonly');
  await submitCommand(page, 'cat data/two.txt; touch data/three.txt');
  await waitForRow(page, 'second');
  t.equal(await waitForStatus(page, ['succeeded', 'failed', 'error']), 'failed', 'the read-only workspace refuses the write');
  t.ok((await terminalRows(page)).some((r) => /Read-only file system/i.test(r)), 'and says so on stderr');

  await page.fill('#workspace-id', 'ws_doesnotexist');
  await page.click('#run');
  await page.waitForSelector('#error:not([hidden])');
  t.equal(await page.textContent('#error-code'), 'WORKSPACE_NOT_FOUND', 'an unknown workspace: the server\'s code');
  t.same(problems, []);
  await page.context().close();
});

t.test('a gap in the output is shown as a marked line between head and tail', async (t) => {
  const { page, problems } = await openPage(browser);
  await page.goto(`${server.url}/ui/`);
  await page.waitForSelector('body[data-ui-ready]');
  await submitCommand(page, "head -c 3000 /dev/zero | tr '\\0' x; echo; echo the end");
  t.equal(await waitForStatus(page, ['succeeded', 'failed', 'error']), 'succeeded');
  await waitForRow(page, 'the end');
  const rows = await terminalRows(page);
  const marker = rows.findIndex((r) => /\[… \d+ bytes of stdout dropped …\]/.test(r));
  t.ok(marker > 0, `the gap is marked (${rows[marker] ?? 'not found'})`);
  t.ok(rows.slice(0, marker).join('').startsWith('x'.repeat(1000)), 'after the head');
  t.equal(rows[rows.length - 1], 'the end', 'and before the tail');
  const dropped = Number(/(\d+) bytes/.exec(rows[marker] ?? '')?.[1]);
  const shown = rows.filter((r) => /^x+$/.test(r)).join('').length;
  t.equal(shown + dropped, 3000, 'shown and dropped add up to what the task printed');
  await screenshot(page, 'ui-gap');
  t.same(problems, []);
  await page.context().close();
});

t.test('at 360 px wide: no page-wide horizontal scrolling; every control labelled; keyboard reaches the form', async (t) => {
  const { page, problems } = await openPage(browser, 360);
  await page.goto(`${server.url}/ui/`);
  await page.waitForSelector('body[data-ui-ready]');
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  t.ok(width <= 360, `the page fits 360 px (scrollWidth ${width})`);
  const unlabelled = await page.$$eval('input, select, textarea', (els) =>
    els.filter((e) => (e as HTMLInputElement).labels?.length === 0 && !e.getAttribute('aria-label')).map((e) => e.id || e.outerHTML),
  );
  t.same(unlabelled, [], 'every input has a label');
  // Tab order: the sign-in field first, then the command field before the Run button.
  const order: string[] = [];
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName || ''));
  }
  t.equal(order[0], 'key', 'the key field comes first');
  t.ok(order.indexOf('command') > 0 && order.indexOf('command') < order.indexOf('run') || !order.includes('run'), `the command field comes before Run (${order.join(', ')})`);
  // Keyboard only: type a command and run it with Enter on the Run button.
  await page.focus('#command');
  await page.keyboard.type('echo from the keyboard');
  await page.focus('#run');
  await page.keyboard.press('Enter');
  await waitForRow(page, 'from the keyboard');
  t.equal(await page.evaluate(() => document.activeElement?.id), 'task-heading', 'focus moves to the task view');
  t.equal(await waitForStatus(page, ['succeeded', 'failed', 'error']), 'succeeded');
  await screenshot(page, 'ui-360');
  t.same(problems, []);
  await page.context().close();
});
