// Da Nang IOC — live wall screen.
// Plain ES2020, no framework, no build step, no external assets.
// Contracts: /ws protocol and GET /api/zones as described in DESIGN.md.
'use strict';

(() => {
  // ---------------------------------------------------------------- config
  const CFG = {
    pingMs: 15000, // heartbeat we send
    staleAfterMs: 30000, // nothing received for this long: feed is stale
    deadAfterMs: 60000, // nothing received for this long: drop and reconnect
    resyncTimeoutMs: 15000, // waiting this long for a fresh snapshot: reconnect
    backoffMinMs: 1000,
    backoffMaxMs: 10000,
    pulseMs: 30000, // new incidents pulse on the map for this long
    zonesRetryMs: 15000,
    maxAlertFeed: 60,
    tokenKey: 'ioc.token',
  };
  const PRIO_COLOR = { 1: '#ff3b30', 2: '#ff9500', 3: '#ffd60a', 4: '#3b8bff' };
  const KINDS = ['ambulance', 'fire_engine', 'police', 'rescue'];
  const KIND = {
    ambulance: { letter: 'A', color: '#22d3ee' },
    fire_engine: { letter: 'F', color: '#f472b6' },
    police: { letter: 'P', color: '#a78bfa' },
    rescue: { letter: 'R', color: '#a3e635' },
  };
  // Land districts of Da Nang, used until /api/zones answers.
  const FALLBACK_BBOX = { minLon: 107.8, maxLon: 108.35, minLat: 15.9, maxLat: 16.2 };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  // ----------------------------------------------------------------- state
  // Exposed for tests: plain objects keyed by id.
  const state = {
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
    eventsApplied: 0,
    snapshots: 0,
    frames: 0,
  };
  window.iocState = state;

  const pulseStart = new Map(); // incident_id -> local ms when first seen opening
  const entitySeq = { incident: new Map(), unit: new Map() }; // last seq applied per entity
  const alertFeed = new Map(); // alert_id -> AlertView (incl. cleared), for the feed
  const freshAlerts = new Set();
  let lastClosed = null; // last closed incident, for the detail panel

  // Feed clock: event times may come from a simulated clock. We track the
  // offset between the newest event time and the local clock to tick ages.
  const feedClock = { offset: 0, at: 0 };
  const feedNow = () => Date.now() + feedClock.offset;
  function sampleFeedClock(ts) {
    const t = Date.parse(ts);
    if (!Number.isFinite(t)) return;
    const now = Date.now();
    const sample = t - now;
    if (feedClock.at === 0 || sample > feedClock.offset || now - feedClock.at > 10000) {
      feedClock.offset = sample;
      feedClock.at = now;
    }
  }

  // ----------------------------------------------------------------- utils
  const pad2 = (n) => String(n).padStart(2, '0');
  function hms(ms) {
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }
  function fmtAge(ms) {
    if (!Number.isFinite(ms)) return '--:--';
    const neg = ms < 0;
    let s = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    const txt = h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${pad2(m)}:${pad2(s)}`;
    return neg ? `-${txt}` : txt;
  }
  const tsMs = (ts) => {
    const t = Date.parse(ts);
    return Number.isFinite(t) ? t : NaN;
  };
  const catLabel = (c) => (c ? String(c).replace(/_/g, ' ') : 'unknown');
  const kindLetter = (k) => (KIND[k] ? KIND[k].letter : '?');
  const kindColor = (k) => (KIND[k] ? KIND[k].color : '#cccccc');
  const prioColor = (p) => PRIO_COLOR[p] || '#cccccc';
  const km = (m) => (Number.isFinite(m) ? `${(m / 1000).toFixed(1)} km` : '—');
  const mins = (s) => (Number.isFinite(s) ? `${(s / 60).toFixed(1)} min` : '—');
  const zoneById = new Map();
  function districtName(id) {
    if (!id) return 'outside zones';
    const z = zoneById.get(id);
    return z ? z.name_vi || z.name || id : id;
  }
  const isOpen = (inc) => inc && inc.status !== 'closed';

  let toastCount = 0;
  function toast(text, isError) {
    const box = $('toasts');
    const t = el('div', isError ? 'toast error' : 'toast', text);
    box.appendChild(t);
    toastCount++;
    while (box.children.length > 4) box.firstChild.remove();
    setTimeout(() => t.remove(), 7000);
  }

  // ----------------------------------------------------------------- token
  let token = null;
  const memoryStore = {};
  function storeGet(k) {
    try { return sessionStorage.getItem(k); } catch (_) { return memoryStore[k] || null; }
  }
  function storeSet(k, v) {
    try { if (v === null) sessionStorage.removeItem(k); else sessionStorage.setItem(k, v); } catch (_) { /* private mode */ }
    if (v === null) delete memoryStore[k]; else memoryStore[k] = v;
  }
  function cleanToken(t) {
    return String(t || '').trim().replace(/^token:\s*/i, '').replace(/^bearer\s+/i, '').trim();
  }
  function decodeClaims(t) {
    try {
      const part = t.split('.')[1];
      const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4);
      const json = decodeURIComponent(Array.from(atob(b64), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
      return JSON.parse(json);
    } catch (_) {
      return null;
    }
  }
  function readToken() {
    let fromUrl = null;
    try {
      const url = new URL(location.href);
      fromUrl = url.searchParams.get('token');
      if (fromUrl !== null) {
        url.searchParams.delete('token');
        history.replaceState(history.state, '', url.pathname + url.search + url.hash);
      }
    } catch (_) { /* ignore */ }
    if (fromUrl) {
      const t = cleanToken(fromUrl);
      storeSet(CFG.tokenKey, t);
      return t;
    }
    return storeGet(CFG.tokenKey);
  }
  function setToken(t) {
    token = t;
    storeSet(CFG.tokenKey, t);
    const claims = t ? decodeClaims(t) : null;
    state.role = claims && claims.role ? claims.role : null;
    state.district = claims && claims.district ? claims.district : null;
    const who = $('who');
    who.textContent = claims ? `${claims.sub || '?'} · ${state.role || '?'}${state.district ? ' · ' + state.district : ''}` : '';
    $('logout').hidden = !t;
    return claims;
  }
  function tokenProblem(t) {
    if (!t) return 'no token';
    if (t.split('.').length !== 3) return 'this does not look like a JWT (three dot-separated parts)';
    const c = decodeClaims(t);
    if (c && Number.isFinite(c.exp) && c.exp * 1000 < Date.now()) return `token expired at ${new Date(c.exp * 1000).toLocaleString()}`;
    return null;
  }
  function showLogin(message) {
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    setTimeout(() => $('token-input').focus(), 0);
    updateConnection();
  }

  // ------------------------------------------------------------- websocket
  let ws = null;
  let backoff = CFG.backoffMinMs;
  let reconnectTimer = 0;
  let nextRetryAt = 0;
  let attempt = 0;
  let lastMsgAt = 0;
  let connectedAt = 0;
  let disconnectedAt = 0;
  let failuresWithoutOpen = 0;
  let lastCloseInfo = '';
  let everSnapshot = false;
  const awaiting = {}; // channel -> local ms when a fresh snapshot was requested
  const forbidden = new Set();

  function wantedChannels() {
    if (state.role === 'district' && state.district) return [`district:${state.district}`];
    return ['city', 'units'].filter((c) => !forbidden.has(c));
  }
  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }
  function subscribe(channel, withSince) {
    const msg = { op: 'subscribe', channel };
    const last = state.channelSeq[channel];
    if (withSince && Number.isFinite(last)) msg.since = last;
    else awaiting[channel] = Date.now();
    send(msg);
  }
  function resync(channel, why) {
    if (awaiting[channel]) return;
    toast(`${channel}: ${why}; reloading snapshot`);
    awaiting[channel] = Date.now();
    send({ op: 'unsubscribe', channel });
    send({ op: 'subscribe', channel });
    updateConnection();
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    nextRetryAt = 0;
    const problem = tokenProblem(token);
    if (problem) {
      showLogin(problem === 'no token' ? '' : problem);
      return;
    }
    attempt++;
    const url = (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws?access_token=' + encodeURIComponent(token);
    let sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      lastCloseInfo = String(e && e.message ? e.message : e);
      scheduleReconnect();
      return;
    }
    ws = sock;
    updateConnection();
    sock.onopen = () => {
      if (ws !== sock) return;
      connectedAt = Date.now();
      disconnectedAt = 0;
      lastMsgAt = Date.now();
      failuresWithoutOpen = 0;
      state.serverStale = false;
      for (const c of wantedChannels()) subscribe(c, true);
      updateConnection();
    };
    sock.onmessage = (m) => {
      if (ws !== sock) return;
      lastMsgAt = Date.now();
      backoff = CFG.backoffMinMs;
      attempt = 0;
      handleRaw(m.data);
    };
    sock.onclose = (e) => {
      if (ws !== sock) return;
      ws = null;
      const opened = connectedAt > 0;
      connectedAt = 0;
      if (opened || !disconnectedAt) disconnectedAt = Date.now();
      lastCloseInfo = `closed${e.code ? ' ' + e.code : ''}${e.reason ? ': ' + e.reason : ''}`;
      if (!opened) failuresWithoutOpen++;
      if (failuresWithoutOpen >= 2) probeAuth();
      scheduleReconnect();
    };
    sock.onerror = () => { /* onclose follows */ };
  }
  function dropSocket(reason) {
    const s = ws;
    ws = null;
    connectedAt = 0;
    disconnectedAt = Date.now();
    lastCloseInfo = reason;
    if (s) { try { s.close(4000, reason.slice(0, 100)); } catch (_) { try { s.close(); } catch (__) { /* ignore */ } } }
    scheduleReconnect();
  }
  function scheduleReconnect() {
    clearTimeout(reconnectTimer);
    if (!token) { updateConnection(); return; }
    const delay = Math.min(CFG.backoffMaxMs, backoff) * (0.85 + Math.random() * 0.3);
    backoff = Math.min(CFG.backoffMaxMs, backoff * 2);
    nextRetryAt = Date.now() + delay;
    reconnectTimer = setTimeout(connect, delay);
    updateConnection();
  }
  // A 401 before the upgrade is invisible to the WebSocket API: ask HTTP.
  let probing = false;
  async function probeAuth() {
    if (probing || !token) return;
    probing = true;
    try {
      const r = await fetch('/api/incidents', { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
      if (r.status === 401) {
        clearTimeout(reconnectTimer);
        setToken(null);
        showLogin('The server rejected this token (401). Paste a valid one.');
      }
    } catch (_) { /* server unreachable: keep retrying */ }
    probing = false;
  }

  // -------------------------------------------------------------- protocol
  function handleRaw(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (_) {
      return;
    }
    if (Array.isArray(msg)) msg.forEach(handleMessage);
    else handleMessage(msg);
  }
  function handleMessage(msg) {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.op) {
      case 'snapshot': applySnapshot(msg); break;
      case 'event': onEventMsg(msg); break;
      case 'status':
        state.serverStale = !!msg.stale;
        break;
      case 'error': onServerError(msg); break;
      case 'pong': break;
      default: break;
    }
    updateConnection();
  }
  function bumpSeq(channel, seq) {
    if (!Number.isFinite(seq)) return;
    state.channelSeq[channel] = seq;
    if (seq > state.lastSeq) state.lastSeq = seq;
    dirty.seq = true;
  }
  function onServerError(msg) {
    const code = msg.code || 'error';
    toast(`Server: ${code}${msg.message ? ' — ' + msg.message : ''}`, true);
    if (code === 'forbidden') {
      const chans = msg.channel ? [msg.channel] : Object.keys(awaiting).filter((c) => !Number.isFinite(state.channelSeq[c]));
      for (const c of chans) { forbidden.add(c); delete awaiting[c]; }
    }
  }

  function onEventMsg(msg) {
    const C = msg.channel || 'city';
    if (awaiting[C]) return; // a fresh snapshot is on its way
    const ev = msg.event;
    if (!ev || typeof ev !== 'object') return;
    const seq = Number.isFinite(msg.seq) ? msg.seq : ev.seq;
    const last = state.channelSeq[C];
    if (Number.isFinite(last) && Number.isFinite(seq) && seq <= last) return; // already applied
    if (msg.prev_seq !== undefined && msg.prev_seq !== null && Number.isFinite(last) && msg.prev_seq !== last) {
      resync(C, `gap (expected prev_seq ${last}, got ${msg.prev_seq})`);
      return;
    }
    bumpSeq(C, seq);
    applyEvent(ev);
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

  function applySnapshot(msg) {
    const C = msg.channel || 'city';
    const d = msg.data || {};
    delete awaiting[C];
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
    everSnapshot = true;
    if (Array.isArray(d.incidents)) {
      const now = Date.now();
      const fnow = feedNow();
      replaceCollection(state.incidents, d.incidents, 'incident_id', 'incident', seq, isOpen);
      for (const inc of Object.values(state.incidents)) {
        const age = fnow - tsMs(inc.opened_at);
        if (!pulseStart.has(inc.incident_id) && age >= 0 && age < CFG.pulseMs) pulseStart.set(inc.incident_id, now - age);
      }
      dirty.incidents = true;
    }
    if (Array.isArray(d.units)) {
      replaceCollection(state.units, d.units, 'unit_id', 'unit', seq, () => true);
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

  function applyEvent(ev) {
    const d = ev.data || {};
    const seq = ev.seq;
    if (ev.ts) sampleFeedClock(ev.ts);
    state.eventsApplied++;
    switch (ev.type) {
      case 'incident.opened':
      case 'incident.updated': {
        const id = d.incident_id;
        if (!id || older('incident', id, seq)) return;
        if (d.status === 'closed') { removeIncident(id, d); return; }
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
        const u = Object.assign({}, d);
        if (!u.position && old && old.position) u.position = old.position;
        state.units[id] = u;
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
        break;
      }
      case 'command.rejected':
        toast(`Command ${d.op || ''} rejected${d.incident_id ? ' (' + d.incident_id + ')' : ''}: ${d.reason || ''}`, true);
        break;
      default:
        break;
    }
    schedule();
  }

  // ------------------------------------------------------ connection state
  function computeConnection() {
    if (!ws || ws.readyState !== WebSocket.OPEN) return 'reconnecting';
    const waiting = Object.keys(awaiting).length > 0;
    if (waiting && !everSnapshot) return 'reconnecting';
    if (waiting || state.serverStale) return 'stale';
    if (Date.now() - lastMsgAt > CFG.staleAfterMs) return 'stale';
    return 'live';
  }
  let shownConn = '';
  let shownBanner = '';
  function updateConnection() {
    const c = computeConnection();
    state.connection = c;
    let label;
    let banner = '';
    let sub = '';
    if (c === 'live') label = 'LIVE';
    else if (c === 'stale') {
      label = 'STALE';
      banner = 'STALE — picture may be out of date';
      if (state.serverStale) sub = 'The server lost its data feed (broker unavailable). Showing the last known picture.';
      else if (Object.keys(awaiting).length) sub = 'Missed events detected; reloading the full picture…';
      else sub = `No data received for ${Math.round((Date.now() - lastMsgAt) / 1000)} s (last at ${hms(lastMsgAt)}).`;
    } else if (!token) {
      label = 'NO TOKEN';
      banner = 'NOT CONNECTED — operator token needed';
    } else if (ws && ws.readyState === WebSocket.CONNECTING && !everSnapshot) {
      label = 'CONNECTING';
      banner = 'CONNECTING…';
    } else if (ws && ws.readyState === WebSocket.OPEN) {
      label = 'CONNECTING';
      banner = 'CONNECTED — loading the city picture…';
    } else {
      label = 'RECONNECTING';
      banner = everSnapshot ? 'RECONNECTING — live feed lost' : 'RECONNECTING — cannot reach the server';
      const wait = nextRetryAt ? Math.max(0, Math.ceil((nextRetryAt - Date.now()) / 1000)) : 0;
      sub = `${lastCloseInfo ? lastCloseInfo + ' · ' : ''}${disconnectedAt ? 'since ' + hms(disconnectedAt) + ' · ' : ''}${nextRetryAt ? 'retry in ' + wait + ' s' : 'retrying…'}${everSnapshot ? ' · showing the last known picture' : ''}`;
    }
    if (c !== shownConn || label !== $('status').textContent) {
      shownConn = c;
      const s = $('status');
      s.dataset.state = c;
      s.textContent = label;
      document.body.dataset.state = c;
    }
    const key = c + '|' + banner + '|' + sub;
    if (key !== shownBanner) {
      shownBanner = key;
      const b = $('banner');
      b.dataset.state = c;
      b.hidden = !banner;
      b.textContent = banner;
      if (sub) b.appendChild(el('small', null, sub));
    }
  }

  // ------------------------------------------------------------ rendering
  const dirty = {
    map: true, base: true, incidents: true, units: new Set(), unitsAll: true,
    alerts: true, detail: true, kpi: true, seq: true,
  };
  function markAll() {
    dirty.map = dirty.incidents = dirty.unitsAll = dirty.alerts = dirty.detail = dirty.kpi = true;
    schedule();
  }
  let rafId = 0;
  function schedule() {
    if (!rafId) rafId = requestAnimationFrame(frame);
  }
  function frame() {
    rafId = 0;
    if (dirty.incidents) { renderIncidentList(); dirty.kpi = true; }
    if (dirty.unitsAll || dirty.units.size) { renderUnitList(); dirty.kpi = true; }
    if (dirty.alerts) renderAlerts();
    if (dirty.kpi) renderKpis();
    if (dirty.detail) renderDetail();
    if (dirty.seq) {
      dirty.seq = false;
      const s = $('last-seq');
      s.textContent = state.lastSeq ? String(state.lastSeq) : '—';
      s.dataset.value = String(state.lastSeq);
    }
    const animating = pulseStart.size > 0;
    if (dirty.map || dirty.base || animating) drawMap();
    if (animating) schedule();
  }

  // --- KPIs
  function setKpi(id, value, html) {
    const k = $(id);
    if (!k) return;
    k.dataset.value = String(value);
    const v = k.querySelector('.kpi-v');
    if (html) {
      v.textContent = String(value);
      v.appendChild(el('small', null, '/' + html));
    } else v.textContent = String(value);
  }
  function renderKpis() {
    dirty.kpi = false;
    const byP = { 1: 0, 2: 0, 3: 0, 4: 0 };
    let open = 0;
    for (const inc of Object.values(state.incidents)) {
      if (!isOpen(inc)) continue;
      open++;
      if (byP[inc.priority] !== undefined) byP[inc.priority]++;
    }
    setKpi('kpi-open', open);
    for (const p of [1, 2, 3, 4]) setKpi(`kpi-open-p${p}`, byP[p]);
    const avail = {};
    const total = {};
    for (const k of KINDS) { avail[k] = 0; total[k] = 0; }
    for (const u of Object.values(state.units)) {
      if (total[u.kind] === undefined) continue;
      total[u.kind]++;
      if (u.status === 'available') avail[u.kind]++;
    }
    for (const k of KINDS) {
      setKpi(`kpi-units-${k}`, avail[k], String(total[k]));
      $(`kpi-units-${k}`).dataset.total = String(total[k]);
    }
  }

  // --- incident list
  const incRows = new Map(); // id -> {li, inc, age}
  function sortedOpenIncidents() {
    const list = Object.values(state.incidents).filter(isOpen);
    list.sort((a, b) => (a.priority - b.priority) || (tsMs(a.opened_at) - tsMs(b.opened_at)) || String(a.incident_id).localeCompare(String(b.incident_id)));
    return list;
  }
  function fillIncidentRow(row, inc) {
    const li = row.li;
    row.inc = inc;
    li.dataset.priority = String(inc.priority);
    li.dataset.status = inc.status || '';
    li.dataset.category = inc.category || '';
    li.dataset.district = inc.district || '';
    const assigned = Array.isArray(inc.assigned_units) ? inc.assigned_units.length : 0;
    li.dataset.assigned = String(assigned);
    li.dataset.calls = String(inc.call_count || 0);
    li.className = 'inc-grid' + (state.selected === inc.incident_id ? ' selected' : '');
    row.prio.className = `prio p${inc.priority}`;
    row.prio.textContent = `P${inc.priority}`;
    row.cat.textContent = catLabel(inc.category);
    row.dist.textContent = ' · ' + districtName(inc.district);
    row.calls.textContent = String(inc.call_count || 0);
    row.units.textContent = String(assigned);
    li.title = `${inc.incident_id} · ${inc.status} · source ${inc.source || '?'}`;
    row.openedMs = tsMs(inc.opened_at);
    row.deadlineMs = tsMs(inc.assign_deadline);
    tickIncidentRow(row, feedNow());
  }
  function tickIncidentRow(row, fnow) {
    row.age.textContent = fmtAge(fnow - row.openedMs);
    const overdue = row.inc.status === 'open' && Number.isFinite(row.deadlineMs) && fnow > row.deadlineMs &&
      !(row.inc.assigned_units && row.inc.assigned_units.length);
    row.li.classList.toggle('overdue', overdue);
  }
  function makeIncidentRow(inc) {
    const li = el('li');
    li.dataset.incidentId = inc.incident_id;
    const row = { li, inc: null };
    row.prio = el('span', 'prio');
    const main = el('span', 'inc-main');
    row.cat = el('span', 'cat');
    row.dist = el('span', 'dist');
    main.append(row.cat, row.dist);
    row.age = el('span', 'inc-age');
    row.calls = el('span', 'inc-calls');
    row.units = el('span', 'inc-units');
    li.append(row.prio, main, row.age, row.calls, row.units);
    li.addEventListener('click', () => select(state.selected === inc.incident_id ? null : inc.incident_id));
    return row;
  }
  function renderIncidentList() {
    dirty.incidents = false;
    const ul = $('incident-list');
    const list = sortedOpenIncidents();
    for (const [id, row] of incRows) {
      if (!isOpen(state.incidents[id])) { row.li.remove(); incRows.delete(id); }
    }
    let prev = null;
    for (const inc of list) {
      let row = incRows.get(inc.incident_id);
      if (!row) { row = makeIncidentRow(inc); incRows.set(inc.incident_id, row); }
      if (row.inc !== inc) fillIncidentRow(row, inc);
      const want = prev ? prev.nextSibling : ul.firstChild;
      if (want !== row.li) ul.insertBefore(row.li, want);
      prev = row.li;
    }
    $('incident-count').textContent = String(list.length);
  }

  // --- units list (compact; collapsed by default, always in the DOM)
  const unitRows = new Map(); // id -> {li, sig, txt}
  function fillUnitRow(row, u) {
    const sig = [u.kind, u.status, u.district, u.incident_id].join('|');
    if (row.sig === sig) return;
    row.sig = sig;
    const li = row.li;
    li.dataset.kind = u.kind || '';
    li.dataset.status = u.status || '';
    li.dataset.district = u.district || '';
    if (u.incident_id) li.dataset.incidentId = u.incident_id; else delete li.dataset.incidentId;
    row.k.className = `ukind k-${u.kind}`;
    row.k.textContent = kindLetter(u.kind);
    row.st.textContent = (u.status || '').replace(/_/g, ' ') + (u.incident_id ? ' → ' + u.incident_id : '');
  }
  function renderUnitList() {
    const ul = $('unit-list');
    if (dirty.unitsAll) {
      dirty.unitsAll = false;
      dirty.units.clear();
      for (const [id, row] of unitRows) if (!state.units[id]) { row.li.remove(); unitRows.delete(id); }
      const ids = Object.keys(state.units).sort();
      let prev = null;
      for (const id of ids) {
        let row = unitRows.get(id);
        if (!row) {
          const li = el('li');
          li.dataset.unitId = id;
          row = { li, sig: null, k: el('span', 'ukind'), name: el('span', 'u-id', id), st: el('span', 'u-st') };
          li.append(row.k, row.name, row.st);
          li.addEventListener('click', () => {
            const u = state.units[id];
            if (u && u.incident_id && state.incidents[u.incident_id]) select(u.incident_id);
          });
          unitRows.set(id, row);
        }
        fillUnitRow(row, state.units[id]);
        const want = prev ? prev.nextSibling : ul.firstChild;
        if (want !== row.li) ul.insertBefore(row.li, want);
        prev = row.li;
      }
    } else {
      for (const id of dirty.units) {
        const row = unitRows.get(id);
        const u = state.units[id];
        if (row && u) fillUnitRow(row, u);
      }
      dirty.units.clear();
    }
    $('unit-count').textContent = String(unitRows.size);
  }

  // --- alerts feed
  const alertRows = new Map();
  function renderAlerts() {
    dirty.alerts = false;
    const ul = $('alert-list');
    let list = Array.from(alertFeed.values());
    list.sort((a, b) => (tsMs(b.raised_at) || 0) - (tsMs(a.raised_at) || 0));
    if (list.length > CFG.maxAlertFeed) {
      for (const a of list.slice(CFG.maxAlertFeed)) alertFeed.delete(a.alert_id);
      list = list.slice(0, CFG.maxAlertFeed);
    }
    for (const [id, row] of alertRows) if (!alertFeed.has(id)) { row.li.remove(); alertRows.delete(id); }
    let prev = null;
    for (const a of list) {
      let row = alertRows.get(a.alert_id);
      if (!row) {
        const li = el('li');
        li.dataset.alertId = a.alert_id;
        row = { li, a: null };
        li.addEventListener('click', () => {
          const cur = alertFeed.get(a.alert_id);
          if (cur && cur.incident_id && state.incidents[cur.incident_id]) select(cur.incident_id);
        });
        alertRows.set(a.alert_id, row);
      }
      if (row.a !== a) {
        row.a = a;
        const li = row.li;
        li.dataset.kind = a.kind || '';
        li.dataset.status = a.status || '';
        li.dataset.severity = String(a.severity || '');
        li.dataset.district = a.district || '';
        if (a.incident_id) li.dataset.incidentId = a.incident_id;
        li.textContent = '';
        const top = el('div', 'al-top');
        top.append(el('span', 'al-kind', catLabel(a.kind)), el('span', 'al-dist', districtName(a.district)));
        if (a.status && a.status !== 'raised') top.append(el('span', 'al-status', a.status));
        const t = tsMs(a.raised_at);
        top.append(el('span', 'al-time', Number.isFinite(t) ? hms(t) : ''));
        li.append(top, el('div', 'al-msg', a.message || ''));
      }
      if (freshAlerts.has(a.alert_id)) {
        row.li.classList.remove('fresh');
        void row.li.offsetWidth; // restart the animation
        row.li.classList.add('fresh');
      }
      const want = prev ? prev.nextSibling : ul.firstChild;
      if (want !== row.li) ul.insertBefore(row.li, want);
      prev = row.li;
    }
    freshAlerts.clear();
    $('alert-count').textContent = String(Object.keys(state.alerts).length);
  }

  // --- selection and detail
  function select(id) {
    state.selected = id || null;
    for (const [rid, row] of incRows) row.li.classList.toggle('selected', rid === state.selected);
    dirty.detail = true;
    dirty.map = true;
    schedule();
  }
  function renderDetail() {
    dirty.detail = false;
    const box = $('incident-detail');
    const id = state.selected;
    box.textContent = '';
    if (!id) { box.hidden = true; delete box.dataset.incidentId; return; }
    box.hidden = false;
    box.dataset.incidentId = id;
    let inc = state.incidents[id];
    const closed = !inc;
    if (closed) inc = lastClosed && lastClosed.incident_id === id ? lastClosed : { incident_id: id, status: 'closed' };
    box.dataset.status = inc.status || '';

    const head = el('div', 'd-head');
    if (inc.priority) head.append(el('span', `prio p${inc.priority}`, `P${inc.priority}`));
    head.append(el('span', 'd-title', `${catLabel(inc.category)} · ${districtName(inc.district)}`));
    const x = el('button', 'd-close', '×');
    x.type = 'button';
    x.title = 'Deselect (Esc)';
    x.addEventListener('click', () => select(null));
    head.append(x);
    box.append(head);

    const dl = el('dl');
    const row = (k, v) => { dl.append(el('dt', null, k)); const dd = el('dd'); if (v instanceof Node) dd.append(v); else dd.textContent = v; dl.append(dd); return dd; };
    row('id', inc.incident_id);
    row('status', closed ? 'closed' : inc.status);
    if (inc.source) row('source', inc.source);
    if (inc.opened_at) {
      const dd = row('opened', `${hms(tsMs(inc.opened_at))} · age `);
      const s = el('span', null, '');
      s.dataset.ageFrom = String(tsMs(inc.opened_at));
      dd.append(s);
    }
    if (inc.call_count !== undefined) row('calls', String(inc.call_count));
    if (inc.caller) row('caller', inc.caller);
    if (inc.description) row('note', inc.description);
    if (!closed && inc.status === 'open' && inc.assign_deadline) {
      const s = el('span');
      s.dataset.deadline = String(tsMs(inc.assign_deadline));
      row('assign by', s);
    }
    const assigned = Array.isArray(inc.assigned_units) ? inc.assigned_units : [];
    row('assigned', assigned.length ? assigned.map((u) => {
      const un = state.units[u];
      return un ? `${kindLetter(un.kind)} ${u} (${(un.status || '').replace(/_/g, ' ')})` : u;
    }).join(', ') : 'none');
    box.append(dl);
    if (closed) { box.append(el('div', 'd-note', 'This incident is closed.')); tickDetail(); return; }

    box.append(el('h3', null, 'Recommended units'));
    const rec = state.recommendations[id];
    if (!rec) {
      box.append(el('div', 'd-note', 'No recommendation received yet.'));
    } else {
      const needs = (rec.needs || []).map((n) => `${n.count} ${catLabel(n.kind)}`).join(', ');
      if (needs) box.append(el('div', 'd-note', `needs ${needs}${rec.auto_assign ? ' · auto-assigned (P1)' : ''}`));
      else if (rec.auto_assign) box.append(el('div', 'd-note', 'auto-assigned (P1)'));
      if (rec.unfilled && rec.unfilled.length) box.append(el('div', 'd-warn', `no available unit: ${rec.unfilled.map(catLabel).join(', ')}`));
      const ul = el('ul');
      ul.id = 'recommendation';
      ul.dataset.incidentId = id;
      for (const c of rec.candidates || []) {
        const li = el('li');
        li.dataset.unitId = c.unit_id;
        li.dataset.kind = c.kind || '';
        li.dataset.distanceM = String(c.distance_m);
        li.dataset.etaS = String(c.eta_s);
        if (assigned.includes(c.unit_id)) li.classList.add('assigned');
        li.append(el('span', `ukind k-${c.kind}`, kindLetter(c.kind)), el('span', 'c-id', c.unit_id),
          el('span', 'num c-dist', km(c.distance_m)), el('span', 'num c-eta', mins(c.eta_s)));
        if (c.reason) li.append(el('span', 'reason', c.reason));
        ul.append(li);
      }
      if (!(rec.candidates || []).length) box.append(el('div', 'd-warn', 'No candidates.'));
      else box.append(ul);
    }
    tickDetail();
  }
  function tickDetail() {
    const box = $('incident-detail');
    if (box.hidden) return;
    const fnow = feedNow();
    for (const s of box.querySelectorAll('[data-age-from]')) s.textContent = fmtAge(fnow - Number(s.dataset.ageFrom));
    for (const s of box.querySelectorAll('[data-deadline]')) {
      const left = Number(s.dataset.deadline) - fnow;
      s.textContent = left >= 0 ? `in ${fmtAge(left)}` : `OVERDUE ${fmtAge(-left)}`;
      s.className = left >= 0 ? '' : 'overdue-text';
    }
  }

  // ------------------------------------------------------------------ map
  const canvas = $('map');
  const ctx = canvas.getContext('2d');
  const base = document.createElement('canvas');
  const bctx = base.getContext('2d');
  let W = 0;
  let H = 0;
  let dpr = 1;
  let kx = Math.cos(((FALLBACK_BBOX.minLat + FALLBACK_BBOX.maxLat) / 2) * Math.PI / 180);
  let landBBox = Object.assign({}, FALLBACK_BBOX);
  const view = { cx: 0, cy: 0, scale: 1, userMoved: false };
  let zoneShapes = []; // {id, name, name_vi, offshore, path: Path2D (world coords), label: [lon, lat]}

  // World coordinates: X = lon * cos(lat0), Y = -lat (equirectangular, aspect-corrected).
  const worldX = (lon) => lon * kx;
  const worldY = (lat) => -lat;
  function project(lon, lat) {
    return [(worldX(lon) - view.cx) * view.scale + W / 2, (worldY(lat) - view.cy) * view.scale + H / 2];
  }
  function unproject(x, y) {
    return [((x - W / 2) / view.scale + view.cx) / kx, -((y - H / 2) / view.scale + view.cy)];
  }
  function fit() {
    const b = landBBox;
    const bw = (b.maxLon - b.minLon) * kx;
    const bh = b.maxLat - b.minLat;
    view.cx = worldX((b.minLon + b.maxLon) / 2);
    view.cy = worldY((b.minLat + b.maxLat) / 2);
    const pad = 0.94;
    view.scale = Math.max(1e-6, Math.min(W / bw, H / bh) * pad) || 1;
    view.userMoved = false;
    dirty.base = true;
    schedule();
  }
  function resize() {
    const r = canvas.getBoundingClientRect();
    const nW = Math.max(1, Math.round(r.width));
    const nH = Math.max(1, Math.round(r.height));
    const nD = window.devicePixelRatio || 1;
    if (nW === W && nH === H && nD === dpr) return;
    W = nW; H = nH; dpr = nD;
    canvas.width = base.width = Math.round(W * dpr);
    canvas.height = base.height = Math.round(H * dpr);
    if (!view.userMoved) fit();
    dirty.base = true;
    schedule();
  }

  function ringsOf(geom) {
    if (!geom) return [];
    if (geom.type === 'Polygon') return [geom.coordinates];
    if (geom.type === 'MultiPolygon') return geom.coordinates;
    return [];
  }
  function ringArea(ring) {
    let a = 0;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) a += (ring[j][0] * kx) * ring[i][1] - (ring[i][0] * kx) * ring[j][1];
    return a / 2;
  }
  // A label point inside the largest polygon: the middle of the widest
  // interior span on the horizontal line through its centroid.
  function labelPoint(polys) {
    let best = null;
    let bestA = -1;
    for (const poly of polys) {
      const a = Math.abs(ringArea(poly[0] || []));
      if (a > bestA) { bestA = a; best = poly; }
    }
    if (!best || !best[0] || best[0].length < 3) return null;
    const outer = best[0];
    let cy = 0;
    for (const p of outer) cy += p[1];
    cy /= outer.length;
    const xs = [];
    for (const ring of best) {
      for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        const [x1, y1] = ring[j];
        const [x2, y2] = ring[i];
        if ((y1 > cy) !== (y2 > cy)) xs.push(x1 + (cy - y1) * (x2 - x1) / (y2 - y1));
      }
    }
    xs.sort((a, b) => a - b);
    let lx = outer[0][0];
    let widest = -1;
    for (let i = 0; i + 1 < xs.length; i += 2) {
      if (xs[i + 1] - xs[i] > widest) { widest = xs[i + 1] - xs[i]; lx = (xs[i] + xs[i + 1]) / 2; }
    }
    return [lx, cy];
  }
  function setZones(gj) {
    const feats = (gj.features || []).filter((f) => f && f.geometry);
    // Fit box and aspect from the land zones only.
    const b = { minLon: Infinity, maxLon: -Infinity, minLat: Infinity, maxLat: -Infinity };
    for (const f of feats) {
      const p = f.properties || {};
      if (p.offshore) continue;
      for (const poly of ringsOf(f.geometry)) for (const ring of poly) for (const [lon, lat] of ring) {
        if (lon < b.minLon) b.minLon = lon;
        if (lon > b.maxLon) b.maxLon = lon;
        if (lat < b.minLat) b.minLat = lat;
        if (lat > b.maxLat) b.maxLat = lat;
      }
    }
    if (Number.isFinite(b.minLon) && b.maxLon > b.minLon && b.maxLat > b.minLat) landBBox = b;
    kx = Math.cos(((landBBox.minLat + landBBox.maxLat) / 2) * Math.PI / 180);
    zoneShapes = [];
    zoneById.clear();
    state.zones = [];
    for (const f of feats) {
      const p = f.properties || {};
      const polys = ringsOf(f.geometry);
      const path = new Path2D();
      for (const poly of polys) for (const ring of poly) {
        ring.forEach(([lon, lat], i) => (i ? path.lineTo(worldX(lon), worldY(lat)) : path.moveTo(worldX(lon), worldY(lat))));
        path.closePath();
      }
      const z = { id: p.id, name: p.name, name_vi: p.name_vi, offshore: !!p.offshore, path, label: labelPoint(polys) };
      zoneShapes.push(z);
      if (p.id) zoneById.set(p.id, z);
      state.zones.push({ id: p.id, name: p.name, name_vi: p.name_vi, offshore: !!p.offshore });
    }
    canvas.dataset.zones = String(zoneShapes.length);
    if (!view.userMoved) fit();
    markAll();
  }

  function drawBase() {
    dirty.base = false;
    const c = bctx;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.fillStyle = '#03070c';
    c.fillRect(0, 0, base.width, base.height);
    // graticule every 0.05°
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.strokeStyle = 'rgba(120,150,190,0.08)';
    c.lineWidth = 1;
    const [lonA, latA] = unproject(0, H);
    const [lonB, latB] = unproject(W, 0);
    const step = view.scale > 3000 ? 0.01 : view.scale > 300 ? 0.05 : view.scale > 30 ? 0.5 : 5;
    if ((lonB - lonA) / step < 400 && (latB - latA) / step < 400) {
      c.beginPath();
      for (let lon = Math.ceil(lonA / step) * step; lon <= lonB; lon += step) { const [x] = project(lon, 0); c.moveTo(x, 0); c.lineTo(x, H); }
      for (let lat = Math.ceil(latA / step) * step; lat <= latB; lat += step) { const [, y] = project(0, lat); c.moveTo(0, y); c.lineTo(W, y); }
      c.stroke();
    }
    if (!zoneShapes.length) return;
    const s = view.scale * dpr;
    c.setTransform(s, 0, 0, s, dpr * (W / 2 - view.cx * view.scale), dpr * (H / 2 - view.cy * view.scale));
    c.lineJoin = 'round';
    for (const z of zoneShapes) {
      c.fillStyle = z.offshore ? '#0b1420' : '#101b29';
      c.fill(z.path, 'evenodd');
    }
    for (const z of zoneShapes) {
      c.setLineDash(z.offshore ? [6 / view.scale, 4 / view.scale] : []);
      c.strokeStyle = z.offshore ? '#4d6580' : '#7f97b3';
      c.lineWidth = 1.4 / view.scale;
      c.stroke(z.path);
    }
    c.setLineDash([]);
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.textAlign = 'center';
    c.textBaseline = 'middle';
    const fs = Math.round(Math.max(11, Math.min(16, W / 90)));
    c.font = `600 ${fs}px system-ui, "DejaVu Sans", sans-serif`;
    c.lineWidth = 3;
    c.strokeStyle = '#03070c';
    for (const z of zoneShapes) {
      if (!z.label) continue;
      let [x, y] = project(z.label[0], z.label[1]);
      let text = z.name_vi || z.name || z.id || '';
      if (z.offshore) text += ' (offshore)';
      const off = x < 0 || x > W || y < 0 || y > H;
      if (off) {
        if (!z.offshore) continue;
        // Point to an off-screen offshore zone from the map edge.
        const m = 14;
        const arrow = x > W ? ' →' : x < 0 ? '← ' : y < 0 ? ' ↑' : ' ↓';
        text = x < 0 ? arrow + text : text + arrow;
        x = Math.min(W - m, Math.max(m, x));
        y = Math.min(H - m, Math.max(m + 60, y));
        c.textAlign = x >= W - m ? 'right' : x <= m ? 'left' : 'center';
      } else c.textAlign = 'center';
      c.fillStyle = z.offshore ? '#6f88a5' : '#a9bdd4';
      c.strokeText(text, x, y);
      c.fillText(text, x, y);
    }
  }

  function drawMap() {
    dirty.map = false;
    state.frames++;
    if (dirty.base) drawBase();
    const c = ctx;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.drawImage(base, 0, 0);
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    const now = Date.now();
    const incs = Object.values(state.incidents).filter(isOpen);
    const units = state.units;

    // assignment lines: unit -> incident
    c.lineWidth = 2;
    c.setLineDash([7, 5]);
    for (const inc of incs) {
      if (!inc.location) continue;
      const ids = new Set(inc.assigned_units || []);
      if (!ids.size) continue;
      const [ix, iy] = project(inc.location.lon, inc.location.lat);
      c.strokeStyle = prioColor(inc.priority);
      c.globalAlpha = inc.incident_id === state.selected ? 1 : 0.75;
      c.beginPath();
      for (const uid of ids) {
        const u = units[uid];
        if (!u || !u.position) continue;
        const [ux, uy] = project(u.position.lon, u.position.lat);
        c.moveTo(ux, uy);
        c.lineTo(ix, iy);
      }
      c.stroke();
    }
    c.globalAlpha = 1;
    // candidate lines for the selected incident
    const sel = state.selected ? state.incidents[state.selected] : null;
    const rec = sel ? state.recommendations[sel.incident_id] : null;
    if (sel && sel.location && rec && rec.candidates) {
      const [ix, iy] = project(sel.location.lon, sel.location.lat);
      c.setLineDash([2, 4]);
      c.strokeStyle = 'rgba(255,255,255,0.7)';
      c.lineWidth = 1.5;
      c.beginPath();
      for (const cand of rec.candidates) {
        const u = units[cand.unit_id];
        if (!u || !u.position || (sel.assigned_units || []).includes(cand.unit_id)) continue;
        const [ux, uy] = project(u.position.lon, u.position.lat);
        c.moveTo(ux, uy);
        c.lineTo(ix, iy);
      }
      c.stroke();
    }
    c.setLineDash([]);

    // units
    const us = Math.round(Math.max(12, Math.min(18, W / 100)));
    c.font = `800 ${Math.round(us * 0.72)}px system-ui, "DejaVu Sans", sans-serif`;
    c.textAlign = 'center';
    c.textBaseline = 'middle';
    for (const id in units) {
      const u = units[id];
      if (!u.position) continue;
      const [x, y] = project(u.position.lon, u.position.lat);
      if (x < -us || y < -us || x > W + us || y > H + us) continue;
      const col = kindColor(u.kind);
      const avail = u.status === 'available';
      const h = us / 2;
      c.globalAlpha = avail ? 1 : u.status === 'out_of_service' ? 0.3 : 0.7;
      if (avail) {
        c.fillStyle = col;
        c.fillRect(x - h, y - h, us, us);
        c.strokeStyle = '#000';
        c.lineWidth = 1;
        c.strokeRect(x - h, y - h, us, us);
        c.fillStyle = '#000';
      } else {
        c.fillStyle = '#05080d';
        c.fillRect(x - h, y - h, us, us);
        c.strokeStyle = col;
        c.lineWidth = 1.5;
        c.strokeRect(x - h + 0.75, y - h + 0.75, us - 1.5, us - 1.5);
        c.fillStyle = col;
      }
      c.fillText(kindLetter(u.kind), x, y + 0.5);
      if (Number.isFinite(u.heading_deg) && (u.speed_kmh || 0) > 1) {
        const a = (u.heading_deg * Math.PI) / 180;
        c.strokeStyle = col;
        c.lineWidth = 2;
        c.beginPath();
        c.moveTo(x + Math.sin(a) * h, y - Math.cos(a) * h);
        c.lineTo(x + Math.sin(a) * (h + 6), y - Math.cos(a) * (h + 6));
        c.stroke();
      }
    }
    c.globalAlpha = 1;

    // incidents, P1 drawn last (on top)
    incs.sort((a, b) => b.priority - a.priority);
    for (const inc of incs) {
      if (!inc.location) continue;
      const [x, y] = project(inc.location.lon, inc.location.lat);
      const r = 11 - Math.min(3, Math.max(0, (inc.priority || 4) - 1)) * 1.2;
      const col = prioColor(inc.priority);
      const ps = pulseStart.get(inc.incident_id);
      if (ps !== undefined) {
        const age = now - ps;
        if (age > CFG.pulseMs) pulseStart.delete(inc.incident_id);
        else {
          for (const off of [0, 600]) {
            const ph = ((age + off) % 1200) / 1200;
            c.globalAlpha = (1 - ph) * 0.9;
            c.strokeStyle = col;
            c.lineWidth = 3;
            c.beginPath();
            c.arc(x, y, r + 4 + ph * 26, 0, Math.PI * 2);
            c.stroke();
          }
          c.globalAlpha = 1;
        }
      }
      c.fillStyle = col;
      c.beginPath();
      c.arc(x, y, r, 0, Math.PI * 2);
      c.fill();
      c.lineWidth = 2;
      c.strokeStyle = inc.status === 'dispatched' ? '#ffffff' : '#000000';
      c.stroke();
      if ((inc.call_count || 0) > 1) {
        c.fillStyle = inc.priority === 1 || inc.priority === 4 ? '#fff' : '#000';
        c.font = `800 ${Math.round(r * 1.1)}px system-ui, "DejaVu Sans", sans-serif`;
        c.fillText(String(inc.call_count), x, y + 0.5);
      }
      if (inc.incident_id === state.selected) {
        c.strokeStyle = '#ffffff';
        c.lineWidth = 3;
        c.beginPath();
        c.arc(x, y, r + 7, 0, Math.PI * 2);
        c.stroke();
        c.beginPath();
        c.moveTo(x - r - 18, y); c.lineTo(x - r - 9, y);
        c.moveTo(x + r + 9, y); c.lineTo(x + r + 18, y);
        c.moveTo(x, y - r - 18); c.lineTo(x, y - r - 9);
        c.moveTo(x, y + r + 9); c.lineTo(x, y + r + 18);
        c.stroke();
      }
    }
  }

  // --- map interaction
  function hitTest(px, py) {
    let best = null;
    let bestD = 16 * 16;
    for (const inc of Object.values(state.incidents)) {
      if (!isOpen(inc) || !inc.location) continue;
      const [x, y] = project(inc.location.lon, inc.location.lat);
      const d = (x - px) ** 2 + (y - py) ** 2;
      if (d < bestD) { bestD = d; best = { type: 'incident', item: inc }; }
    }
    if (best) return best;
    bestD = 11 * 11;
    for (const u of Object.values(state.units)) {
      if (!u.position) continue;
      const [x, y] = project(u.position.lon, u.position.lat);
      const d = (x - px) ** 2 + (y - py) ** 2;
      if (d < bestD) { bestD = d; best = { type: 'unit', item: u }; }
    }
    return best;
  }
  function tooltipFor(hit) {
    if (!hit) return '';
    if (hit.type === 'incident') {
      const i = hit.item;
      return `P${i.priority} ${catLabel(i.category)} · ${districtName(i.district)}\n${i.incident_id} · ${i.status} · ${i.call_count || 0} call(s) · age ${fmtAge(feedNow() - tsMs(i.opened_at))}`;
    }
    const u = hit.item;
    return `${kindLetter(u.kind)} ${u.unit_id} · ${(u.status || '').replace(/_/g, ' ')}\n${districtName(u.district)}${u.incident_id ? ' · → ' + u.incident_id : ''}${Number.isFinite(u.speed_kmh) ? ' · ' + Math.round(u.speed_kmh) + ' km/h' : ''}`;
  }
  let drag = null;
  function localXY(e) {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }
  canvas.addEventListener('pointerdown', (e) => {
    const [x, y] = localXY(e);
    drag = { x, y, cx: view.cx, cy: view.cy, moved: false, id: e.pointerId };
    try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* ignore */ }
  });
  canvas.addEventListener('pointermove', (e) => {
    const [x, y] = localXY(e);
    const tip = $('tooltip');
    if (drag) {
      const dx = x - drag.x;
      const dy = y - drag.y;
      if (!drag.moved && dx * dx + dy * dy > 16) { drag.moved = true; canvas.classList.add('dragging'); }
      if (drag.moved) {
        view.cx = drag.cx - dx / view.scale;
        view.cy = drag.cy - dy / view.scale;
        view.userMoved = true;
        dirty.base = true;
        tip.hidden = true;
        schedule();
      }
      return;
    }
    const text = tooltipFor(hitTest(x, y));
    if (!text) { tip.hidden = true; return; }
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(x + 14, W - tip.offsetWidth - 4) + 'px';
    tip.style.top = Math.max(4, y - tip.offsetHeight - 10) + 'px';
  });
  const endDrag = (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    canvas.classList.remove('dragging');
    if (!d.moved && e.type === 'pointerup') {
      const [x, y] = localXY(e);
      const hit = hitTest(x, y);
      if (hit && hit.type === 'incident') select(hit.item.incident_id === state.selected ? null : hit.item.incident_id);
      else if (hit && hit.type === 'unit' && hit.item.incident_id && state.incidents[hit.item.incident_id]) select(hit.item.incident_id);
      else if (!hit) select(null);
    }
  };
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);
  canvas.addEventListener('pointerleave', () => { $('tooltip').hidden = true; });
  function zoomAt(px, py, factor) {
    const [lon, lat] = unproject(px, py);
    view.scale = Math.min(1e7, Math.max(10, view.scale * factor));
    // keep (lon, lat) under the cursor
    view.cx = worldX(lon) - (px - W / 2) / view.scale;
    view.cy = worldY(lat) - (py - H / 2) / view.scale;
    view.userMoved = true;
    dirty.base = true;
    schedule();
  }
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const [x, y] = localXY(e);
    zoomAt(x, y, Math.pow(1.0015, -e.deltaY * (e.deltaMode === 1 ? 30 : 1)));
  }, { passive: false });
  canvas.addEventListener('dblclick', (e) => { const [x, y] = localXY(e); zoomAt(x, y, 2); });
  $('fit').addEventListener('click', fit);
  $('zoom-in').addEventListener('click', () => zoomAt(W / 2, H / 2, 1.5));
  $('zoom-out').addEventListener('click', () => zoomAt(W / 2, H / 2, 1 / 1.5));
  document.addEventListener('keydown', (e) => {
    if (e.target && (e.target.tagName === 'TEXTAREA' || e.target.tagName === 'INPUT')) return;
    if (e.key === 'Escape') select(null);
    else if (e.key === 'f' || e.key === 'F') fit();
  });

  // ---------------------------------------------------------------- zones
  let zonesTimer = 0;
  let zonesLoading = false;
  function showMapMessage(text, retry) {
    const m = $('map-message');
    m.textContent = text;
    if (retry) {
      const b = el('button', null, 'retry now');
      b.type = 'button';
      b.addEventListener('click', loadZones);
      m.append(b);
    }
    m.hidden = false;
  }
  async function loadZones() {
    if (zonesLoading) return;
    zonesLoading = true;
    clearTimeout(zonesTimer);
    try {
      const headers = token ? { Authorization: 'Bearer ' + token } : {};
      let r;
      try {
        r = await fetch('/api/zones', { headers, cache: 'no-cache' });
      } catch (e) {
        throw new Error('server unreachable');
      }
      if (!r.ok) throw new Error(`HTTP ${r.status}${r.status === 401 ? ' (a valid token is needed)' : r.status === 404 ? ' (not found)' : ''}`);
      let gj;
      try { gj = await r.json(); } catch (_) { throw new Error('response is not JSON'); }
      if (!gj || !Array.isArray(gj.features)) throw new Error('response is not a GeoJSON FeatureCollection');
      setZones(gj);
      state.zonesError = null;
      $('map-message').hidden = true;
    } catch (e) {
      state.zonesError = e.message;
      showMapMessage(`District map unavailable — GET /api/zones: ${e.message}. Incidents and units are still shown. Retrying every ${CFG.zonesRetryMs / 1000} s.`, true);
      zonesTimer = setTimeout(loadZones, CFG.zonesRetryMs);
    } finally {
      zonesLoading = false;
    }
  }

  // ----------------------------------------------------------------- timers
  function tick() {
    const now = Date.now();
    $('clock').textContent = hms(now);
    const showFeed = Math.abs(feedClock.offset) > 60000;
    $('feed-time-wrap').hidden = !showFeed;
    if (showFeed) $('feed-time').textContent = hms(feedNow());
    const fnow = feedNow();
    for (const row of incRows.values()) tickIncidentRow(row, fnow);
    tickDetail();
    // watchdogs
    if (ws && ws.readyState === WebSocket.OPEN) {
      if (now - lastMsgAt > CFG.deadAfterMs) dropSocket(`no data for ${Math.round((now - lastMsgAt) / 1000)} s`);
      else {
        for (const [c, t] of Object.entries(awaiting)) {
          if (now - t > CFG.resyncTimeoutMs) {
            delete state.channelSeq[c];
            dropSocket(`no snapshot for ${c}`);
            break;
          }
        }
      }
    }
    updateConnection();
  }
  setInterval(tick, 1000);
  setInterval(() => send({ op: 'ping' }), CFG.pingMs);

  // ----------------------------------------------------------------- login
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = cleanToken($('token-input').value);
    const problem = tokenProblem(t);
    if (problem) { $('login-error').textContent = problem === 'no token' ? 'Paste a token first.' : problem; return; }
    setToken(t);
    $('token-input').value = '';
    $('login').hidden = true;
    failuresWithoutOpen = 0;
    backoff = CFG.backoffMinMs;
    if (!zoneShapes.length) loadZones();
    connect();
  });
  $('logout').addEventListener('click', () => {
    setToken(null);
    clearTimeout(reconnectTimer);
    const s = ws;
    ws = null;
    if (s) try { s.close(1000, 'logout'); } catch (_) { /* ignore */ }
    showLogin('');
  });

  // ------------------------------------------------------------------ boot
  if (typeof ResizeObserver === 'function') new ResizeObserver(resize).observe($('map-wrap'));
  window.addEventListener('resize', resize);
  resize();
  setToken(readToken());
  loadZones();
  if (token) connect();
  else showLogin('');
  tick();
  schedule();

  // Hooks for tests and the console (no effect on the live feed).
  window.iocApp = {
    handleMessage: (m) => handleMessage(typeof m === 'string' ? JSON.parse(m) : m),
    select,
    fit,
    project,
    setZones,
    reconnect: () => dropSocket('manual reconnect'),
  };
})();
