// Browser tests of the bundled web UI: a real topotap (TOPOTAP_BIN, --no-probes) on a
// free port, Debian's Chromium driven by playwright-core. Nothing is built or
// downloaded here. Screenshots go to target/ui-artifacts/. live.test.mjs runs the UI
// against topotap's probes on this machine instead; harness.mjs has what both share.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ARTIFACTS, BIN, CHROMIUM, freePort, launchPage, startTopotap, stopTopotap } from './harness.mjs';
import { bigHost, publish, smallHost } from './seed.mjs';

let port;
let base;
let server;
let stateDir;
let browser;
let page;
let seeded;
const consoleErrors = [];
let wsDownWindow = false;

function startServer() {
  return startTopotap(['allinone', '--listen', `127.0.0.1:${port}`, '--no-probes', '--host-id', 'ui-test', '--state-dir', stateDir]);
}

const stopServer = stopTopotap;

async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

async function api(method, p, body) {
  const r = await fetch(base + p, { method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
}

/** Console errors the UI is expected to cause, each for a reason it handles. */
function expectedError(msg) {
  const url = msg.url || '';
  if (/Failed to load resource: the server responded with a status of 404/.test(msg.text) && /\/api\/(capture|injectpacket)$/.test(url)) return true; // endpoint probe
  if (/status of 400/.test(msg.text) && /\/api\/topology$/.test(url)) return true; // invalid query, shown inline
  if (wsDownWindow && /WebSocket connection to .* failed/.test(msg.text)) return true; // server down on purpose
  return false;
}

function unexpectedErrors() {
  return consoleErrors.filter((m) => !m.expected);
}

async function waitLive() {
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
}

/** Screen position of a displayed node, in page coordinates. */
async function nodeScreenPos(id) {
  return page.evaluate((nid) => {
    const v = window.topotap.view;
    const r = v.view.rep.get(nid);
    const p = v.layout.pos.get(r);
    const t = v.renderer.t;
    const box = v.canvas.getBoundingClientRect();
    return { x: box.left + p.x * t.k + t.x, y: box.top + p.y * t.k + t.y };
  }, id);
}

async function waitLayoutSettled(timeout = 20000) {
  await page.waitForFunction(() => !window.topotap.view.layout.running, null, { timeout, polling: 100 });
}

// Clicks a node where it is drawn until the node panel shows it. A graph event
// can restart the layout between reading the position and the click, so a miss
// is retried from the new position; five misses fail the test.
async function selectNodeByClick(id, name) {
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    await waitLayoutSettled();
    const p = await nodeScreenPos(id);
    await page.mouse.click(p.x, p.y);
    try {
      await page.waitForFunction((n) => document.querySelector('#node-name')?.textContent === n, name, { timeout: 1500 });
      return;
    } catch {
      last = await page.evaluate(() => document.querySelector('#node-name')?.textContent ?? '(no node selected)');
    }
  }
  assert.fail(`clicking ${name} five times selected ${last}`);
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `topotap binary not found at ${BIN} (build it first or set TOPOTAP_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topotap-ui-'));
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = await startServer();
  seeded = smallHost('ui-test');
  await publish(base, seeded.topo);
  ({ browser, page } = await launchPage(consoleErrors, expectedError));
});

after(async () => {
  await browser?.close();
  await stopServer(server);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

test('serves the UI with its content types and nothing from the network', async () => {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  const js = await fetch(`${base}/ui/js/main.js`);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  const css = await fetch(`${base}/ui/app.css`);
  assert.match(css.headers.get('content-type'), /^text\/css/);
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${base}/`);
  await waitLive();
  const foreign = requests.filter((u) => !u.startsWith(base) && !u.startsWith(`ws://127.0.0.1:${port}`) && !u.startsWith('data:'));
  assert.deepEqual(foreign, [], 'the page loaded something from elsewhere');
});

test('renders the topology with no console errors', async () => {
  await page.goto(`${base}/`);
  await waitLive();
  await page.waitForFunction((n) => window.topotap.graph.nodes.size === n, seeded.topo.nodes.length, { timeout: 10000 });
  await waitLayoutSettled();
  const want = `${seeded.topo.nodes.length} nodes · ${seeded.topo.edges.length} edges`;
  await page.waitForFunction((w) => document.querySelector('#counts').textContent.startsWith(w), want, { timeout: 5000 });
  const legend = await page.textContent('#legend');
  for (const label of ['host', 'netns', 'veth', 'bridge', 'ovsbridge', 'ovsport', 'internal / patch']) assert.ok(legend.includes(label), `legend lacks ${label}`);
  await shot('01-topology');
  assert.deepEqual(unexpectedErrors(), []);
});

test('a node added through the API appears without reload', async () => {
  await page.evaluate(() => (window.__noReload = true));
  const id = 'ui-test-added';
  let r = await api('POST', '/api/node', { ID: id, Metadata: { Name: 'added-live', Type: 'veth', MTU: 9000 } });
  assert.equal(r.status, 201, r.text);
  r = await api('POST', '/api/edge', { ID: 'ui-test-added-own', Parent: seeded.host, Child: id, Metadata: { RelationType: 'ownership' } });
  assert.equal(r.status, 201, r.text);
  await page.waitForFunction((nid) => window.topotap.view.view?.rep.get(nid) === nid, id, { timeout: 10000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was reloaded');
  // Click it: the node panel shows its metadata.
  await selectNodeByClick(id, 'added-live');
  assert.match(await page.textContent('#tab-node'), /9000/);
  // A live update of the selected node refreshes the panel.
  r = await api('PATCH', `/api/node/${id}`, [{ op: 'add', path: '/Metadata/MTU', value: 1450 }]);
  assert.equal(r.status, 200, r.text);
  await page.waitForFunction(() => document.querySelector('#tab-node').textContent.includes('1450'), null, { timeout: 10000 });
  // Deleting it removes it from the view.
  r = await api('DELETE', `/api/node/${id}`);
  assert.equal(r.status, 200, r.text);
  await page.waitForFunction((nid) => !window.topotap.graph.nodes.has(nid), id, { timeout: 10000 });
  assert.deepEqual(unexpectedErrors(), []);
});

test('node panel shows counters and the metadata tree', async () => {
  const vm1 = seeded.topo.nodes.find((n) => n.Metadata.Name === 'vm1-veth0');
  await selectNodeByClick(vm1.ID, 'vm1-veth0');
  const panel = await page.textContent('#tab-node');
  assert.match(panel, /Interface counters/);
  assert.match(panel, /RxPackets/);
  assert.match(panel, /no capture on this node/);
  // Open a branch of the metadata tree.
  await page.click('#tab-node .tree summary');
  await shot('02-node-panel');
  assert.deepEqual(unexpectedErrors(), []);
});

test('node panel: a container in a namespace, seeded as the containers probe writes it', async () => {
  // tests/ui/containers.test.mjs does the same with a real runc container (as root).
  const ns = seeded.topo.nodes.find((n) => n.Metadata.Name === 'vm3');
  await selectNodeByClick(ns.ID, 'vm3');
  assert.equal(await page.$('#node-container'), null, 'a namespace without a container has no Container section');
  const cid = 'f3a1c0ffee4242d00dfeedbeef0123456789abcdef0123456789abcdef012345';
  const container = { ID: cid, Name: 'web-1', Image: 'nginx:1.25', Runtime: 'docker', Status: 'running', InitProcessPID: 4242, Labels: { app: 'web', 'io.kubernetes.pod.name': 'web-1-abc' }, PodName: 'web-1-abc', PodNamespace: 'shop' };
  let r = await api('POST', '/api/node', { ID: 'ui-test-ctr', Metadata: { Name: 'web-1', Type: 'container', Manager: 'docker', Container: container } });
  assert.equal(r.status, 201, r.text);
  r = await api('POST', '/api/edge', { ID: 'ui-test-ctr-own', Parent: ns.ID, Child: 'ui-test-ctr', Metadata: { RelationType: 'ownership' } });
  assert.equal(r.status, 201, r.text);
  // The namespace's panel, still selected, gains the section when the container arrives.
  await page.waitForSelector('#node-container', { timeout: 10000 });
  const facts = () =>
    page.$$eval('#node-container dl.facts dt', (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));
  const want = { Name: 'web-1', ID: 'f3a1c0ffee42…', Image: 'nginx:1.25', Runtime: 'docker', Status: 'running', PID: '4242', Pod: 'shop/web-1-abc' };
  assert.deepEqual(await facts(), want);
  assert.equal(await page.getAttribute('#node-container .container-id', 'title'), cid);
  const labels = await page.$$eval('#node-container .container-labels tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.deepEqual(labels, [
    ['app', 'web'],
    ['io.kubernetes.pod.name', 'web-1-abc'],
  ]);
  await shot('02b-netns-container');
  // The name leads to the container node, whose panel shows the same.
  await page.click('#node-container .container-name button.link');
  await page.waitForFunction(() => document.querySelector('#node-name')?.textContent === 'web-1', null, { timeout: 5000 });
  assert.deepEqual(await facts(), want);
  assert.equal(await page.$('#node-container .container-name button.link'), null);
  // Back on the namespace: the section goes with the container.
  await page.evaluate((id) => window.topotap.app.selectNode(id), ns.ID);
  await page.waitForFunction(() => document.querySelector('#node-name')?.textContent === 'vm3', null, { timeout: 5000 });
  await page.waitForSelector('#node-container', { timeout: 5000 });
  r = await api('DELETE', '/api/node/ui-test-ctr');
  assert.equal(r.status, 200, r.text);
  await page.waitForSelector('#node-container', { state: 'detached', timeout: 10000 });
  await page.waitForFunction((n) => window.topotap.graph.nodes.size === n, seeded.topo.nodes.length, { timeout: 5000 });
  assert.deepEqual(unexpectedErrors(), []);
});

test('groups collapse and expand', async () => {
  const ns = seeded.topo.nodes.find((n) => n.Metadata.Name === 'vm1');
  const shown = () => page.evaluate(() => window.topotap.view.view.nodes.length);
  // The view follows the graph's last change (the test before deletes a node) a moment
  // later: count what it shows once that count holds still.
  await waitLayoutSettled();
  let before = await shown();
  for (let i = 0; i < 25; i++) {
    await page.waitForTimeout(200);
    const now = await shown();
    if (now === before) break;
    before = now;
  }
  await page.evaluate((id) => window.topotap.view.setOverride(id, true), ns.ID);
  await page.waitForFunction((n) => window.topotap.view.view.nodes.length === n - 2, before, { timeout: 5000 });
  // A click on the collapsed group expands it.
  await waitLayoutSettled();
  const p = await nodeScreenPos(ns.ID);
  await page.mouse.click(p.x, p.y);
  await page.waitForFunction((n) => window.topotap.view.view.nodes.length === n, before, { timeout: 5000 });
});

test('the Gremlin console shows results as a table and errors with their column', async () => {
  await page.click('.tab[data-tab="console"]');
  await page.fill('#console-query', "G.V().Has('Type', 'netns')");
  await page.click('#console-run');
  await page.waitForSelector('#console-result table.grid');
  const rows = await page.$$eval('#console-result tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.equal(rows.length, 4);
  assert.deepEqual(rows.map((r) => r[1]).sort(), ['vm1', 'vm2', 'vm3', 'vm4']);
  assert.ok(rows.every((r) => r[2] === 'netns' && r[3] === 'ui-test'));
  await shot('03-console-table');

  // A scalar is shown as JSON.
  await page.fill('#console-query', "G.V().Has('Type', 'veth').Count()");
  await page.click('#console-run');
  await page.waitForFunction(() => document.querySelector('#console-result pre.json')?.textContent.trim() === '8', null, { timeout: 5000 });

  // A syntax error: the server's message and a caret at its column.
  const bad = "G.V().Has('Type', x)";
  await page.fill('#console-query', bad);
  await page.click('#console-run');
  await page.waitForSelector('#console-error:not(.hidden)');
  const api400 = await api('POST', '/api/topology', { GremlinQuery: bad });
  assert.equal(api400.status, 400);
  const m = /line 1, column (\d+)/.exec(api400.text);
  assert.ok(m, `no position in ${api400.text}`);
  const col = Number(m[1]);
  const errText = await page.textContent('#console-error');
  assert.ok(errText.includes(api400.text.trim()), `error box shows "${errText}"`);
  assert.equal(await page.textContent('#console-caret mark'), bad[col - 1]);
  assert.match(await page.textContent('#console-caret .caret'), new RegExp(`^ {${col - 1}}\\^ column ${col}$`));
  const sel = await page.$eval('#console-query', (t) => t.selectionStart);
  assert.equal(sel, col - 1);
  await shot('04-console-error');
  assert.deepEqual(unexpectedErrors(), []);
});

test('highlight and filter boxes', async () => {
  await page.fill('#highlight', "G.V().Has('Type', 'veth')");
  await page.press('#highlight', 'Enter');
  await page.waitForFunction(() => window.topotap.view.highlight?.size === 8, null, { timeout: 5000 });
  await shot('05-highlight');
  await page.click('#highlight-clear');

  // The filter narrows what is subscribed to, not just what is drawn.
  await page.fill('#filter', "G.V().Has('Type', 'netns')");
  await page.press('#filter', 'Enter');
  await page.waitForFunction(() => window.topotap.graph.nodes.size === 4, null, { timeout: 5000 });
  // A bad filter is reported and the previous one stays.
  await page.fill('#filter', "G.V().Has('Type'");
  await page.press('#filter', 'Enter');
  await page.waitForSelector('#query-errors:not(.hidden)');
  assert.match(await page.textContent('#query-errors'), /Filter: .*column/);
  assert.equal(await page.evaluate(() => window.topotap.graph.nodes.size), 4);
  await shot('06-filter-error');
  await page.fill('#filter', '');
  await page.press('#filter', 'Enter');
  await page.waitForFunction((n) => window.topotap.graph.nodes.size === n, seeded.topo.nodes.length, { timeout: 5000 });
  assert.deepEqual(unexpectedErrors(), []);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A Gremlin query's answer through the API, as text. */
async function gremlinText(q) {
  const r = await api('POST', '/api/topology', { GremlinQuery: q });
  assert.equal(r.status, 200, `${q}: ${r.text}`);
  return r.text.trim();
}

/** Polls `q` until its answer is `want` (the history writes in batches). */
async function waitAnswer(q, want, timeout = 15000) {
  const end = Date.now() + timeout;
  let got;
  while (Date.now() < end) {
    got = await gremlinText(q);
    if (got === want) return;
    await sleep(200);
  }
  assert.fail(`${q} answered ${got}, not ${want}`);
}

/** Moves the time slider to `secs` from now (0: live), as a drag released there does. */
async function setSlider(secs) {
  await page.$eval(
    '#time-slider',
    (el, v) => {
      el.value = String(v);
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    },
    secs,
  );
}

test('time slider: a deleted node is shown in the past and gone back in live', async () => {
  await page.click('.tab[data-tab="node"]');
  await page.waitForSelector('#time-bar:not(.hidden)', { timeout: 10000 });
  assert.equal(await page.textContent('#time-label'), 'live');
  const id = 'ui-test-past';
  let r = await api('POST', '/api/node', { ID: id, Metadata: { Name: 'past-node', Type: 'veth', MTU: 1234 } });
  assert.equal(r.status, 201, r.text);
  r = await api('POST', '/api/edge', { ID: 'ui-test-past-own', Parent: seeded.host, Child: id, Metadata: { RelationType: 'ownership' } });
  assert.equal(r.status, 201, r.text);
  await page.waitForFunction((nid) => window.topotap.graph.nodes.has(nid), id, { timeout: 10000 });
  await sleep(2000);
  const seen = Date.now();
  await sleep(2000);
  r = await api('DELETE', `/api/node/${id}`);
  assert.equal(r.status, 200, r.text);
  await page.waitForFunction((nid) => !window.topotap.graph.nodes.has(nid), id, { timeout: 10000 });
  await waitAnswer(`G.At(${seen}).V().Has('@ID', '${id}').Count()`, '1');
  const liveCount = await page.evaluate(() => window.topotap.graph.nodes.size);

  // Back to when it existed: it is displayed, with its ownership edge, and selectable.
  await setSlider(Math.round((seen - Date.now()) / 1000));
  await page.waitForSelector('#time-bar[data-state="past"]', { timeout: 10000 });
  await page.waitForFunction((nid) => window.topotap.view.view?.rep.get(nid) === nid, id, { timeout: 10000 });
  assert.equal(await page.evaluate(() => window.topotap.graph.nodes.size), liveCount + 1);
  assert.ok(await page.evaluate((eid) => window.topotap.graph.edges.has(eid), 'ui-test-past-own'));
  assert.ok(await page.isVisible('#time-banner-live'));
  assert.match(await page.textContent('#time-label'), /^Viewing the topology at .* ago\)$/);
  assert.equal(await page.textContent('#time-banner-note'), 'live updates paused');
  assert.ok(await page.$eval('#stage', (s) => s.classList.contains('past')));
  await selectNodeByClick(id, 'past-node');
  assert.match(await page.textContent('#tab-node'), /1234/);
  // The highlight asks about the time shown.
  await page.fill('#highlight', "G.V().Has('Name', 'past-node')");
  await page.press('#highlight', 'Enter');
  await page.waitForFunction((nid) => window.topotap.view.highlight?.has(nid), id, { timeout: 5000 });
  await page.click('#highlight-clear');
  await shot('12-time-past');
  // The highlight zoomed in on what it found: the whole graph again for what follows.
  await page.click('#zoom-fit');

  // Live changes wait while the past is shown.
  const later = 'ui-test-later';
  r = await api('POST', '/api/node', { ID: later, Metadata: { Name: 'later-node', Type: 'veth' } });
  assert.equal(r.status, 201, r.text);
  await sleep(1000);
  assert.equal(await page.evaluate((nid) => window.topotap.graph.nodes.has(nid), later), false, 'a live event reached the past view');

  // Back to live: the deleted node is gone, the one made meanwhile is there.
  await page.click('#time-banner-live');
  await page.waitForSelector('#time-bar[data-state="live"]');
  await page.waitForFunction(([gone, added]) => !window.topotap.graph.nodes.has(gone) && window.topotap.graph.nodes.has(added), [id, later], { timeout: 10000 });
  assert.ok(await page.isHidden('#time-banner'));
  assert.equal(await page.textContent('#time-label'), 'live');
  assert.equal(await page.$eval('#time-slider', (el) => el.value), '0');
  // The live view follows events again.
  r = await api('DELETE', `/api/node/${later}`);
  assert.equal(r.status, 200, r.text);
  await page.waitForFunction((nid) => !window.topotap.graph.nodes.has(nid), later, { timeout: 10000 });

  // The slider's right end is live too.
  await setSlider(Math.round((seen - Date.now()) / 1000));
  await page.waitForFunction((nid) => window.topotap.graph.nodes.has(nid), id, { timeout: 10000 });
  await setSlider(0);
  await page.waitForFunction((nid) => !window.topotap.graph.nodes.has(nid), id, { timeout: 10000 });
  assert.deepEqual(unexpectedErrors(), []);
});

test('node panel charts an interface over the last hour', async () => {
  const id = 'ui-test-metric';
  const t0 = Date.now() - 60000;
  // Four sampling intervals of 10 s: 1000, 2000, 3000, 4000 bytes/s received.
  const sample = (i) => ({ RxBytes: 10000 * (i + 1), TxBytes: 5000 * (i + 1), RxPackets: 10 * (i + 1), TxPackets: 5 * (i + 1), Start: t0 + i * 10000, Last: t0 + (i + 1) * 10000 });
  const total = (i) => ({ ...sample(i), Start: t0 });
  let r = await api('POST', '/api/node', { ID: id, Metadata: { Name: 'metric-if', Type: 'veth', Metric: total(0), LastUpdateMetric: sample(0) } });
  assert.equal(r.status, 201, r.text);
  r = await api('POST', '/api/edge', { ID: 'ui-test-metric-own', Parent: seeded.host, Child: id, Metadata: { RelationType: 'ownership' } });
  assert.equal(r.status, 201, r.text);
  for (let i = 1; i < 4; i++) {
    r = await api('PATCH', `/api/node/${id}`, [
      { op: 'add', path: '/Metadata/LastUpdateMetric', value: sample(i) },
      { op: 'add', path: '/Metadata/Metric', value: total(i) },
    ]);
    assert.equal(r.status, 200, r.text);
  }
  await waitAnswer(`G.Context('NOW', 3600).V().Has('@ID', '${id}').Metrics().Sum('RxPackets')`, '100');

  await page.waitForFunction((nid) => window.topotap.view.view?.rep.get(nid) === nid, id, { timeout: 10000 });
  await selectNodeByClick(id, 'metric-if');
  await page.waitForFunction(() => document.querySelector('#metric-chart')?.dataset.points === '4', null, { timeout: 10000 });
  assert.ok(await page.$('#metric-chart canvas'), 'no chart canvas');
  const data = () => page.evaluate(() => window.topotap.app.nodePanel.chart.plot.data.map((s) => [...s]));
  let d = await data();
  assert.deepEqual(d[0], [1, 2, 3, 4].map((i) => (t0 + i * 10000) / 1000));
  assert.deepEqual(d[1], [1000, 2000, 3000, 4000]);
  assert.deepEqual(d[2], [500, 1000, 1500, 2000]);
  // Something is drawn: the plot's canvas has non-background pixels.
  const inked = await page.$eval('#metric-chart canvas', (c) => {
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 100, `${inked} pixels drawn`);
  await page.selectOption('#metric-unit', 'Packets');
  d = await data();
  assert.deepEqual(d[1], [1, 2, 3, 4]);
  assert.deepEqual(d[2], [0.5, 1, 1.5, 2]);
  await shot('13-metric-chart');
  r = await api('DELETE', `/api/node/${id}`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(unexpectedErrors(), []);
});

test('captures: create through the form and list', async (t) => {
  const probe = await api('GET', '/api/capture');
  await page.click('.tab[data-tab="captures"]');
  if (probe.status === 404) {
    await page.waitForSelector('#cap-notice:not(.hidden)');
    assert.match(await page.textContent('#tab-captures'), /not available on this server/);
    await shot('07-captures-unavailable');
    t.skip('GET /api/capture answered 404: this topotap has no capture API yet');
    return;
  }
  assert.equal(probe.status, 200, probe.text);
  const eth = seeded.topo.nodes.find((n) => n.Metadata.Name === 'vm2-veth0');
  await selectNodeByClick(eth.ID, 'vm2-veth0');
  await page.click('#tab-node button:has-text("Capture")');
  assert.equal(await page.inputValue('#cap-query'), `G.V().Has('TID', '${eth.Metadata.TID}')`);
  await page.fill('#cap-name', 'ui-capture');
  await page.fill('#cap-bpf', 'icmp');
  await page.selectOption('#cap-type', 'afpacket');
  await page.click('#cap-create');
  await page.waitForFunction(() => document.querySelector('#capture-list')?.textContent.includes('ui-capture'), null, { timeout: 10000 });
  const list = (await api('GET', '/api/capture')).json();
  const created = Object.values(list).find((c) => c.Name === 'ui-capture');
  assert.ok(created, 'capture not stored');
  assert.equal(created.BPFFilter, 'icmp');
  assert.equal(created.GremlinQuery, `G.V().Has('TID', '${eth.Metadata.TID}')`);
  // Its flow table (refreshing every 2 s) opens below the list.
  await page.click('#capture-list button:has-text("Flows")');
  await page.waitForFunction(() => document.querySelector('#flows-status')?.textContent !== 'loading…', null, { timeout: 10000 });
  await shot('07-captures');
  await page.click('#capture-list button:has-text("Delete")');
  await page.waitForFunction(() => !document.querySelector('#capture-list')?.textContent.includes('ui-capture'), null, { timeout: 10000 });
});

test('injection panel', async (t) => {
  const probe = await api('GET', '/api/injectpacket');
  await page.click('.tab[data-tab="inject"]');
  const src = seeded.topo.nodes.find((n) => n.Metadata.Name === 'vm1-veth0');
  await page.evaluate((id) => window.topotap.view.select(id), src.ID);
  await page.click('.tab[data-tab="inject"]');
  await page.click('#inject-form .field:first-child button');
  assert.equal(await page.inputValue('#inj-src'), `G.V().Has('TID', '${src.Metadata.TID}')`);
  if (probe.status === 404) {
    await page.waitForSelector('#inj-notice:not(.hidden)');
    assert.match(await page.textContent('#tab-inject'), /not available on this server/);
    t.skip('GET /api/injectpacket answered 404: this topotap has no injection API yet');
  }
  await shot('08-injection');
});

test('a dropped WebSocket shows the stale banner, reconnects with backoff and resyncs', async () => {
  await page.click('.tab[data-tab="node"]');
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(Date.now()));
  wsDownWindow = true;
  await stopServer(server, 'SIGKILL');
  await page.waitForSelector('#banner:not(.hidden)', { timeout: 10000 });
  assert.match(await page.textContent('#banner'), /disconnected — reconnecting…/);
  assert.ok(await page.$eval('#stage', (s) => s.classList.contains('stale')));
  const down = Date.now();
  await page.waitForTimeout(3500);
  await shot('09-disconnected');
  const attempts = sockets.filter((t) => t >= down).length;
  // 500 ms doubling with jitter: at most 4 or so attempts in 3.5 s, never a storm.
  assert.ok(attempts >= 1 && attempts <= 5, `${attempts} reconnect attempts in 3.5 s`);
  const delays = await page.evaluate(() => window.topotap.subscriber.attempt);
  assert.ok(delays >= 2, `backoff attempt counter ${delays}`);

  // Same port, a new process with a different graph: the view resyncs to it.
  server = await startServer();
  const fresh = smallHost('ui-test-2');
  await publish(base, fresh.topo);
  await page.waitForSelector('#banner', { state: 'hidden', timeout: 20000 });
  wsDownWindow = false;
  await waitLive();
  await page.waitForFunction(
    ([n, id]) => window.topotap.graph.nodes.size === n && window.topotap.graph.nodes.has(id),
    [fresh.topo.nodes.length, fresh.host],
    { timeout: 15000 },
  );
  assert.ok(!(await page.$eval('#stage', (s) => s.classList.contains('stale'))));
  assert.equal(await page.evaluate(() => window.topotap.subscriber.attempt), 0);
  await waitLayoutSettled();
  await shot('10-reconnected');
  seeded = fresh;
  assert.deepEqual(unexpectedErrors(), []);
});

test('2,000 nodes: pan and zoom stay under 50 ms per frame', async () => {
  const big = bigHost('big', 2000);
  await publish(base, big.topo, 24);
  const total = seeded.topo.nodes.length + big.topo.nodes.length;
  await page.waitForFunction((n) => window.topotap.graph.nodes.size === n, total, { timeout: 60000, polling: 250 });
  await page.click('#expand-all');
  await page.waitForFunction((n) => window.topotap.view.view.nodes.length === n, total, { timeout: 10000 });
  // 20 programmatic zoom/pan frames, one per requestAnimationFrame. The machine may
  // be busy with other work (a 2-core CI box compiling): a run is retried up to
  // three times and the best one counts; every run is reported.
  const measure = async (setup) => {
    const runs = [];
    for (let i = 0; i < 3; i++) {
      if (setup) await page.evaluate(setup);
      const r = await page.evaluate(() => window.topotap.view.benchFrames(20));
      runs.push(r);
      if (r.meanFrameMs < 50) break;
    }
    return { best: runs.reduce((a, b) => (b.meanFrameMs < a.meanFrameMs ? b : a)), runs };
  };
  // While the layout is still settling (layout ticks share the frame).
  const during = await measure(() => window.topotap.view.layout.reheat(1));
  await waitLayoutSettled(60000);
  const settled = await measure(() => window.topotap.view.fit());
  // Close up, where labels are drawn.
  const zoomed = await measure(() => {
    window.topotap.view.fit();
    window.topotap.view.zoomBy(4);
  });
  await page.evaluate(() => window.topotap.view.fit());
  await page.waitForTimeout(300);
  await shot('11-2000-nodes');
  const report = { nodes: total, edges: await page.evaluate(() => window.topotap.graph.edges.size), during, settled, zoomed };
  fs.writeFileSync(path.join(ARTIFACTS, 'responsiveness.json'), JSON.stringify(report, null, 2));
  console.log('responsiveness', JSON.stringify(report));
  assert.equal(settled.best.nodesDisplayed, total);
  for (const [name, { best }] of Object.entries({ during, settled, zoomed })) {
    assert.equal(best.frames, 20);
    assert.ok(best.meanFrameMs < 50, `${name}: mean frame ${best.meanFrameMs.toFixed(1)} ms`);
  }
  assert.deepEqual(unexpectedErrors(), []);
});
