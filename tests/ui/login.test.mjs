// The web UI against a topotap with --auth-htpasswd: the login form, a refused password
// with the server's reason, the topology once logged in, and logging out. The htpasswd
// file is made here with `htpasswd -B` (apache2-utils, scripts/deps.sh).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ARTIFACTS, BIN, CHROMIUM, freePort, launchPage, startTopotap, stopTopotap } from './harness.mjs';

let dir;
let base;
let server;
let browser;
let page;
const consoleErrors = [];
const BASIC = `Basic ${Buffer.from('webuser:web-secret').toString('base64')}`;

/** Console errors the login flow causes on purpose: the 401s that bring the form. */
function expectedError(msg) {
  if (/status of 401/.test(msg.text) && /\/(api|api\/topology|login)$/.test(msg.url || '')) return true;
  // The WebSocket is refused (401) after logging out, until the next login.
  if (/WebSocket connection to .* failed/.test(msg.text)) return true;
  return false;
}

async function post(p, body) {
  const r = await fetch(base + p, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: BASIC },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 201, await r.text());
}

async function fillLogin(user, password) {
  await page.fill('#login-username', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `topotap binary not found at ${BIN} (build it first or set TOPOTAP_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topotap-ui-login-'));
  const htpasswd = path.join(dir, 'htpasswd');
  // -c create, -b password on the command line, -B bcrypt, -C 5 a cheap cost for tests.
  execFileSync('htpasswd', ['-c', '-b', '-B', '-C', '5', htpasswd, 'webuser', 'web-secret'], { stdio: 'pipe' });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = await startTopotap([
    'allinone', '--listen', `127.0.0.1:${port}`, '--no-probes', '--host-id', 'ui-login',
    '--state-dir', path.join(dir, 'state'), '--auth-htpasswd', htpasswd,
  ]);
  await post('/api/node', { ID: 'login-host', Metadata: { Name: 'login-host', Type: 'host' } });
  await post('/api/node', { ID: 'login-eth0', Metadata: { Name: 'login-eth0', Type: 'device' } });
  await post('/api/edge', { ID: 'login-own', Parent: 'login-host', Child: 'login-eth0', Metadata: { RelationType: 'ownership' } });
  ({ browser, page } = await launchPage(consoleErrors, expectedError));
});

after(async () => {
  await browser?.close();
  await stopTopotap(server);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the API asks for a login', async () => {
  const r = await fetch(`${base}/api/topology`);
  assert.equal(r.status, 401);
});

test('a wrong password is refused with the server\'s reason', async () => {
  await page.goto(`${base}/`);
  await page.waitForSelector('#login-form', { timeout: 10000 });
  assert.equal(await page.getAttribute('#conn', 'data-state'), 'connecting', 'the page must not subscribe before logging in');
  assert.equal(await page.evaluate(() => window.topotap.graph.nodes.size), 0);
  await fillLogin('webuser', 'not-the-password');
  await page.waitForFunction(() => document.querySelector('#login-error')?.textContent !== '', null, { timeout: 10000 });
  assert.equal(await page.textContent('#login-error'), 'wrong user name or password');
  assert.ok(await page.isVisible('#login-form'));
  const cookies = await page.context().cookies();
  assert.equal(cookies.find((c) => c.name === 'authtoken'), undefined, 'a refused login set a cookie');
  await page.screenshot({ path: path.join(ARTIFACTS, 'login-refused.png') });
});

test('logging in shows the topology, over REST and the WebSocket', async () => {
  await fillLogin('webuser', 'web-secret');
  await page.waitForSelector('#login-form', { state: 'detached', timeout: 10000 });
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
  await page.waitForFunction(() => window.topotap.graph.nodes.size === 2, null, { timeout: 10000 });
  assert.equal(await page.textContent('#user-name'), 'webuser');
  // The token is the HttpOnly authtoken cookie /login set: not readable by scripts.
  const cookie = (await page.context().cookies()).find((c) => c.name === 'authtoken');
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', JSON.stringify(cookie));
  assert.equal(await page.evaluate(() => document.cookie), '');
  // A REST call of the UI: the Gremlin console.
  await page.evaluate(() => window.topotap.app.consoleQuery("G.V().Has('Name', 'login-eth0')"));
  await page.waitForFunction(() => document.querySelector('#tab-console').textContent.includes('login-eth0'), null, { timeout: 10000 });
  // A node added now arrives over the WebSocket.
  await post('/api/node', { ID: 'login-eth1', Metadata: { Name: 'login-eth1', Type: 'device' } });
  await page.waitForFunction(() => window.topotap.graph.nodes.has('login-eth1'), null, { timeout: 10000 });
  // A reload keeps the session.
  await page.reload();
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
  assert.equal(await page.isVisible('#login-form'), false);
  await page.screenshot({ path: path.join(ARTIFACTS, 'login-topology.png') });
});

test('logging out drops the session', async () => {
  await page.click('#logout');
  await page.waitForSelector('#login-form', { timeout: 10000 });
  assert.equal(await page.getAttribute('#conn', 'data-state'), 'idle');
  assert.equal(await page.evaluate(() => window.topotap.graph.nodes.size), 0);
  assert.equal((await page.context().cookies()).find((c) => c.name === 'authtoken'), undefined);
  const status = await page.evaluate(async () => (await fetch('/api/topology')).status);
  assert.equal(status, 401);
  // And back in.
  await fillLogin('webuser', 'web-secret');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
  await page.waitForFunction(() => window.topotap.graph.nodes.size === 3, null, { timeout: 10000 });
});

test('no unexpected console errors', () => {
  assert.deepEqual(consoleErrors.filter((m) => !m.expected), []);
});
