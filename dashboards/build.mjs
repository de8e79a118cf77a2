// Builds the operator screens into dist/ (served by the gateway as
// `gateway.dashboards_dir`): one bundle (app.js) and one stylesheet for
// every page, and one index.html per screen: / (sign-in), /wall/,
// /dispatch/, /district/. Page templates share partials (header, map,
// list head). `--watch` rebuilds on change. No CDN, no network at run time.

import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const src = join(root, 'src');
const out = join(root, 'dist');

const PAGES = { index: 'index.html', wall: 'wall/index.html', dispatch: 'dispatch/index.html', district: 'district/index.html' };
const TITLE_EXTRA = {
  district: '<span class="title-sep">·</span><span id="district-name"></span><select id="district-select" hidden aria-label="district"></select>',
};

const partial = (name) => readFileSync(join(src, 'partials', name + '.html'), 'utf8').trim();

function page(name, version) {
  let html = readFileSync(join(src, 'pages', name + '.html'), 'utf8');
  html = html.replace(/\{\{header:(\w+)\}\}/g, (_, screen) =>
    partial('header').replaceAll('{{screen}}', screen).replace('{{title_extra}}', TITLE_EXTRA[screen] || ''));
  html = html.replace(/\{\{map(?::(\w+))?\}\}/g, (_, opt) =>
    partial('map').replace('{{legend_extra}}', opt === 'hotspots' ? ' · <span data-i18n="legend.hotspot"></span>' : ''));
  html = html.replace(/\{\{incident-head(?::(\w+))?\}\}/g, (_, opt) =>
    partial('incident-head').replace('{{deadline_col}}', opt === 'deadline' ? '<span data-i18n="col.deadline" class="r"></span>' : '').replace('inc-grid', opt === 'deadline' ? 'inc-grid with-deadline' : 'inc-grid'));
  html = html.replaceAll('{{v}}', version);
  const left = html.match(/\{\{[^}]*\}\}/);
  if (left) throw new Error(`pages/${name}.html: unreplaced ${left[0]}`);
  return html;
}

async function build() {
  const started = Date.now();
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await esbuild.build({
    entryPoints: { app: join(src, 'main.js'), style: join(src, 'style.css') },
    bundle: true,
    minify: true,
    sourcemap: true,
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    format: 'iife',
    outdir: out,
    write: true,
    logLevel: 'warning',
  });
  const hash = createHash('sha256');
  for (const f of ['app.js', 'style.css']) hash.update(readFileSync(join(out, f)));
  const version = hash.digest('hex').slice(0, 12);
  for (const [name, rel] of Object.entries(PAGES)) {
    const file = join(out, rel);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, page(name, version));
  }
  console.log(`dashboards: built dist/ (${Object.keys(PAGES).length} pages, version ${version}) in ${Date.now() - started} ms`);
}

await build();
if (process.argv.includes('--watch')) {
  let timer = 0;
  watch(src, { recursive: true }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => build().catch((e) => console.error(e.message)), 100);
  });
  console.log('dashboards: watching src/');
}
