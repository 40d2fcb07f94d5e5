import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { installDir } from '../../src/paths.js';

/** Debian's chromium package (scripts/setup.sh installs it). */
export const CHROMIUM = '/usr/bin/chromium';

/** Where the browser tests save their screenshots: the test output folder. */
export const SCREENSHOTS = join(installDir(), '.test-run', 'screenshots');

/** One headless Chromium for the whole test file, closed at its end. */
export async function launchBrowser(t: { teardown(fn: () => unknown): void }): Promise<Browser> {
  // As root Chromium refuses its own sandbox; the page under test is ours, served from loopback.
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  return browser;
}

/** A page that records console errors and CSP violations (the page must cause none). */
export async function openPage(browser: Browser, width = 1100): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return { page, problems };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** The terminal's rows as the user sees them (xterm's DOM renderer), trailing blanks dropped. */
export async function terminalRows(page: Page): Promise<string[]> {
  const rows = await page.$$eval('#terminal .xterm-rows > div', (divs) => divs.map((d) => (d.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd()));
  while (rows.length > 0 && rows[rows.length - 1] === '') rows.pop();
  return rows;
}

/** Waits until the terminal shows a row containing `text`. */
export async function waitForRow(page: Page, text: string, timeout = 30_000): Promise<void> {
  await page.waitForFunction(
    (want) => [...document.querySelectorAll('#terminal .xterm-rows > div')].some((d) => (d.textContent ?? '').replace(/\u00a0/g, ' ').includes(want)),
    text,
    { timeout },
  );
}

/** Fills and sends the submit form with a command (and optionally stdin), returns the task id shown. */
export async function submitCommand(page: Page, command: string, opts: { stdin?: boolean } = {}): Promise<string> {
  await page.fill('#command', command);
  if (opts.stdin) await page.check('#stdin');
  else await page.uncheck('#stdin');
  await page.click('#run');
  await page.waitForFunction(() => !document.getElementById('task-view')!.hidden && document.getElementById('task-view')!.dataset.taskId);
  return page.$eval('#task-view', (s) => (s as HTMLElement).dataset.taskId!);
}

/** Waits for the task view to show one of these statuses. */
export async function waitForStatus(page: Page, statuses: string[], timeout = 60_000): Promise<string> {
  const handle = await page.waitForFunction(
    (want) => {
      const s = document.getElementById('task-view')!.dataset.status ?? '';
      return want.includes(s) ? s : null;
    },
    statuses,
    { timeout },
  );
  return (await handle.jsonValue()) as string;
}
