// Test helpers: the running demo (`ioc demo --no-sim`), inputs produced to
// its embedded broker with kcat, and Debian's chromium driven by
// playwright-core. No browser download: the system chromium is used.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');
export const IOC_BIN =
  process.env.IOC_BIN || join(process.env.CARGO_TARGET_DIR || join(repoRoot, 'target'), 'debug', 'ioc');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const SCREENSHOTS = join(repoRoot, 'docs', 'screenshots');

/**
 * Starts `ioc demo --bind 127.0.0.1:0 --no-sim` and waits for its
 * `broker:`, `dashboards:`, `token:` and `dispatcher-token:` lines.
 */
export async function startDemo() {
  if (!existsSync(join(repoRoot, 'dashboards', 'dist', 'wall', 'index.html'))) {
    execFileSync(process.execPath, [join(repoRoot, 'dashboards', 'build.mjs')], { stdio: 'inherit' });
  }
  const proc = spawn(IOC_BIN, ['demo', '--bind', '127.0.0.1:0', '--no-sim'], {
    cwd: repoRoot,
    env: { ...process.env, IOC_DASHBOARDS_DIR: join(repoRoot, 'dashboards', 'dist'), RUST_LOG: process.env.RUST_LOG || 'warn', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-8000); });
  const info = await new Promise((resolveInfo, reject) => {
    const got = {};
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`ioc demo printed no addresses within 60 s; stderr:\n${stderr}`)), 60000);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`ioc demo exited early (${code}); stderr:\n${stderr}`)); });
    proc.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        const m = line.match(/^([\w-]+):\s*(\S+)$/);
        if (m) got[m[1]] = m[2];
      }
      if (got.broker && got.dashboards && got.token && got['dispatcher-token']) {
        clearTimeout(timer);
        const url = new URL(got.dashboards);
        resolveInfo({ broker: got.broker, base: url.origin, token: got.token, dispatcherToken: got['dispatcher-token'] });
      }
    });
  });
  const exited = new Promise((r) => proc.once('exit', r));
  return {
    ...info,
    proc,
    /** Kills the demo (SIGKILL: the gateway disappears at once) and waits for it. */
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Mints a token with the demo secret (`ioc token`). */
export function mintToken(role, district) {
  const args = ['token', '--role', role, '--sub', `test-${role}`];
  if (district) args.push('--district', district);
  return execFileSync(IOC_BIN, args, { cwd: repoRoot, encoding: 'utf8' }).trim();
}

/** Produces JSON messages `[key, value]` to a topic with kcat (tab-separated key). */
export function produce(broker, topic, messages) {
  const input = messages.map(([k, v]) => `${k}\t${JSON.stringify(v)}`).join('\n') + '\n';
  execFileSync('kcat', ['-P', '-b', broker, '-t', topic, '-K', '\t', '-X', 'message.timeout.ms=10000'], { input, timeout: 20000 });
}

export const now = () => new Date().toISOString();

/** Polls an HTTP JSON endpoint until `ok(body)` holds. */
export async function waitForApi(base, path, token, ok, timeoutMs = 20000) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    try {
      const r = await fetch(base + path, { headers: { Authorization: 'Bearer ' + token } });
      if (r.ok) { last = await r.json(); if (ok(last)) return last; }
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${path}: condition not met in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** A page at 1600×900 that fails the test on any uncaught page error. */
export async function newPage(browser, errors, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 }, deviceScaleFactor: 1, locale: opts.locale || 'en-US' });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e && e.stack ? e.stack : e)));
  page.on('console', (m) => { if (m.type() === 'error' && !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(m.text())) errors.push('console: ' + m.text()); });
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, name) });
}
