// Entry point of every page. `<body data-screen="login|wall|dispatch|district">`
// picks the screen; the rest is shared: token and role check, the live feed,
// the map, one requestAnimationFrame renderer driven by dirty flags, and a
// one-second tick for clocks and timers.

import { $, toast } from './lib/util.js';
import { applyI18n, t } from './lib/i18n.js';
import { loadToken, saveToken, decodeClaims, tokenProblem, homeOf, SCREEN_ROLES, toLogin } from './lib/auth.js';
import { state, dirty, schedule, setRenderer, pulseStart, onToast } from './lib/store.js';
import { startFeed, stopFeed, handleMessage, reconnectNow, updateConnection } from './lib/feed.js';
import { wireHeader, tickHeader, renderSeq } from './lib/ui.js';
import { bootLogin } from './screens/login.js';
import { wall } from './screens/wall.js';
import { dispatch } from './screens/dispatch.js';
import { district } from './screens/district.js';

const SCREENS = { wall, dispatch, district };

function bootScreen(name) {
  const token = loadToken();
  const problem = tokenProblem(token);
  if (problem) { toLogin(problem.key); return; }
  const claims = decodeClaims(token);
  if (!SCREEN_ROLES[name].includes(claims.role)) {
    location.replace(homeOf(claims.role));
    return;
  }
  state.role = claims.role;
  state.district = claims.district || null;
  state.screen = name;
  onToast(toast);

  function select(id) {
    state.selected = id || null;
    dirty.detail = true;
    dirty.map = true;
    dirty.select = true;
    schedule();
  }
  const screen = SCREENS[name]({ claims, token, select });

  wireHeader({
    claims,
    onLogout: () => { saveToken(null); stopFeed(); location.replace('/'); },
  });

  let animating = false;
  setRenderer(() => {
    if (dirty.incidents) { dirty.incidents = false; screen.incidents && screen.incidents(); dirty.kpi = true; }
    if (dirty.unitsAll || dirty.units.size) { screen.units && screen.units(); dirty.unitsAll = false; dirty.units.clear(); dirty.kpi = true; }
    if (dirty.alerts) { dirty.alerts = false; screen.alerts && screen.alerts(); }
    if (dirty.kpi) { dirty.kpi = false; screen.kpi && screen.kpi(); }
    if (dirty.select) { dirty.select = false; screen.select && screen.select(); }
    if (dirty.detail) { dirty.detail = false; screen.detail && screen.detail(); }
    if (dirty.seq) renderSeq();
    if (screen.map && (dirty.map || dirty.base || animating || pulseStart.size)) animating = screen.map.draw();
    if (animating) schedule();
  });

  if (screen.map) screen.map.loadZones();
  startFeed({
    token,
    channels: screen.channels,
    toast,
    onAuthRejected: () => { saveToken(null); toLogin('login.rejected'); },
  });
  const tick = () => {
    tickHeader();
    if (screen.tick) screen.tick();
  };
  setInterval(() => { tick(); dirty.kpi = true; schedule(); }, 1000);
  tick();

  // Hooks for tests and the console (no effect on the live feed).
  window.iocApp = {
    handleMessage: (m) => handleMessage(typeof m === 'string' ? JSON.parse(m) : m),
    select,
    fit: () => screen.map && screen.map.fit(),
    project: (lon, lat) => screen.map && screen.map.project(lon, lat),
    setZones: (gj) => screen.map && screen.map.setZones(gj),
    reconnect: reconnectNow,
    updateConnection,
    t,
  };
}

applyI18n();
const name = document.body.dataset.screen;
window.iocState = state;
if (name === 'login') bootLogin();
else if (SCREENS[name]) bootScreen(name);
else $('toasts') && toast(`unknown screen ${name}`, true);
