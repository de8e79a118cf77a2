// The live picture: what the websocket snapshots and events say, applied in
// `seq` order, plus statistics computed from the events (calls in the last
// 15 min, call-to-scene times today). Pure state; rendering reads it when a
// dirty flag is set. Exposed as `window.iocState` for tests.

import { tsMs, percentile } from './util.js';
import { t } from './i18n.js';

export const CFG = {
  pulseMs: 30000, // new incidents pulse on the map for this long
  maxAlertFeed: 60,
  callWindowMs: 15 * 60000, // "calls in the last 15 min" and hot spots
};

export const state = {
  incidents: {}, // open incidents: incident_id -> IncidentView
  units: {}, // unit_id -> UnitView
  alerts: {}, // active (not cleared) alerts: alert_id -> AlertView
  recommendations: {}, // incident_id -> DispatchRecommendation (latest)
  lastSeq: 0, // highest seq received on any channel
  channelSeq: {}, // channel -> last seq applied
  connection: 'reconnecting', // live | stale | reconnecting
  serverStale: false,
  selected: null, // selected incident_id
  zones: [], // [{id, name, name_vi, offshore}]
  zonesError: null,
  role: null,
  district: null,
  screen: null,
  eventsApplied: 0,
  snapshots: 0,
  frames: 0,
  stats: { calls15: 0, sceneMedianS: NaN, sceneP90S: NaN, sceneCount: 0 },
};

export const pulseStart = new Map(); // incident_id -> local ms when first seen opening
const entitySeq = { incident: new Map(), unit: new Map() }; // last seq applied per entity
export const alertFeed = new Map(); // alert_id -> AlertView (incl. cleared), for the feed
export const freshAlerts = new Set();
export let lastClosed = null; // last closed incident, for the detail panel
const listeners = { toast: () => {} };
export const onToast = (f) => { listeners.toast = f; };

// ------------------------------------------------------------ feed clock
// Event times may come from a simulated clock. We track the offset between
// the newest event time and the local clock to tick ages and timers.
export const feedClock = { offset: 0, at: 0 };
export const feedNow = () => Date.now() + feedClock.offset;
function sampleFeedClock(ts) {
  const tm = Date.parse(ts);
  if (!Number.isFinite(tm)) return;
  const now = Date.now();
  const sample = tm - now;
  if (feedClock.at === 0 || sample > feedClock.offset || now - feedClock.at > 10000) {
    feedClock.offset = sample;
    feedClock.at = now;
  }
}

// ------------------------------------------------------------ rendering hooks
export const dirty = {
  map: true, base: true, incidents: true, units: new Set(), unitsAll: true,
  alerts: true, detail: true, kpi: true, seq: true,
};
let renderer = () => {};
let rafId = 0;
export function setRenderer(f) { renderer = f; schedule(); }
export function schedule() {
  if (!rafId) rafId = requestAnimationFrame(() => { rafId = 0; renderer(); });
}
export function markAll() {
  dirty.map = dirty.incidents = dirty.unitsAll = dirty.alerts = dirty.detail = dirty.kpi = true;
  schedule();
}

export const isOpen = (inc) => inc && inc.status !== 'closed';

// ------------------------------------------------------------ statistics
// Calls: one entry per call (an incident opening carries call_count calls,
// an update adds the increase) at its feed time, with the incident's place
// for the hot-spot layer. Call-to-scene: incident opened_at -> the first
// unit.updated on_scene for that incident. Both are computed here from the
// events this screen saw: a reload starts them afresh (the server keeps no
// history of them).
export const calls = []; // {t, lat, lon}
const knownCalls = new Map(); // incident_id -> call_count seen
const openedAt = new Map(); // incident_id -> opened ms (kept after close)
const sceneDone = new Set(); // incident ids whose first arrival is known (or unknowable)
export const sceneTimes = []; // {incident_id, openedMs, seconds}

function noteCalls(inc, atMs) {
  if (!inc || !inc.incident_id) return;
  const before = knownCalls.get(inc.incident_id);
  const now = inc.call_count || 0;
  knownCalls.set(inc.incident_id, now);
  const add = before === undefined ? now : now - before;
  const loc = inc.location || {};
  const when = before === undefined ? tsMs(inc.opened_at) : atMs;
  for (let i = 0; i < add; i++) calls.push({ t: Number.isFinite(when) ? when : atMs, lat: loc.lat, lon: loc.lon });
  if (add > 0) calls.sort((a, b) => a.t - b.t);
}
function noteOpened(inc) {
  const o = tsMs(inc.opened_at);
  if (Number.isFinite(o) && !openedAt.has(inc.incident_id)) openedAt.set(inc.incident_id, o);
}
function noteUnit(u, atMs, fromSnapshot) {
  if (!u || u.status !== 'on_scene' || !u.incident_id || sceneDone.has(u.incident_id)) return;
  sceneDone.add(u.incident_id);
  if (fromSnapshot) return; // arrived before we connected: time unknown
  const o = openedAt.get(u.incident_id);
  if (!Number.isFinite(o) || !Number.isFinite(atMs) || atMs < o) return;
  sceneTimes.push({ incident_id: u.incident_id, openedMs: o, seconds: (atMs - o) / 1000 });
  dirty.kpi = true;
}
const dayKey = (ms) => { const d = new Date(ms); return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`; };

/** Recomputes state.stats at feed time `now`; returns it. */
export function computeStats(now = feedNow()) {
  const from = now - CFG.callWindowMs;
  while (calls.length && calls[0].t < from - CFG.callWindowMs) calls.shift(); // keep a little history
  let n = 0;
  for (const c of calls) if (c.t >= from && c.t <= now + 60000) n++;
  const today = dayKey(now);
  const secs = sceneTimes.filter((s) => dayKey(s.openedMs) === today).map((s) => s.seconds).sort((a, b) => a - b);
  state.stats = {
    calls15: n,
    sceneMedianS: percentile(secs, 0.5),
    sceneP90S: percentile(secs, 0.9),
    sceneCount: secs.length,
  };
  return state.stats;
}

/** Calls of the last 15 min with a place, for the hot-spot layer. */
export function recentCalls(now = feedNow()) {
  const from = now - CFG.callWindowMs;
  return calls.filter((c) => c.t >= from && Number.isFinite(c.lat) && Number.isFinite(c.lon));
}

// ------------------------------------------------------------ protocol
export function bumpSeq(channel, seq) {
  if (!Number.isFinite(seq)) return;
  state.channelSeq[channel] = seq;
  if (seq > state.lastSeq) state.lastSeq = seq;
  dirty.seq = true;
}

// Is this update older than what we already hold for the entity?
function older(kind, id, seq) {
  if (!Number.isFinite(seq)) return false;
  const have = entitySeq[kind].get(id);
  if (have !== undefined && seq < have) return true;
  entitySeq[kind].set(id, seq);
  return false;
}

function replaceCollection(target, list, idKey, kind, seq, keep) {
  const seqMap = kind ? entitySeq[kind] : null;
  const next = {};
  for (const item of list || []) {
    if (!item || !item[idKey]) continue;
    const id = item[idKey];
    if (!keep(item)) continue;
    if (seqMap && Number.isFinite(seq) && (seqMap.get(id) || -1) > seq && target[id]) {
      next[id] = target[id]; // we already applied something newer
    } else {
      next[id] = item;
      if (seqMap && Number.isFinite(seq)) seqMap.set(id, seq);
    }
  }
  if (seqMap && Number.isFinite(seq)) {
    for (const id of Object.keys(target)) {
      if (!next[id] && (seqMap.get(id) || -1) > seq) next[id] = target[id];
    }
  }
  for (const id of Object.keys(target)) if (!next[id]) delete target[id];
  Object.assign(target, next);
}

/** A snapshot replaces what its channel covers. */
export function applySnapshot(msg) {
  const C = msg.channel || 'city';
  const d = msg.data || {};
  const seq = msg.seq;
  const prevSeq = state.channelSeq[C];
  if (Number.isFinite(prevSeq) && Number.isFinite(seq) && seq < prevSeq) {
    // The sequence went backwards: a new output log (fresh demo, reset
    // broker). Forget per-entity ordering learnt from the old one.
    entitySeq.incident.clear();
    entitySeq.unit.clear();
    state.channelSeq = {};
    state.lastSeq = 0;
  }
  state.snapshots++;
  if (Array.isArray(d.incidents)) {
    const now = Date.now();
    const fnow = feedNow();
    replaceCollection(state.incidents, d.incidents, 'incident_id', 'incident', seq, isOpen);
    for (const inc of Object.values(state.incidents)) {
      noteOpened(inc);
      noteCalls(inc, fnow);
      const age = fnow - tsMs(inc.opened_at);
      if (!pulseStart.has(inc.incident_id) && age >= 0 && age < CFG.pulseMs) pulseStart.set(inc.incident_id, now - age);
    }
    dirty.incidents = true;
  }
  if (Array.isArray(d.units)) {
    replaceCollection(state.units, d.units, 'unit_id', 'unit', seq, () => true);
    for (const u of Object.values(state.units)) noteUnit(u, NaN, true);
    dirty.unitsAll = true;
  }
  if (Array.isArray(d.alerts)) {
    replaceCollection(state.alerts, d.alerts, 'alert_id', null, seq, (a) => a.status !== 'cleared');
    for (const id of Array.from(alertFeed.keys())) if (!state.alerts[id]) alertFeed.delete(id);
    for (const a of Object.values(state.alerts)) alertFeed.set(a.alert_id, a);
    dirty.alerts = true;
  }
  if (Array.isArray(d.recommendations)) {
    replaceCollection(state.recommendations, d.recommendations, 'incident_id', null, seq, () => true);
    dirty.detail = true;
  }
  // With no live event yet, adopt the snapshot's clock only if it is
  // clearly not wall-clock time (a simulated or replayed day).
  if (feedClock.at === 0) {
    let newest = NaN;
    for (const i of Object.values(state.incidents)) newest = Math.max(newest || 0, tsMs(i.updated_at) || 0);
    for (const u of Object.values(state.units)) if (u.last_fix) newest = Math.max(newest || 0, tsMs(u.last_fix) || 0);
    if (newest > 0 && Math.abs(newest - Date.now()) > 5 * 60000) feedClock.offset = newest - Date.now();
  }
  bumpSeq(C, seq);
  markAll();
}

function removeIncident(id, view) {
  if (state.incidents[id]) lastClosed = Object.assign({}, state.incidents[id], view || {}, { status: 'closed' });
  else if (view) lastClosed = Object.assign({}, view, { status: 'closed' });
  delete state.incidents[id];
  delete state.recommendations[id];
  pulseStart.delete(id);
  dirty.incidents = true;
  dirty.map = true;
  if (state.selected === id) dirty.detail = true;
}

/** One output event, already checked for order by the feed. */
export function applyEvent(ev) {
  const d = ev.data || {};
  const seq = ev.seq;
  if (ev.ts) sampleFeedClock(ev.ts);
  const at = Number.isFinite(tsMs(ev.ts)) ? tsMs(ev.ts) : feedNow();
  state.eventsApplied++;
  switch (ev.type) {
    case 'incident.opened':
    case 'incident.updated': {
      const id = d.incident_id;
      if (!id || older('incident', id, seq)) return;
      noteOpened(d);
      noteCalls(d, at);
      dirty.kpi = true;
      if (d.status === 'closed') { removeIncident(id, d); break; }
      state.incidents[id] = d;
      if (ev.type === 'incident.opened' && !pulseStart.has(id)) pulseStart.set(id, Date.now());
      dirty.incidents = true;
      dirty.map = true;
      if (state.selected === id) dirty.detail = true;
      break;
    }
    case 'incident.closed': {
      const id = d.incident_id;
      if (!id) return;
      older('incident', id, seq);
      removeIncident(id, d);
      break;
    }
    case 'dispatch.recommended': {
      if (!d.incident_id) return;
      state.recommendations[d.incident_id] = d;
      if (state.selected === d.incident_id) dirty.detail = true;
      dirty.map = true;
      break;
    }
    case 'dispatch.assigned':
    case 'dispatch.unassigned': {
      const inc = state.incidents[d.incident_id];
      if (inc) {
        const cur = Array.isArray(inc.assigned_units) ? inc.assigned_units : [];
        let next = cur;
        if (ev.type === 'dispatch.assigned' && !cur.includes(d.unit_id)) next = cur.concat([d.unit_id]);
        if (ev.type === 'dispatch.unassigned' && cur.includes(d.unit_id)) next = cur.filter((u) => u !== d.unit_id);
        if (next !== cur) {
          state.incidents[d.incident_id] = Object.assign({}, inc, {
            assigned_units: next,
            status: next.length > 0 ? 'dispatched' : inc.status === 'dispatched' ? 'open' : inc.status,
          });
          dirty.incidents = true;
        }
      }
      const u = state.units[d.unit_id];
      if (u) {
        if (ev.type === 'dispatch.assigned') state.units[d.unit_id] = Object.assign({}, u, { incident_id: d.incident_id });
        else if (u.incident_id === d.incident_id) { const c = Object.assign({}, u); delete c.incident_id; state.units[d.unit_id] = c; }
        dirty.units.add(d.unit_id);
      }
      if (state.selected === d.incident_id) dirty.detail = true;
      dirty.map = true;
      break;
    }
    case 'unit.updated': {
      const id = d.unit_id;
      if (!id || older('unit', id, seq)) return;
      const old = state.units[id];
      // A district screen gets the update of a unit leaving its district
      // (docs/websocket.md): drop the unit rather than keep it with a
      // district that is no longer this screen's.
      if (state.screen === 'district' && state.district && d.district !== state.district) {
        if (old) {
          delete state.units[id];
          dirty.unitsAll = true;
          dirty.map = true;
        }
        break;
      }
      const u = Object.assign({}, d);
      if (!u.position && old && old.position) u.position = old.position;
      state.units[id] = u;
      noteUnit(u, at, false);
      if (!old) dirty.unitsAll = true;
      else dirty.units.add(id);
      dirty.map = true;
      if (state.selected && (u.incident_id === state.selected || (old && old.incident_id === state.selected))) dirty.detail = true;
      break;
    }
    case 'alert.raised':
    case 'alert.acknowledged':
    case 'alert.cleared': {
      const id = d.alert_id;
      if (!id) return;
      if (ev.type === 'alert.cleared' || d.status === 'cleared') {
        delete state.alerts[id];
        alertFeed.set(id, Object.assign({}, d, { status: 'cleared' }));
      } else {
        state.alerts[id] = d;
        alertFeed.set(id, d);
        if (ev.type === 'alert.raised') freshAlerts.add(id);
      }
      dirty.alerts = true;
      dirty.kpi = true;
      break;
    }
    case 'command.rejected':
      listeners.toast(t('cmd.rejected', { op: d.op || '', inc: d.incident_id ? ' (' + d.incident_id + ')' : '', reason: d.reason || '' }), true);
      break;
    default:
      break;
  }
  schedule();
}
