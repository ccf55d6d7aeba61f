// A web page from another origin must not drive topotap. A second small HTTP server on
// another loopback port serves a page that tries everything a page can: fetch (CORS,
// text/plain, no-cors), XHR, HTML form POSTs (urlencoded and text/plain) and a
// WebSocket, against topotap's API (authentication off, loopback). Nothing may be
// created and nothing read.
//
// The control: the same page served from an origin given with --cors-origin reads the
// topology, creates with application/json and opens the WebSocket, so the attempts are
// real ones; and topotap's audit log shows every refused write reached it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { CHROMIUM, BIN, freePort, launchPage, startTopotap, stopTopotap } from './harness.mjs';

let dir;
let port;
let base;
let server;
let browser;
let page;
const consoleErrors = [];
const pages = {}; // 'evil' | 'friend' -> {server, origin}
const SECRET = 'secret-node-name';

/**
 * The page: runs every attempt against topotap and leaves what it got in
 * window.results. `tag` prefixes every ID and name it tries to create.
 */
function attackPage(tag) {
  const T = `http://127.0.0.1:${port}`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>${tag}</title></head><body>
<script>
const T = ${JSON.stringify(T)};
const tag = ${JSON.stringify(tag)};
const node = (id) => JSON.stringify({ ID: tag + '-' + id, Metadata: { Name: tag + '-' + id, Type: 'device' } });
const capture = (id) => JSON.stringify({ GremlinQuery: "G.V().Has('Name', 'nothing-" + tag + '-' + id + "')", Name: tag + '-' + id,
  TargetType: 'netflowv5', Target: '127.0.0.1:9' });
window.results = {};
async function attempt(name, fn) {
  try { window.results[name] = await fn(); } catch (e) { window.results[name] = 'error: ' + e.name; }
}
async function answer(r) { return { type: r.type, status: r.status, body: await r.text() }; }
function xhr(url, body) {
  return new Promise((resolve) => {
    const x = new XMLHttpRequest();
    x.open('POST', url);
    x.setRequestHeader('Content-Type', 'text/plain');
    x.onload = () => resolve({ status: x.status, body: x.responseText });
    x.onerror = () => resolve('error: xhr');
    x.send(body);
  });
}
function form(action, enctype, name, value) {
  return new Promise((resolve) => {
    const sink = document.createElement('iframe');
    sink.name = 'sink-' + Math.random().toString(36).slice(2);
    document.body.append(sink);
    const f = document.createElement('form');
    f.method = 'POST'; f.action = action; f.enctype = enctype; f.target = sink.name;
    const i = document.createElement('input');
    i.type = 'hidden'; i.name = name; i.value = value;
    f.append(i);
    document.body.append(f);
    const timer = setTimeout(() => resolve('no load event'), 5000);
    sink.addEventListener('load', () => { clearTimeout(timer); resolve('submitted'); }, { once: true });
    f.submit();
  });
}
// A text/plain form whose body is JSON: name + '=' + value.
function jsonForm(action, json) {
  const cut = json.length - 1; // ...,"pad":"  =  "}
  const body = json.slice(0, cut) + ',"pad":"';
  return form(action, 'text/plain', body, '"}');
}
function websocket() {
  return new Promise((resolve) => {
    let opened = false;
    const ws = new WebSocket(T.replace('http', 'ws') + '/ws/subscriber');
    const timer = setTimeout(() => resolve({ opened, timeout: true }), 5000);
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify({ Namespace: 'Graph', Type: 'SyncRequest', UUID: 'x', Obj: { GremlinFilter: '' } }));
    };
    ws.onmessage = (ev) => { clearTimeout(timer); resolve({ opened, data: String(ev.data) }); ws.close(); };
    ws.onclose = (ev) => { clearTimeout(timer); resolve({ opened, code: ev.code }); };
  });
}
window.done = (async () => {
  await attempt('read_get', async () => answer(await fetch(T + '/api/topology')));
  await attempt('read_get_credentials', async () => answer(await fetch(T + '/api/topology', { credentials: 'include' })));
  await attempt('read_query', async () => answer(await fetch(T + '/api/topology', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ GremlinQuery: 'G.V()' }) })));
  await attempt('read_nodes_nocors', async () => answer(await fetch(T + '/api/node', { mode: 'no-cors' })));
  await attempt('node_text', async () => answer(await fetch(T + '/api/node', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: node('fetch-text') })));
  await attempt('node_nocors', async () => answer(await fetch(T + '/api/node', { method: 'POST', mode: 'no-cors', body: node('fetch-nocors') })));
  await attempt('capture_text', async () => answer(await fetch(T + '/api/capture', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: capture('fetch-text') })));
  await attempt('capture_nocors', async () => answer(await fetch(T + '/api/capture', { method: 'POST', mode: 'no-cors', body: capture('fetch-nocors') })));
  await attempt('node_xhr', () => xhr(T + '/api/node', node('xhr')));
  await attempt('capture_xhr', () => xhr(T + '/api/capture', capture('xhr')));
  await attempt('node_form_urlencoded', () => form(T + '/api/node', 'application/x-www-form-urlencoded', 'ID', tag + '-form-urlencoded'));
  await attempt('node_form_text', () => jsonForm(T + '/api/node', node('form-text')));
  await attempt('capture_form_urlencoded', () => form(T + '/api/capture', 'application/x-www-form-urlencoded', 'GremlinQuery', 'G.V()'));
  await attempt('capture_form_text', () => jsonForm(T + '/api/capture', capture('form-text')));
  // What a page allowed by CORS would do: preflighted application/json.
  await attempt('node_json', async () => answer(await fetch(T + '/api/node', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: node('json') })));
  await attempt('capture_json', async () => answer(await fetch(T + '/api/capture', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: capture('json') })));
  await attempt('websocket', websocket);
})();
</script></body></html>`;
}

async function servePage(tag) {
  const p = await freePort();
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(attackPage(tag));
  });
  srv.listen(p, '127.0.0.1');
  await once(srv, 'listening');
  return { server: srv, origin: `http://127.0.0.1:${p}` };
}

/** Opens the page of `tag` and waits until every attempt is over: window.results. */
async function runPage(tag) {
  await page.goto(`${pages[tag].origin}/`);
  await page.evaluate(() => window.done);
  return page.evaluate(() => window.results);
}

async function api(p) {
  const r = await fetch(base + p);
  assert.equal(r.status, 200);
  return r.json();
}

function audit() {
  const file = path.join(dir, 'audit.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

const NAMES = (v) => JSON.stringify(v);

before(async () => {
  assert.ok(fs.existsSync(BIN), `topotap binary not found at ${BIN} (build it first or set TOPOTAP_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topotap-ui-origin-'));
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  pages.evil = await servePage('evil');
  pages.friend = await servePage('friend');
  server = await startTopotap([
    'allinone', '--listen', `127.0.0.1:${port}`, '--no-probes', '--host-id', 'ui-origin',
    '--state-dir', path.join(dir, 'state'), '--audit-log', path.join(dir, 'audit.jsonl'),
    '--cors-origin', pages.friend.origin,
  ]);
  const r = await fetch(`${base}/api/node`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ID: 'secret', Metadata: { Name: SECRET, Type: 'host' } }),
  });
  assert.equal(r.status, 201, await r.text());
  ({ browser, page } = await launchPage(consoleErrors));
});

after(async () => {
  await browser?.close();
  await stopTopotap(server);
  for (const p of Object.values(pages)) p.server.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a page from another origin creates nothing and reads nothing', async () => {
  const before = audit().length;
  const got = await runPage('evil');
  // Nothing read: CORS reads fail, no-cors answers are opaque.
  assert.equal(got.read_get, 'error: TypeError', NAMES(got));
  assert.equal(got.read_get_credentials, 'error: TypeError', NAMES(got));
  assert.equal(got.read_query, 'error: TypeError', NAMES(got));
  assert.deepEqual(got.read_nodes_nocors, { type: 'opaque', status: 0, body: '' });
  assert.ok(!NAMES(got).includes(SECRET), `the page read the topology: ${NAMES(got)}`);
  // Writes: refused or opaque, and nothing created.
  for (const k of ['node_text', 'capture_text', 'node_xhr', 'capture_xhr', 'node_json', 'capture_json']) {
    assert.ok(got[k] === 'error: TypeError' || got[k] === 'error: xhr', `${k}: ${NAMES(got[k])}`);
  }
  for (const k of ['node_nocors', 'capture_nocors']) assert.deepEqual(got[k], { type: 'opaque', status: 0, body: '' }, k);
  for (const k of ['node_form_urlencoded', 'node_form_text', 'capture_form_urlencoded', 'capture_form_text']) {
    assert.equal(got[k], 'submitted', k);
  }
  // The WebSocket never opened.
  assert.equal(got.websocket.opened, false, NAMES(got.websocket));

  const nodes = await api('/api/node');
  assert.deepEqual(Object.keys(nodes).filter((id) => id.startsWith('evil')), [], NAMES(nodes));
  assert.deepEqual(await api('/api/capture'), {});
  const topo = await fetch(`${base}/api/topology`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ GremlinQuery: "G.V().Has('Name', Regex('evil.*'))" }) });
  assert.deepEqual(await topo.json(), []);

  // Every simple request and form reached topotap and was refused (403: the Origin);
  // the preflighted ones never got past their preflight, so never reached the route.
  const refused = audit().slice(before);
  const count = (p) => refused.filter((e) => e.Resource.Path === p && e.Status === 403).length;
  assert.equal(count('/api/node'), 5, NAMES(refused)); // text, no-cors, XHR, 2 forms
  assert.equal(count('/api/capture'), 5, NAMES(refused));
  assert.ok(refused.every((e) => e.Status === 403), NAMES(refused));
});

test('the same page from a --cors-origin origin works (the control)', async () => {
  const got = await runPage('friend');
  // It reads, creates with JSON, and its WebSocket opens.
  assert.equal(got.read_get.status, 200, NAMES(got.read_get));
  assert.ok(got.read_get.body.includes(SECRET));
  assert.equal(got.read_query.status, 200);
  assert.equal(got.node_json.status, 201, NAMES(got.node_json));
  assert.equal(got.capture_json.status, 201, NAMES(got.capture_json));
  assert.equal(got.websocket.opened, true, NAMES(got.websocket));
  assert.match(got.websocket.data, /SyncReply/);
  assert.ok(got.websocket.data.includes(SECRET));
  // Form and text/plain bodies are still refused: not the content type of the API.
  for (const k of ['node_text', 'capture_text', 'node_xhr', 'capture_xhr']) assert.equal(got[k].status, 415, `${k}: ${NAMES(got[k])}`);
  const nodes = await api('/api/node');
  assert.deepEqual(Object.keys(nodes).filter((id) => id.startsWith('friend')).sort(), ['friend-json']);
  const captures = Object.values(await api('/api/capture')).map((c) => c.Name);
  assert.deepEqual(captures, ['friend-json']);
});
