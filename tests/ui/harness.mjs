// What the browser test files share: where things are, starting and stopping a
// topotap, launching Debian's Chromium through playwright-core, collecting the page's
// console errors.

import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const BIN = path.resolve(ROOT, process.env.TOPOTAP_BIN || 'target/debug/topotap');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ARTIFACTS = path.join(ROOT, 'target', 'ui-artifacts');
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Whether the tests run as root (namespaces, veths, runc need it). */
export const IS_ROOT = process.getuid?.() === 0;

/** Whether `cmd args...` runs and exits 0 (a tool a test needs is installed). */
export function have(cmd, args = ['--version']) {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const p = srv.address().port;
  srv.close();
  await once(srv, 'close');
  return p;
}

/** Starts `topotap <args>` and resolves once it prints "listening on". */
export async function startTopotap(args) {
  const child = spawn(BIN, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TOPOTAP_LOG: 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`topotap did not start in 20 s: ${stderr}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`topotap exited with ${code}: ${stderr}`));
    });
  });
  child.removeAllListeners('exit');
  return child;
}

export async function stopTopotap(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

/**
 * Launches Chromium and opens one page. Console errors and uncaught exceptions are
 * pushed to `errors` as {text, url, expected}; `isExpected(msg)` tells the ones the UI
 * causes on purpose.
 */
export async function launchPage(errors, isExpected = () => false) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'dark' });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const msg = { text: m.text(), url: m.location()?.url };
    msg.expected = isExpected(msg);
    errors.push(msg);
  });
  page.on('pageerror', (e) => errors.push({ text: `pageerror: ${e.message}`, url: '', expected: false }));
  return { browser, page };
}
