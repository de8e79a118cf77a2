// The three operator screens in a real browser (Debian's chromium, headless)
// against the running demo (`ioc demo --no-sim`): inputs are produced to the
// embedded broker with kcat, the screens must show them. One demo and one
// browser for the whole file, tests in order; the last one kills the demo
// and expects the RECONNECTING banner.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, mintToken, produce, now, waitForApi, launchBrowser, newPage, screenshot } from './helpers.mjs';

const WAIT = 15000; // generous: we assert appearance, not timing

// A small fleet spread over the districts: [id, kind, lat, lon].
const FLEET = [
  ['amb-hc-1', 'ambulance', 16.0544, 108.2042], ['amb-hc-2', 'ambulance', 16.035, 108.218],
  ['amb-st-1', 'ambulance', 16.07, 108.242], ['amb-tk-1', 'ambulance', 16.066, 108.186],
  ['amb-lc-1', 'ambulance', 16.078, 108.148], ['amb-nhs-1', 'ambulance', 16.0, 108.252],
  ['amb-cl-1', 'ambulance', 16.016, 108.196],
  ['fe-hc-1', 'fire_engine', 16.062, 108.222], ['fe-st-1', 'fire_engine', 16.085, 108.245],
  ['fe-lc-1', 'fire_engine', 16.08, 108.14], ['fe-nhs-1', 'fire_engine', 16.01, 108.25],
  ['pol-hc-1', 'police', 16.047, 108.215], ['pol-hc-2', 'police', 16.058, 108.21],
  ['pol-st-1', 'police', 16.06, 108.235], ['pol-tk-1', 'police', 16.07, 108.18],
  ['pol-lc-1', 'police', 16.075, 108.152], ['pol-cl-1', 'police', 16.02, 108.2],
  ['pol-hv-1', 'police', 16.0, 108.05], ['pol-nhs-1', 'police', 16.005, 108.258],
  ['res-hc-1', 'rescue', 16.042, 108.222], ['res-st-1', 'rescue', 16.1, 108.27],
  ['res-cl-1', 'rescue', 16.02, 108.19],
];

let demo;
let browser;
let wall;
let disp;
const errors = [];

function incident(id, category, priority, lat, lon, extra = {}) {
  return [id, { incident_id: id, reported_at: now(), source: 'operator', category, priority, location: { lat, lon }, ...extra }];
}
const rowSel = (id) => `#incident-list li[data-incident-id="${id}"]`;

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  const units = FLEET.map(([id, kind]) => [id, { unit_id: id, ts: now(), kind, status: 'available' }]);
  produce(demo.broker, 'ioc.units', units);
  await waitForApi(demo.base, '/api/units', demo.token, (u) => u.length === FLEET.length);
  produce(demo.broker, 'ioc.positions', FLEET.map(([id, , lat, lon]) => [id, { unit_id: id, ts: now(), lat, lon, speed_kmh: 0 }]));
  await waitForApi(demo.base, '/api/units', demo.token, (u) => u.filter((x) => x.position).length === FLEET.length);
  // Some open incidents so the screens have a picture.
  produce(demo.broker, 'ioc.incidents', [
    incident('seed-fire-st', 'fire', 2, 16.085, 108.243, { description: 'smoke from a warehouse roof' }),
    incident('seed-flood-cl', 'flood', 3, 16.018, 108.197),
    incident('seed-crime-tk', 'crime', 4, 16.068, 108.183),
    incident('seed-rescue-nhs', 'rescue', 3, 16.002, 108.255),
  ]);
  produce(demo.broker, 'ioc.calls', [
    ['seed-call-1', { call_id: 'seed-call-1', received_at: now(), line: '115', location: { lat: 16.075, lon: 108.15, accuracy_m: 30 }, category: 'medical', caller: '+84 905 111 222' }],
    ['seed-call-2', { call_id: 'seed-call-2', received_at: now(), line: '115', location: { lat: 16.0752, lon: 108.1502, accuracy_m: 30 }, category: 'medical', caller: '+84 905 333 444' }],
    ['seed-call-3', { call_id: 'seed-call-3', received_at: now(), line: '113', location: { lat: 16.066, lon: 108.19, accuracy_m: 20 }, category: 'traffic_accident', caller: '0905 123 467' }],
  ]);
  await waitForApi(demo.base, '/api/incidents', demo.token, (l) => l.length >= 6);
});

after(async () => {
  if (browser) await browser.close();
  if (demo) await demo.kill();
});

test('the sign-in page routes an IOC token to the wall and switches language', async () => {
  wall = await newPage(browser, errors);
  await wall.goto(demo.base + '/');
  await wall.waitForSelector('#login:not([hidden])');
  await wall.fill('#token-input', 'token: ' + demo.token);
  await wall.click('#login-submit');
  await wall.waitForURL(/\/wall\/$/);
  await wall.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  assert.equal(await wall.textContent('#status'), 'LIVE');
  // The token is kept for the session: a reload stays on the wall.
  await wall.reload();
  await wall.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  assert.match(wall.url(), /\/wall\/$/);
  // Vietnamese and back.
  await wall.click('#lang');
  await wall.waitForFunction(() => document.querySelector('#status').textContent === 'TRỰC TIẾP');
  assert.equal(await wall.getAttribute('html', 'lang'), 'vi');
  await wall.click('#lang');
  await wall.waitForFunction(() => document.querySelector('#status').textContent === 'LIVE');
});

test('the wall shows zones, units, KPIs and the open incidents', async () => {
  await wall.waitForFunction(() => document.querySelector('#map').dataset.zones === '8', null, { timeout: WAIT });
  await wall.waitForFunction((n) => document.querySelectorAll('#incident-list li').length >= n, 6, { timeout: WAIT });
  const amb = await wall.getAttribute('#kpi-units-ambulance', 'data-total');
  assert.equal(Number(amb), FLEET.filter((f) => f[1] === 'ambulance').length);
  await wall.waitForFunction(() => Number(document.querySelector('#kpi-calls15').dataset.value) >= 3, null, { timeout: WAIT });
  // Callers are masked everywhere but the dispatcher's console.
  const masked = await wall.evaluate(() => Object.values(window.iocState.incidents).map((i) => i.caller).filter(Boolean));
  assert.ok(masked.length > 0 && masked.every((c) => c.includes('*')), `wall callers must be masked: ${masked}`);
  // Sorted by priority.
  const prios = await wall.$$eval('#incident-list li', (lis) => lis.map((li) => Number(li.dataset.priority)));
  assert.deepEqual(prios, [...prios].sort((a, b) => a - b));
});

test('a produced incident appears on the wall and in the dispatcher queue', async () => {
  disp = await newPage(browser, errors);
  await disp.goto(`${demo.base}/?token=${demo.dispatcherToken}`);
  await disp.waitForURL(/\/dispatch\/$/);
  await disp.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  await disp.waitForFunction(() => document.querySelectorAll('#unit-board .chip').length > 0, null, { timeout: WAIT });
  // Received six minutes ago (a call-taker's backlog), so call-to-scene is minutes, not ms.
  const received = new Date(Date.now() - 6 * 60000).toISOString();
  produce(demo.broker, 'ioc.calls', [['t-call-hc', {
    call_id: 't-call-hc', received_at: received, line: '113', location: { lat: 16.047, lon: 108.2155, accuracy_m: 15 },
    category: 'traffic_accident', caller: '0905 765 432', note: 'motorbike and car, one injured',
  }]]);
  const wallRow = await wall.waitForSelector('#incident-list li[data-category="traffic_accident"][data-district="hai_chau"]', { timeout: WAIT });
  const id = await wallRow.getAttribute('data-incident-id');
  await disp.waitForSelector(rowSel(id), { timeout: WAIT });
  // The dispatcher sees the caller's number, unmasked; the wall does not.
  assert.match(await disp.textContent(`${rowSel(id)} .inc-caller`), /0905 765 432/);
  assert.ok(!(await wall.evaluate((i) => window.iocState.incidents[i].caller || '', id)).includes('765 432'));
  assert.equal(await disp.getAttribute(rowSel(id), 'data-assigned'), '0');
  assert.ok(['ok', 'warn', 'overdue'].includes(await disp.getAttribute(rowSel(id), 'data-timer')));
  process.env.T_INCIDENT = id;
});

test('an assignment from the console reaches the wall', async () => {
  const id = process.env.T_INCIDENT;
  await disp.click(rowSel(id));
  await disp.waitForSelector(`#incident-detail[data-incident-id="${id}"] #recommendation li[data-unit-id]`, { timeout: WAIT });
  const cands = await disp.$$eval('#recommendation li', (lis) => lis.map((li) => ({ id: li.dataset.unitId, kind: li.dataset.kind, eta: Number(li.dataset.etaS), d: Number(li.dataset.distanceM) })));
  const amb = cands.filter((c) => c.kind === 'ambulance');
  assert.ok(amb.length > 0, 'an ambulance is recommended');
  assert.deepEqual(amb.map((c) => c.eta), [...amb.map((c) => c.eta)].sort((a, b) => a - b), 'ranked by ETA');
  await screenshot(disp, 'dispatch.png');
  // One click.
  await disp.click(`#recommendation li[data-unit-id="${amb[0].id}"] button.assign`);
  await wall.waitForSelector(`${rowSel(id)}[data-assigned="1"]`, { timeout: WAIT });
  await disp.waitForSelector(`${rowSel(id)}[data-assigned="1"]`, { timeout: WAIT });
  await disp.waitForSelector(`#recommendation li[data-unit-id="${amb[0].id}"].assigned`, { timeout: WAIT });
  // The keyboard: the police candidate ranked n is assigned with key n.
  const policeRank = await disp.$eval('#recommendation li[data-kind="police"]', (li) => Number(li.dataset.rank));
  assert.ok(policeRank >= 1 && policeRank <= 9, `police candidate rank ${policeRank}`);
  await disp.keyboard.press(String(policeRank));
  await wall.waitForSelector(`${rowSel(id)}[data-assigned="2"]`, { timeout: WAIT });
  // The crew reports on scene: the wall computes call-to-scene time.
  produce(demo.broker, 'ioc.units', [[amb[0].id, { unit_id: amb[0].id, ts: now(), kind: 'ambulance', status: 'on_scene' }]]);
  await wall.waitForFunction(() => document.querySelector('#kpi-scene-median').dataset.value !== '', null, { timeout: WAIT });
  const median = Number(await wall.getAttribute('#kpi-scene-median', 'data-value'));
  assert.ok(median >= 300 && median < 900, `call-to-scene ${median} s for a call received 6 min ago`);
  await wall.waitForTimeout(400);
  await screenshot(wall, 'wall.png');
});

test('a district screen shows only its own district and acknowledges its alerts', async () => {
  const page = await newPage(browser, errors);
  await page.goto(`${demo.base}/?token=${mintToken('district', 'son_tra')}`);
  await page.waitForURL(/\/district\/$/);
  await page.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  assert.equal(await page.getAttribute('#district-name', 'data-district'), 'son_tra');
  produce(demo.broker, 'ioc.incidents', [
    incident('t-st-1', 'traffic_accident', 3, 16.072, 108.241),
    incident('t-hc-1', 'crime', 3, 16.05, 108.21),
  ]);
  await page.waitForSelector(rowSel('t-st-1'), { timeout: WAIT });
  await wall.waitForSelector(rowSel('t-hc-1'), { timeout: WAIT }); // it exists, elsewhere
  const districts = await page.$$eval('#incident-list li', (lis) => lis.map((li) => li.dataset.district));
  assert.ok(districts.length >= 2 && districts.every((d) => d === 'son_tra'), `only son_tra: ${districts}`);
  const alertDistricts = await page.$$eval('#alert-list li', (lis) => lis.map((li) => li.dataset.district));
  assert.ok(alertDistricts.every((d) => d === 'son_tra'), `alerts only son_tra: ${alertDistricts}`);
  const unitDistricts = await page.evaluate(() => Object.values(window.iocState.units).map((u) => u.district));
  assert.ok(unitDistricts.every((d) => d === 'son_tra'), `units only son_tra: ${unitDistricts}`);
  // The server refuses another district's channel to this token.
  const refused = await page.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws?access_token=${encodeURIComponent(sessionStorage.getItem('ioc.token'))}`);
    ws.onopen = () => ws.send(JSON.stringify({ op: 'subscribe', channel: 'district:hai_chau' }));
    ws.onmessage = (m) => { const f = JSON.parse(m.data); if (f.op === 'error' || f.op === 'snapshot') { ws.close(); resolve(f.op === 'error' ? f.code : 'snapshot'); } };
    setTimeout(() => resolve('timeout'), 5000);
  }));
  assert.equal(refused, 'forbidden');
  // Acknowledge an alert of the district.
  const ack = await page.waitForSelector('#alert-list li[data-status="raised"] button.ack', { timeout: WAIT });
  const alertId = await ack.evaluate((b) => b.closest('li').dataset.alertId);
  await ack.click();
  await page.waitForSelector(`#alert-list li[data-alert-id="${alertId}"][data-status="acknowledged"]`, { timeout: WAIT });
  await page.evaluate(() => window.iocApp.select('t-st-1'));
  await page.waitForTimeout(300);
  await screenshot(page, 'district.png');
  await page.close();
});

test('the wall shows the RECONNECTING banner when the gateway stops', async () => {
  assert.ok(await wall.isHidden('#banner'));
  await demo.kill();
  await wall.waitForSelector('#banner[data-state="reconnecting"]:not([hidden])', { timeout: WAIT });
  await wall.waitForSelector('#status[data-state="reconnecting"]', { timeout: WAIT });
  assert.match(await wall.textContent('#banner'), /RECONNECTING/);
  // The last picture stays on screen.
  assert.ok((await wall.$$('#incident-list li')).length >= 6);
  await disp.waitForSelector('#banner[data-state="reconnecting"]:not([hidden])', { timeout: WAIT });
  await screenshot(wall, 'wall-reconnecting.png');
  assert.deepEqual(errors, [], 'no page errors');
});
