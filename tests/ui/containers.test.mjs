// A real runc container in the web UI: a busybox-static rootfs in a temp dir, run by
// Debian's runc with its state in a root of its own that topotap watches
// (--runc-root), with Kubernetes pod annotations and an image name. Its network
// namespace, named after it, and its `container` node show the container's facts in
// the node panel (short ID, name, image, runtime, pod, labels); when it is deleted both
// go. Needs root, runc and /bin/busybox (scripts/deps.sh installs them); skipped
// otherwise. Screenshots go to target/ui-artifacts/containers-*.png.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ARTIFACTS, BIN, CHROMIUM, IS_ROOT, freePort, have, launchPage, startTopotap, stopTopotap } from './harness.mjs';

const rand = crypto.randomBytes(3).toString('hex');
// As long as a Docker ID: the panel shows its first 12 characters.
const ID = `uic${rand}${crypto.randomBytes(29).toString('hex')}`;
const POD = `pod-${rand}`;
const POD_NS = `team-${rand}`;
const IMAGE = `registry.example/busybox:${rand}`;
const HOST_ID = `ui-containers-${rand}`;

const skip = !IS_ROOT ? 'needs root (runc)' : !have('runc') ? 'needs runc (apt-get install runc)' : !fs.existsSync('/bin/busybox') ? 'needs /bin/busybox (apt-get install busybox-static)' : false;

let base;
let server;
let stateDir;
let dir;
let browser;
let page;
const consoleErrors = [];

const runcRoot = () => path.join(dir, 'state');

function runc(...args) {
  return execFileSync('runc', ['--root', runcRoot(), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function stopContainer() {
  for (const args of [['kill', ID, 'KILL'], ['delete', '--force', ID]]) {
    try {
      runc(...args);
    } catch {
      // not running / already deleted
    }
  }
}

/** A bundle whose rootfs is busybox-static running `sleep 1000`, with `annotations`. */
function bundle(annotations) {
  const b = path.join(dir, 'bundle');
  const bin = path.join(b, 'rootfs', 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(bin, 'busybox'));
  fs.chmodSync(path.join(bin, 'busybox'), 0o755);
  for (const applet of ['sh', 'sleep']) fs.symlinkSync('busybox', path.join(bin, applet));
  execFileSync('runc', ['spec'], { cwd: b, stdio: 'ignore' });
  const config = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
  config.process.terminal = false;
  config.process.args = ['/bin/sleep', '1000'];
  config.annotations = annotations;
  assert.ok(config.linux.namespaces.some((n) => n.type === 'network'), 'runc spec makes a network namespace');
  fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify(config));
  return b;
}

async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/** Selects a node through the search box: its hit, told apart by ID (the namespace has the container's name). */
async function selectBySearch(id, name) {
  await page.fill('#search', name);
  const hit = `#search-results button.search-hit[data-id="${id}"]`;
  await page.waitForSelector(hit, { timeout: 5000 });
  await page.click(hit);
  await page.waitForFunction((nid) => window.topotap.view.selected === nid, id, { timeout: 5000 });
  await page.waitForFunction((n) => document.querySelector('#node-name')?.textContent === n, name, { timeout: 5000 });
}

/** The container facts shown in the node panel: {label: text} per container, and labels. */
function containerFacts() {
  return page.evaluate(() => {
    const sec = document.querySelector('#node-container');
    if (!sec) return null;
    return {
      title: sec.querySelector('h3')?.textContent,
      containers: [...sec.querySelectorAll('.container-facts')].map((c) => {
        const facts = {};
        const dts = c.querySelectorAll('dl.facts dt');
        for (const dt of dts) facts[dt.textContent] = dt.nextElementSibling?.textContent;
        facts.idTitle = c.querySelector('.container-id')?.title;
        facts.labels = Object.fromEntries([...c.querySelectorAll('.container-labels tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)));
        return facts;
      }),
    };
  });
}

before(async () => {
  if (skip) return;
  assert.ok(fs.existsSync(BIN), `topotap binary not found at ${BIN} (build it first or set TOPOTAP_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'topotap-ui-containers-'));
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topotap-ui-runc-'));
  fs.mkdirSync(runcRoot());
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = await startTopotap([
    'allinone',
    '--listen',
    `127.0.0.1:${port}`,
    '--ovsdb',
    'none',
    '--docker-socket',
    'none',
    '--runc-root',
    runcRoot(),
    '--state-dir',
    stateDir,
    '--host-id',
    HOST_ID,
  ]);
  ({ browser, page } = await launchPage(consoleErrors));
});

after(async () => {
  if (dir) stopContainer();
  await browser?.close();
  await stopTopotap(server);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a runc container: its namespace and node show its facts, and go with it', { skip, timeout: 120000 }, async () => {
  try {
    await page.goto(`${base}/`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
    await page.waitForFunction(() => window.topotap.app.synced, null, { timeout: 15000 });

    const b = bundle({
      'io.kubernetes.pod.name': POD,
      'io.kubernetes.pod.namespace': POD_NS,
      'io.kubernetes.cri.image-name': IMAGE,
      'example.org/team': 'network',
    });
    execFileSync('runc', ['--root', runcRoot(), 'run', '-d', '--bundle', b, ID], { stdio: 'ignore' });
    const pid = JSON.parse(runc('state', ID)).pid;

    // Both nodes reach the page: the netns named after the container, owning the container node.
    const ids = await page
      .waitForFunction(
        (id) => {
          const g = window.topotap.graph;
          const nodes = [...g.nodes.values()];
          const ns = nodes.find((n) => n.Metadata?.Type === 'netns' && n.Metadata?.Name === id);
          const c = nodes.find((n) => n.Metadata?.Type === 'container' && n.Metadata?.Container?.ID === id);
          if (!ns || !c) return null;
          const owned = [...g.edges.values()].some((e) => e.Parent === ns.ID && e.Child === c.ID && e.Metadata?.RelationType === 'ownership');
          return owned ? { ns: ns.ID, c: c.ID } : null;
        },
        ID,
        { timeout: 20000, polling: 200 },
      )
      .then((h) => h.jsonValue());

    const want = {
      Name: ID,
      ID: `${ID.slice(0, 12)}…`,
      idTitle: ID,
      Image: IMAGE,
      Runtime: 'runc',
      Status: 'running',
      PID: String(pid),
      Pod: `${POD_NS}/${POD}`,
      labels: {
        'example.org/team': 'network',
        'io.kubernetes.cri.image-name': IMAGE,
        'io.kubernetes.pod.name': POD,
        'io.kubernetes.pod.namespace': POD_NS,
      },
    };

    // The container node: its own Container metadata.
    await selectBySearch(ids.c, ID);
    const own = await containerFacts();
    assert.equal(own?.title, 'Container', JSON.stringify(own));
    assert.equal(own.containers.length, 1);
    assert.deepEqual(own.containers[0], want);
    // Its namespace is named in the wiring facts.
    assert.equal(await page.getAttribute('#node-owner button.link', 'data-node'), ids.ns);
    await shot('containers-01-container-node');

    // The namespace named after it: the same facts.
    await selectBySearch(ids.ns, ID);
    const viaNs = await containerFacts();
    assert.equal(viaNs?.title, 'Container', JSON.stringify(viaNs));
    assert.equal(viaNs.containers.length, 1);
    assert.deepEqual(viaNs.containers[0], want);
    await shot('containers-02-netns');
    // Its name leads to the container node.
    assert.equal(await page.getAttribute('#node-container .container-name button.link', 'data-node'), ids.c);
    await page.click('#node-container .container-name button.link');
    await page.waitForFunction((id) => window.topotap.view.selected === id, ids.c, { timeout: 5000 });

    // A namespace no container runs in has no such section.
    const other = await page.evaluate((id) => [...window.topotap.graph.nodes.values()].find((n) => n.Metadata?.Type === 'host')?.ID, ids.ns);
    await page.evaluate((id) => window.topotap.app.selectNode(id), other);
    await page.waitForFunction((id) => window.topotap.view.selected === id, other, { timeout: 5000 });
    assert.equal(await page.$('#node-container'), null);

    // Deleted: both nodes leave the page.
    stopContainer();
    await page.waitForFunction((list) => list.every((id) => !window.topotap.graph.nodes.has(id)), [ids.ns, ids.c], { timeout: 20000, polling: 200 });
    assert.deepEqual(
      consoleErrors.filter((m) => !m.expected),
      [],
    );
  } finally {
    stopContainer();
  }
});
