// Drive a real VS Code (code-server in Debian's Chromium, through playwright-core) the way
// a developer would: open a restricted and a public file, read the Onbox status bar item,
// type until the on-box model shows ghost text, accept it with Tab, run the commands.
//
//   node e2e/run.mjs CONFIG.json
//
// CONFIG: {url, folder, chromium, screenshots, out, restricted, public, typeLine,
//          journalDir, timeoutMs}. Observations (no verdicts) are written as JSON to CONFIG.out;
// tests/e2e/test_vscode_e2e.py starts code-server, runs this, and asserts on them.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const timeout = cfg.timeoutMs ?? 120_000;
const STATUS = '[id="onbox.onbox.status"]';
const GHOST = '.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text';
const out = { steps: [], screenshots: [], files: {}, errors: [] };
mkdirSync(cfg.screenshots, { recursive: true });

const started = Date.now();
function step(name, extra = {}) {
  const entry = { name, atMs: Date.now() - started, ...extra };
  out.steps.push(entry);
  console.error(`[e2e ${String(entry.atMs).padStart(6)} ms] ${name} ${JSON.stringify(extra)}`);
}

async function shot(page, name) {
  const file = join(cfg.screenshots, `${String(out.screenshots.length + 1).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  out.screenshots.push(file);
}

async function waitFor(what, probe, ms = timeout) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) {
      return last;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
}

async function statusText(page) {
  const item = page.locator(STATUS);
  if ((await item.count()) === 0) {
    return undefined;
  }
  return {
    text: (await item.innerText()).replace(/\s+/g, ' ').trim(),
    spinning: (await item.locator('.codicon-modifier-spin').count()) > 0,
    warning: (await item.evaluate((el) => el.classList.contains('warning-kind') || el.classList.contains('error-kind'))),
  };
}

async function openFile(page, rel) {
  const name = rel.split('/').pop();
  await page.keyboard.press('Control+P');
  await page.waitForSelector('.quick-input-widget .quick-input-box input', { state: 'visible' });
  await page.keyboard.type(rel);
  // The list filters asynchronously: wait until the row Enter would pick is the file.
  await waitFor(`quick open to select ${rel}`, async () =>
    (await page.locator('.quick-input-widget .monaco-list-row.focused', { hasText: name }).count()) > 0,
  );
  await page.keyboard.press('Enter');
  await waitFor(`the editor tab of ${name}`, async () =>
    (await page.locator('.tabs-container .tab.active', { hasText: name }).count()) > 0,
  );
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
}

/** The label shown once the server has classified the active file and the model is loaded. */
async function settledStatus(page, what) {
  return waitFor(`the status bar label of ${what}`, async () => {
    const s = await statusText(page);
    return s && s.text.includes('·') && !s.spinning ? s : undefined;
  });
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  await page.waitForSelector('.quick-input-widget .quick-input-box input', { state: 'visible' });
  await page.keyboard.type(title);
  await waitFor(`the command "${title}" selected in the palette`, async () =>
    (await page.locator('.quick-input-widget .monaco-list-row.focused', { hasText: title }).count()) > 0,
  );
  await page.keyboard.press('Enter');
}

/** Pids of `onbox serve` processes started for this test (matched by ONBOX_JOURNAL_DIR). */
function serverPids() {
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (argv.includes('serve') && argv.some((a) => a.endsWith('onbox')) && environ.includes(`ONBOX_JOURNAL_DIR=${cfg.journalDir}`)) {
        pids.push(Number(entry));
      }
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

/** The text of the visible webview panel (VS Code nests it in two iframes). */
async function webviewText(page, mustContain) {
  for (const frame of page.frames()) {
    if (frame === page.mainFrame()) {
      continue;
    }
    const text = await frame.locator('body').innerText({ timeout: 2000 }).catch(() => '');
    if (text.includes(mustContain)) {
      return text.replace(/\s+/g, ' ').trim();
    }
  }
  return undefined;
}

/**
 * Run a command whose answer is a notification, and return the notification's text.
 * The palette occasionally swallows an Enter while its list re-renders (seen about once in
 * five runs on a loaded 2-core machine), so the command is retried; every command used
 * this way is idempotent.
 */
async function commandWithToast(page, title, prefixes, tries = 3) {
  for (let attempt = 1; attempt <= tries; attempt++) {
    await runCommand(page, title);
    try {
      return await waitFor(`the notification of "${title}"`, async () => {
        for (const prefix of prefixes) {
          const text = await toast(page, prefix);
          if (text) {
            return text;
          }
        }
        return undefined;
      }, attempt < tries ? 30_000 : timeout);
    } catch (error) {
      if (attempt === tries) {
        throw error;
      }
      step(`retrying "${title}"`, { attempt });
      await page.keyboard.press('Escape');
    }
  }
  throw new Error('unreachable');
}

async function toast(page, prefix) {
  const t = page.locator('.notification-toast', { hasText: prefix });
  return (await t.count()) > 0 ? (await t.first().innerText()).replace(/\s+/g, ' ').trim() : undefined;
}

/** The ghost text's visible pieces (inline part and extra lines; DOM order, not text order). */
async function ghostText(page) {
  const parts = await page.locator(GHOST).allInnerTexts();
  const text = parts.join('\n').replace(/\u00a0/g, ' ');
  return text.trim() === '' ? undefined : text;
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  page = await context.newPage();
  page.on('pageerror', (e) => out.errors.push(`pageerror: ${e.message}`));
  await page.goto(`${cfg.url}/?folder=${encodeURIComponent(cfg.folder)}`);
  await page.waitForSelector('.monaco-workbench .part.statusbar', { timeout });
  step('workbench loaded');
  await waitFor('the Onbox status bar item', async () => (await page.locator(STATUS).count()) > 0);
  step('status item present', await statusText(page));

  // 1. The restricted file: label, destination, then ghost text from the on-box model.
  await openFile(page, cfg.restricted);
  out.files.restricted = await settledStatus(page, cfg.restricted);
  step('restricted status', out.files.restricted);
  await shot(page, 'restricted-status');
  await page.locator(STATUS).hover();
  out.files.restrictedTooltip = await waitFor('the status tooltip', async () => {
    const hover = page.locator('.workbench-hover, .monaco-hover', { hasText: 'Onbox' });
    return (await hover.count()) > 0 ? (await hover.first().innerText()).trim() : undefined;
  }, 30_000);
  step('tooltip', { text: out.files.restrictedTooltip });
  await shot(page, 'tooltip');
  await page.mouse.move(700, 400);
  await page.keyboard.press('Escape');

  await page.keyboard.press('Control+End');
  await page.keyboard.type(cfg.typeLine);
  await page.keyboard.press('Enter');
  step('typed', { line: cfg.typeLine });
  let ghost;
  const deadline = Date.now() + timeout;
  while (ghost === undefined && Date.now() < deadline) {
    try {
      ghost = await waitFor('ghost text', () => ghostText(page), 15_000);
    } catch {
      // The first request may have come while the model was still loading: ask again,
      // as a user would with Alt+\ (Trigger Inline Suggestion).
      step('no ghost text yet; triggering again', await statusText(page));
      await page.keyboard.press('Alt+Backslash');
    }
  }
  if (ghost === undefined) {
    throw new Error('no ghost text appeared');
  }
  out.ghost = ghost;
  step('ghost text shown', { ghost });
  await shot(page, 'ghost-text');
  await page.keyboard.press('Tab');
  await waitFor('the ghost text to be accepted', async () => (await ghostText(page)) === undefined, 30_000);
  step('accepted with Tab');
  await page.keyboard.press('Control+S');
  await waitFor('the save to finish', async () =>
    (await page.locator('.tabs-container .tab.active.dirty').count()) === 0, 30_000);
  step('saved');
  await shot(page, 'accepted');

  // 2. The public file.
  await openFile(page, cfg.public);
  out.files.public = await waitFor(`the status bar label of ${cfg.public}`, async () => {
    const s = await statusText(page);
    return s && s.text.includes('·') && s.text !== out.files.restricted.text ? s : undefined;
  }, 30_000).catch(async () => statusText(page));
  step('public status', out.files.public);
  await shot(page, 'public-status');

  // 3. Click the status item: the Explain view of the public file.
  await page.locator(STATUS).click();
  await page.mouse.move(700, 400); // away from the item, so its tooltip closes
  out.explainTab = await waitFor('the Explain view', async () => {
    const tab = page.locator('.tabs-container .tab', { hasText: 'Onbox:' });
    return (await tab.count()) > 0 ? (await tab.first().innerText()).trim() : undefined;
  });
  out.explainBody = await waitFor('the Explain panel content', () => webviewText(page, 'why this file is'), 30_000);
  step('explain view', { tab: out.explainTab, body: out.explainBody.slice(0, 200) });
  await shot(page, 'explain');

  // 4. Onbox: Verify Journal shows the server's verdict in a notification.
  out.verifyMessage = await commandWithToast(page, 'Onbox: Verify Journal', ['Onbox journal']);
  step('verify notification', { message: out.verifyMessage });
  await shot(page, 'verify');

  // 5. Onbox: Pull Policy and Onbox: Show Journal Stats.
  out.pullMessage = await commandWithToast(page, 'Onbox: Pull Policy', ['Onbox applied policy', 'Onbox policy unchanged']);
  step('pull notification', { message: out.pullMessage });
  await runCommand(page, 'Onbox: Show Journal Stats');
  out.statsBody = await waitFor('the Journal Stats panel', () => webviewText(page, 'Onbox journal: last 7 days'), 30_000);
  step('journal stats', { body: out.statsBody.slice(0, 300) });
  await shot(page, 'journal-stats');

  // 6. Kill the server: the extension restarts it (after a backoff) and the label returns.
  const before = serverPids();
  out.restart = { before, seen: [] };
  for (const pid of before) {
    process.kill(pid, 'SIGKILL');
  }
  step('killed onbox serve', { pids: before });
  await waitFor('the status item to show the restart', async () => {
    const s = await statusText(page);
    if (s && !out.restart.seen.includes(s.text)) {
      out.restart.seen.push(s.text);
    }
    return s?.text.includes('restarting');
  }, 30_000).catch(() => undefined);
  await page.locator('.tabs-container .tab', { hasText: 'greet.py' }).first().click();
  out.restart.after = await waitFor('the label after the restart', async () => {
    const s = await statusText(page);
    if (s && !out.restart.seen.includes(s.text)) {
      out.restart.seen.push(s.text);
    }
    const pids = serverPids();
    return s && s.text.includes('·') && pids.length > 0 && !pids.some((p) => before.includes(p))
      ? { ...s, pids }
      : undefined;
  });
  step('restarted', out.restart);
  await shot(page, 'restarted');

  // 7. Onbox: Restart Server replaces the client and the server; completions still work.
  const beforeManual = serverPids();
  await runCommand(page, 'Onbox: Restart Server');
  out.manualRestart = await waitFor('the label after Restart Server', async () => {
    const s = await statusText(page);
    const pids = serverPids();
    return s && s.text.includes('·') && !s.spinning && pids.length === 1 && !beforeManual.includes(pids[0])
      ? { ...s, before: beforeManual, pids }
      : undefined;
  });
  step('manual restart', out.manualRestart);
  await page.locator('.tabs-container .tab', { hasText: 'charge.py' }).first().click();
  // On a new first line, so that the new function starts at column 0 and the body line
  // has nothing after the cursor (the module docstring moves down a line): a suggestion
  // must parse where it is put, and nothing inserted before the docstring on its own line
  // could.
  await page.keyboard.press('Control+Home');
  await page.keyboard.press('Enter');
  await page.keyboard.press('ArrowUp');
  await page.keyboard.type('def fee_for(amount: int) -> int:');
  await page.keyboard.press('Enter');
  out.ghostAfterRestart = await waitFor('ghost text after Restart Server', async () => {
    const g = await ghostText(page);
    if (g === undefined) {
      await page.keyboard.press('Alt+Backslash');
    }
    return g;
  });
  step('ghost text after restart', { ghost: out.ghostAfterRestart });
  out.errorToasts = await page.locator('.notification-toast.error, .notification-toast .codicon-error').count();
  await shot(page, 'after-restart');
} catch (error) {
  out.errors.push(String(error?.stack ?? error));
  if (page) {
    await shot(page, 'failure').catch(() => undefined);
  }
} finally {
  out.elapsedMs = Date.now() - started;
  writeFileSync(cfg.out, JSON.stringify(out, null, 2));
  await browser.close();
}
process.exit(out.errors.some((e) => !e.startsWith('pageerror')) ? 1 : 0);
