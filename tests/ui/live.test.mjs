// The web UI against a topotap running its probes on this machine: a network namespace
// and a veth pair created during the test show up in the page without a reload, the
// console answers a query about them, a capture made through the form goes active on
// the namespace's eth0 (the real capture engine), a ping fills its flow table, and
// deleting the namespace removes its nodes from the page. Needs root (ip netns, veth);
// skipped otherwise. Screenshots go to target/ui-artifacts/live-*.png.
//
// Only addresses inside this test's own veth pair are used (10.199.N.0/30).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ARTIFACTS, BIN, CHROMIUM, IS_ROOT, freePort, have, launchPage, startTopotap, stopTopotap } from './harness.mjs';

const rand = crypto.randomBytes(3).toString('hex');
const NS = `ui${rand}`; // network namespace, also the netns node's Name
const HOST_END = `ui${rand}h`; // root-namespace end of the veth pair
const HOST_ID = `ui-live-${rand}`;
const CAPTURE = `ui-live-${rand}`;
const NET = `10.199.${crypto.randomInt(0, 256)}`;
const HOST_IP = `${NET}.1`;
const NS_IP = `${NET}.2`;

const skip = !IS_ROOT ? 'needs root (ip netns add, veth pairs)' : !have('ip', ['-V']) ? 'needs iproute2 (ip)' : false;

let base;
let server;
let stateDir;
let browser;
let page;
const consoleErrors = [];

function sh(cmd) {
  return execFileSync('sh', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function cleanupNetwork() {
  for (const cmd of [`ip netns del ${NS}`, `ip link del ${HOST_END}`]) {
    try {
      execFileSync('sh', ['-c', cmd], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

async function api(method, p, body) {
  const r = await fetch(base + p, { method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
}

function unexpectedErrors() {
  return consoleErrors.filter((m) => !m.expected);
}

async function waitLayoutSettled(timeout = 20000) {
  await page.waitForFunction(() => !window.topotap.view.layout.running, null, { timeout, polling: 100 });
}

/**
 * IDs of this test's nodes as the page's graph has them: the netns node, its eth0 (owned
 * by it) and the root-namespace veth end; null where the page has none.
 */
function pageNodes() {
  return page.evaluate(
    ([ns, hostEnd]) => {
      const g = window.topotap.graph;
      const find = (pred) => [...g.nodes.values()].find(pred)?.ID ?? null;
      const nsId = find((n) => n.Metadata?.Type === 'netns' && n.Metadata?.Name === ns);
      let eth0 = null;
      if (nsId) {
        for (const e of g.edges.values()) {
          if (e.Parent !== nsId || e.Metadata?.RelationType !== 'ownership') continue;
          if (g.nodes.get(e.Child)?.Metadata?.Name === 'eth0') eth0 = e.Child;
        }
      }
      const veth = find((n) => n.Metadata?.Name === hostEnd);
      return { ns: nsId, eth0, veth };
    },
    [NS, HOST_END],
  );
}

/** True when every ID is displayed as itself (drawn, not hidden in a collapsed group). */
function displayed(ids) {
  return page.evaluate((list) => list.every((id) => window.topotap.view.view?.rep.get(id) === id), ids);
}

/**
 * Clicks a displayed node on the canvas after panning it to the middle of the view. The
 * machine's other namespaces may come and go meanwhile and move the layout: a click that
 * missed is tried again.
 */
async function clickNode(id) {
  for (let attempt = 0; ; attempt++) {
    await waitLayoutSettled();
    const p = await page.evaluate((nid) => {
      const v = window.topotap.view;
      const q = v.layout.pos.get(v.view.rep.get(nid));
      v.centerOn(q.x, q.y);
      const box = v.canvas.getBoundingClientRect();
      return { x: box.left + box.width / 2, y: box.top + box.height / 2 };
    }, id);
    await page.waitForTimeout(100); // a frame drawn at the new position
    await page.mouse.click(p.x, p.y);
    try {
      await page.waitForFunction((nid) => window.topotap.view.selected === nid, id, { timeout: 2000 });
      return;
    } catch (e) {
      if (attempt >= 4) throw e;
    }
  }
}

/** The captures list row of the test's capture, as {state, text}; null if absent. */
function captureRow() {
  return page.evaluate((name) => {
    for (const tr of document.querySelectorAll('#capture-list tbody tr')) {
      if (tr.querySelector('.cap-name')?.textContent === name) return { state: tr.querySelector('.state')?.textContent, text: tr.textContent };
    }
    return null;
  }, CAPTURE);
}

before(async () => {
  if (skip) return;
  assert.ok(fs.existsSync(BIN), `topotap binary not found at ${BIN} (build it first or set TOPOTAP_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topotap-ui-live-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = await startTopotap(['allinone', '--listen', `127.0.0.1:${port}`, '--ovsdb', 'none', '--state-dir', stateDir, '--host-id', HOST_ID]);
  ({ browser, page } = await launchPage(consoleErrors));
});

after(async () => {
  cleanupNetwork();
  await browser?.close();
  await stopTopotap(server);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

test('live probes: a namespace appears, captures and disappears without reload', { skip, timeout: 180000 }, async () => {
  try {
    // Load and sync: the probes' host node is there, the connection is live.
    await page.goto(`${base}/`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
    await page.waitForFunction(
      (host) => window.topotap.app.synced && [...window.topotap.graph.nodes.values()].some((n) => n.Metadata?.Type === 'host' && n.Metadata?.Name === host),
      HOST_ID,
      { timeout: 15000 },
    );
    await waitLayoutSettled();
    await page.waitForFunction(() => /^\d+ nodes · \d+ edges/.test(document.querySelector('#counts').textContent), null, { timeout: 5000 });
    assert.deepEqual(await pageNodes(), { ns: null, eth0: null, veth: null });
    await page.evaluate(() => (window.__noReload = true));
    await shot('live-01-loaded');
    assert.deepEqual(unexpectedErrors(), [], 'console errors on load');

    // A namespace with a veth pair, created now: it appears in the page as it is.
    sh(`ip netns add ${NS}`);
    sh(`ip link add ${HOST_END} type veth peer name eth0 netns ${NS} && ip link set ${HOST_END} up && ip -n ${NS} link set eth0 up`);
    await page.waitForFunction(
      ([ns, hostEnd]) => {
        const nodes = [...window.topotap.graph.nodes.values()];
        const nsNode = nodes.find((n) => n.Metadata?.Type === 'netns' && n.Metadata?.Name === ns);
        if (!nsNode || !nodes.some((n) => n.Metadata?.Name === hostEnd)) return false;
        return [...window.topotap.graph.edges.values()].some(
          (e) => e.Parent === nsNode.ID && e.Metadata?.RelationType === 'ownership' && window.topotap.graph.nodes.get(e.Child)?.Metadata?.Name === 'eth0',
        );
      },
      [NS, HOST_END],
      { timeout: 20000, polling: 200 },
    );
    const ids = await pageNodes();
    await page.waitForFunction((list) => list.every((id) => window.topotap.view.view?.rep.get(id) === id), [ids.ns, ids.eth0, ids.veth], { timeout: 10000 });
    assert.ok(await displayed([ids.ns, ids.eth0, ids.veth]));
    // The veth pair is one layer2 link between the two ends.
    const linked = await page.evaluate(
      ([a, b]) => [...window.topotap.graph.edges.values()].some((e) => e.Metadata?.RelationType === 'layer2' && ((e.Parent === a && e.Child === b) || (e.Parent === b && e.Child === a))),
      [ids.veth, ids.eth0],
    );
    assert.ok(linked, 'no layer2 edge between the veth ends');
    // The header counts follow (other namespaces of the machine may come and go too).
    await page.waitForFunction(
      () => {
        const m = /^(\d+) nodes · (\d+) edges/.exec(document.querySelector('#counts').textContent);
        return m && Number(m[1]) === window.topotap.graph.nodes.size && Number(m[2]) === window.topotap.graph.edges.size;
      },
      null,
      { timeout: 5000 },
    );
    await waitLayoutSettled();
    await page.click('#zoom-fit');
    await page.evaluate((list) => window.topotap.view.setHighlight(new Set(list)), [ids.ns, ids.eth0, ids.veth]);
    await page.waitForTimeout(200);
    await shot('live-02-netns-added');
    await page.evaluate(() => window.topotap.view.setHighlight(null));

    // The console: what the namespace owns.
    await page.click('.tab[data-tab="console"]');
    await page.fill('#console-query', `G.V().Has('Type', 'netns', 'Name', '${NS}').Out()`);
    await page.click('#console-run');
    await page.waitForFunction(() => document.querySelectorAll('#console-result table.grid tbody tr').length >= 2, null, { timeout: 10000 });
    const rows = await page.$$eval('#console-result tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    assert.deepEqual(rows.map((r) => r[1]).sort(), ['eth0', 'lo']);
    assert.ok(rows.every((r) => r[3] === HOST_ID), JSON.stringify(rows));
    await shot('live-03-console');

    // Select the namespace's eth0 on the canvas and capture ICMP on it through the form.
    await clickNode(ids.eth0);
    await page.waitForFunction(() => document.querySelector('#node-name')?.textContent === 'eth0', null, { timeout: 5000 });
    assert.match(await page.textContent('#tab-node'), new RegExp(ids.eth0));
    const tid = await page.evaluate((id) => window.topotap.graph.nodes.get(id).Metadata.TID, ids.eth0);
    assert.ok(tid, 'eth0 has no TID');
    await page.click('#tab-node button:has-text("Capture")');
    await page.waitForSelector('#tab-captures:not(.hidden)');
    assert.equal(await page.inputValue('#cap-query'), `G.V().Has('TID', '${tid}')`);
    await page.fill('#cap-name', CAPTURE);
    await page.fill('#cap-bpf', 'icmp');
    await page.selectOption('#cap-target-type', 'local');
    await page.click('#cap-create');
    await page.waitForFunction(
      (name) => [...document.querySelectorAll('#capture-list tbody tr')].some((tr) => tr.querySelector('.cap-name')?.textContent === name && tr.querySelector('.state')?.textContent === 'active'),
      CAPTURE,
      { timeout: 20000, polling: 250 },
    );
    const row = await captureRow();
    assert.match(row.text, /bpf: icmp/);
    assert.match(row.text, /local/);
    const stored = Object.entries((await api('GET', '/api/capture')).json()).find(([, c]) => c.Name === CAPTURE);
    assert.ok(stored, 'capture not stored');
    const [uuid, cap] = stored;
    assert.equal(cap.BPFFilter, 'icmp');
    assert.equal(cap.GremlinQuery, `G.V().Has('TID', '${tid}')`);
    await shot('live-04-capture-active');

    // Traffic inside the test's veth pair only: the host end pings eth0.
    sh(`ip addr add ${HOST_IP}/30 dev ${HOST_END} && ip -n ${NS} addr add ${NS_IP}/30 dev eth0`);
    sh(`ping -c 3 -i 0.2 -W 2 -I ${HOST_END} ${NS_IP}`);
    await page.click('#capture-list tbody tr:has(.cap-name:text-is("' + CAPTURE + '")) button:has-text("Flows")');
    await page.waitForFunction(
      ([a, b]) => [...document.querySelectorAll('#flows-body tbody tr')].some((tr) => tr.textContent.includes('ICMPv4') && tr.textContent.includes(a) && tr.textContent.includes(b)),
      [HOST_IP, NS_IP],
      { timeout: 15000, polling: 250 },
    );
    // 3 echo requests and 3 replies, all seen on eth0.
    let flows;
    for (let i = 0; i < 50; i++) {
      flows = (await api('POST', '/api/topology', { GremlinQuery: `G.Flows().Has('CaptureID', '${uuid}', 'Network.A', '${HOST_IP}')` })).json();
      if (flows.length === 1 && flows[0].Metric.ABPackets === 3 && flows[0].Metric.BAPackets === 3) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(flows.length, 1, JSON.stringify(flows));
    assert.equal(flows[0].LayersPath, 'Ethernet/IPv4/ICMPv4');
    assert.deepEqual([flows[0].Metric.ABPackets, flows[0].Metric.BAPackets], [3, 3], JSON.stringify(flows[0].Metric));
    await page.waitForTimeout(300);
    await shot('live-05-flows');

    // The node panel's Captures section says the same.
    await page.click('.tab[data-tab="node"]');
    await page.waitForFunction(
      (short) => {
        const sec = [...document.querySelectorAll('#tab-node section.sub')].find((s) => s.querySelector('h3')?.textContent === 'Captures');
        return [...(sec?.querySelectorAll('tbody tr') || [])].some((tr) => tr.textContent.includes(short) && tr.querySelector('.state')?.textContent === 'active' && tr.textContent.includes('icmp'));
      },
      uuid.slice(0, 8),
      { timeout: 10000, polling: 250 },
    );
    await shot('live-06-node-capture-active');

    // Deleting the namespace takes its eth0 and the veth pair with it: gone from the page.
    sh(`ip netns del ${NS}`);
    await page.waitForFunction(
      (list) => list.every((id) => !window.topotap.graph.nodes.has(id) && !window.topotap.view.view?.rep.has(id)),
      [ids.ns, ids.eth0, ids.veth],
      { timeout: 20000, polling: 200 },
    );
    assert.deepEqual(await pageNodes(), { ns: null, eth0: null, veth: null });
    // The node panel lets go of the deleted node; the capture waits for a node again.
    await page.waitForFunction(() => !document.querySelector('#node-name'), null, { timeout: 5000 });
    await page.click('.tab[data-tab="captures"]');
    await page.waitForFunction(
      (name) => [...document.querySelectorAll('#capture-list tbody tr')].some((tr) => tr.querySelector('.cap-name')?.textContent === name && tr.querySelector('.state')?.textContent === 'waiting'),
      CAPTURE,
      { timeout: 15000, polling: 250 },
    );
    await waitLayoutSettled();
    await page.click('#zoom-fit');
    await page.waitForTimeout(200);
    await shot('live-07-netns-deleted');

    assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was reloaded');
    assert.deepEqual(unexpectedErrors(), []);
    assert.equal((await api('DELETE', `/api/capture/${uuid}`)).status, 200);
  } finally {
    cleanupNetwork();
  }
});
