// Alerts in the web UI against a topotap running its probes on this machine: an alert
// made through the Alerts tab's form watches for a network namespace; the namespace is
// then created for real (ip netns add) and the firing, pushed on the WebSocket `Alert`
// namespace, shows up in the tab's list with the alert's name and the namespace it
// matched, while the alert's row says it is firing. A refused expression shows the
// server's reason in the form; one that fails when evaluated shows its error on its row
// while the other alert goes on. Deleting the alerts in the UI removes them from
// /api/alert.
// Needs root (ip netns); skipped otherwise. Screenshots go to
// target/ui-artifacts/alerts-*.png.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ARTIFACTS, BIN, CHROMIUM, IS_ROOT, freePort, have, launchPage, startTopotap, stopTopotap } from './harness.mjs';

const rand = crypto.randomBytes(3).toString('hex');
const NS = `uia${rand}`;
const HOST_ID = `ui-alerts-${rand}`;
const ALERT = `netns ${NS} appeared`;
// Fails at run time once the namespace exists (its name is not a number to sum).
const BROKEN = `sum of ${NS}`;

const skip = !IS_ROOT ? 'needs root (ip netns add)' : !have('ip', ['-V']) ? 'needs iproute2 (ip)' : false;

let base;
let server;
let stateDir;
let browser;
let page;
const consoleErrors = [];

/** The refused creation (400) is shown in the form on purpose. */
function expectedError(msg) {
  return /status of 400/.test(msg.text) && /\/api\/alert$/.test(msg.url || '');
}

function cleanupNetwork() {
  try {
    execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

async function api(method, p) {
  const r = await fetch(base + p, { method });
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
}

/** The alerts list's row of `name`: {state, text}, or null. */
function alertRow(name) {
  return page.evaluate((n) => {
    for (const tr of document.querySelectorAll('#alert-list tbody tr')) {
      if (tr.querySelector('.alert-name')?.textContent === n) return { state: tr.querySelector('.state')?.textContent, text: tr.textContent };
    }
    return null;
  }, name);
}

/** The fired list's rows: [{time, name, value}], newest first. */
function firings() {
  return page.$$eval('#alert-firings tbody tr', (trs) =>
    trs.map((tr) => ({ time: tr.querySelector('.fired-time')?.textContent, name: tr.querySelector('.fired-name')?.textContent, value: tr.querySelector('.fired-value')?.textContent })),
  );
}

before(async () => {
  if (skip) return;
  assert.ok(fs.existsSync(BIN), `topotap binary not found at ${BIN} (build it first or set TOPOTAP_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topotap-ui-alerts-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = await startTopotap(['allinone', '--listen', `127.0.0.1:${port}`, '--ovsdb', 'none', '--docker-socket', 'none', '--state-dir', stateDir, '--host-id', HOST_ID]);
  ({ browser, page } = await launchPage(consoleErrors, expectedError));
});

after(async () => {
  cleanupNetwork();
  await browser?.close();
  await stopTopotap(server);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

test('alerts: made in the UI, fired by a real namespace, shown live, deleted in the UI', { skip, timeout: 120000 }, async () => {
  try {
    await page.goto(`${base}/`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
    await page.waitForFunction(() => window.topotap.app.synced, null, { timeout: 15000 });
    await page.evaluate(() => (window.__noReload = true));

    await page.click('.tab[data-tab="alerts"]');
    await page.waitForSelector('#tab-alerts:not(.hidden)');
    await page.waitForFunction(() => document.querySelector('#alert-list')?.textContent.includes('no alert'), null, { timeout: 10000 });
    assert.match(await page.textContent('#alert-firings'), /nothing fired/);

    // An expression the server refuses: its reason in the form, nothing stored.
    await page.fill('#alert-name', 'broken');
    await page.fill('#alert-expression', "G.V().Has('Name'");
    await page.click('#alert-create');
    await page.waitForSelector('#alert-error:not(.hidden)', { timeout: 10000 });
    assert.match(await page.textContent('#alert-error'), /^400 Expression: Not a valid Gremlin expression/);
    assert.deepEqual((await api('GET', '/api/alert')).json(), {});

    // The alert, through the form: it holds once the namespace exists.
    await page.fill('#alert-name', ALERT);
    await page.fill('#alert-expression', `G.V().Has('Type', 'netns', 'Name', '${NS}')`);
    await page.click('#alert-create');
    // Listed once the server answered the creation (the form's error hides at once).
    await page.waitForFunction((n) => [...document.querySelectorAll('#alert-list .alert-name')].some((el) => el.textContent === n), ALERT, { timeout: 10000 });
    assert.equal(await page.isHidden('#alert-error'), true);
    const stored = Object.entries((await api('GET', '/api/alert')).json());
    assert.equal(stored.length, 1, JSON.stringify(stored));
    const [uuid, alert] = stored[0];
    assert.equal(alert.Name, ALERT);
    assert.equal(alert.Expression, `G.V().Has('Type', 'netns', 'Name', '${NS}')`);
    // Evaluated once, on nothing: armed.
    await page.waitForFunction((n) => [...document.querySelectorAll('#alert-list tbody tr')].some((tr) => tr.querySelector('.alert-name')?.textContent === n && tr.querySelector('.state')?.textContent === 'ok'), ALERT, {
      timeout: 10000,
      polling: 200,
    });
    assert.deepEqual(await firings(), []);
    // A second one, valid but failing when evaluated on the namespace.
    await page.fill('#alert-name', BROKEN);
    await page.fill('#alert-expression', `G.V().Has('Type', 'netns', 'Name', '${NS}').Values('Name').Sum()`);
    await page.click('#alert-create');
    await page.waitForFunction((n) => [...document.querySelectorAll('#alert-list tbody tr')].some((tr) => tr.querySelector('.alert-name')?.textContent === n), BROKEN, { timeout: 10000 });
    assert.equal(await page.isHidden('#alert-error'), true);
    const broken = Object.entries((await api('GET', '/api/alert')).json()).find(([, a]) => a.Name === BROKEN)?.[0];
    assert.ok(broken, 'the second alert is not stored');
    await shot('alerts-01-created');

    // Looking at another tab meanwhile: the firing still arrives, and the tab counts it.
    await page.click('.tab[data-tab="node"]');
    const before = Date.now();
    execFileSync('ip', ['netns', 'add', NS]);
    await page.waitForSelector('#alert-badge', { timeout: 15000 });
    assert.equal(await page.textContent('#alert-badge'), '1');
    await page.click('.tab[data-tab="alerts"]');
    assert.equal(await page.$('#alert-badge'), null, 'the count stays after the tab was opened');
    const fired = await firings();
    assert.equal(fired.length, 1, JSON.stringify(fired));
    assert.equal(fired[0].name, ALERT);
    assert.equal(fired[0].value, `${NS} (netns)`);
    // The firing's time is now's (shown in the page's locale, as the page formats it).
    const shownTime = await page.$eval('#alert-firings tbody tr .fired-time', (el) => Date.parse(el.title));
    assert.ok(shownTime >= before - 2000 && shownTime <= Date.now() + 2000, `fired at ${new Date(shownTime).toISOString()}`);
    // The matched namespace is a link to its node.
    const nsId = await page.evaluate((ns) => [...window.topotap.graph.nodes.values()].find((n) => n.Metadata?.Type === 'netns' && n.Metadata?.Name === ns)?.ID, NS);
    assert.ok(nsId, 'the namespace is not in the page graph');
    assert.equal(await page.getAttribute('#alert-firings .fired-value button.link', 'data-node'), nsId);
    // The row: firing, fired once.
    await page.waitForFunction(
      (n) => [...document.querySelectorAll('#alert-list tbody tr')].some((tr) => tr.querySelector('.alert-name')?.textContent === n && tr.querySelector('.state')?.textContent === 'firing'),
      ALERT,
      { timeout: 10000, polling: 200 },
    );
    const row = await alertRow(ALERT);
    assert.match(row.text, /on graph changes/);
    // The failing one says why, and never fired.
    await page.waitForFunction(
      (n) => [...document.querySelectorAll('#alert-list tbody tr')].some((tr) => tr.querySelector('.alert-name')?.textContent === n && tr.querySelector('.state')?.textContent === 'error'),
      BROKEN,
      { timeout: 10000, polling: 200 },
    );
    const brokenRow = await page.textContent(`#alert-list tbody tr:has(.alert-name:text-is("${BROKEN}")) .alert-err`, { timeout: 5000 });
    assert.match(brokenRow, /^expression: .*Sum: value 1 has a non-numeric value/);
    assert.ok((await firings()).every((f) => f.name === ALERT));
    const listed = (await api('GET', '/api/alert')).json()[uuid];
    assert.equal(listed.FireCount, 1, JSON.stringify(listed));
    assert.equal(listed.State, 'firing');
    await shot('alerts-02-fired');

    // The link selects the namespace in the Node tab.
    await page.click('#alert-firings .fired-value button.link');
    await page.waitForFunction((ns) => document.querySelector('#node-name')?.textContent === ns, NS, { timeout: 5000 });
    await page.click('.tab[data-tab="alerts"]');

    // Gone and back: the alert re-arms, then fires again; the newest firing comes first.
    execFileSync('ip', ['netns', 'del', NS]);
    await page.waitForFunction(
      (n) => [...document.querySelectorAll('#alert-list tbody tr')].some((tr) => tr.querySelector('.alert-name')?.textContent === n && tr.querySelector('.state')?.textContent === 'ok'),
      ALERT,
      { timeout: 15000, polling: 200 },
    );
    execFileSync('ip', ['netns', 'add', NS]);
    await page.waitForFunction(() => document.querySelectorAll('#alert-firings tbody tr').length === 2, null, { timeout: 15000, polling: 200 });
    const again = await firings();
    assert.deepEqual(
      again.map((f) => [f.name, f.value]),
      [
        [ALERT, `${NS} (netns)`],
        [ALERT, `${NS} (netns)`],
      ],
    );
    const times = await page.$$eval('#alert-firings tbody tr .fired-time', (els) => els.map((el) => Date.parse(el.title)));
    assert.ok(times[0] >= times[1], `newest first: ${times}`);

    // Deleted through their rows: gone from the list and from the server.
    await page.click(`#alert-list tbody tr:has(.alert-name:text-is("${ALERT}")) button:has-text("Delete")`);
    await page.waitForFunction((n) => ![...document.querySelectorAll('#alert-list .alert-name')].some((el) => el.textContent === n), ALERT, { timeout: 10000 });
    assert.equal((await api('GET', `/api/alert/${uuid}`)).status, 404);
    assert.deepEqual(Object.keys((await api('GET', '/api/alert')).json()), [broken]);
    await page.click(`#alert-list tbody tr:has(.alert-name:text-is("${BROKEN}")) button:has-text("Delete")`);
    await page.waitForFunction(() => document.querySelector('#alert-list')?.textContent.includes('no alert'), null, { timeout: 10000 });
    assert.deepEqual((await api('GET', '/api/alert')).json(), {});
    // What fired stays listed until cleared.
    assert.equal((await firings()).length, 2);
    await page.click('#alert-firings-clear');
    assert.match(await page.textContent('#alert-firings'), /nothing fired/);
    await shot('alerts-03-deleted');

    assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was reloaded');
    assert.deepEqual(
      consoleErrors.filter((m) => !m.expected),
      [],
    );
    assert.ok(consoleErrors.some((m) => m.expected), 'the refused creation did not reach the server');
  } finally {
    cleanupNetwork();
  }
});
