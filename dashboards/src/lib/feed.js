// The websocket feed (GET /ws, DESIGN.md): subscribe per channel, apply
// snapshots then events in `seq` order, detect gaps from `prev_seq`, resume
// with `since` after a reconnect (exponential backoff with jitter), watch
// for silence (STALE after 30 s, reconnect after 60 s) and the server's
// `status` frames. Shows its state in `#status` and the `#banner`.

import { $, el, hms } from './util.js';
import { t, onLangChange } from './i18n.js';
import { state, applySnapshot, applyEvent, bumpSeq, dirty, schedule } from './store.js';

export const FEED = {
  pingMs: 15000, // heartbeat we send
  staleAfterMs: 30000, // nothing received for this long: feed is stale
  deadAfterMs: 60000, // nothing received for this long: drop and reconnect
  resyncTimeoutMs: 15000, // waiting this long for a fresh snapshot: reconnect
  backoffMinMs: 1000,
  backoffMaxMs: 10000,
};

let token = null;
let channels = () => [];
let onAuthRejected = () => {};
let toastFn = () => {};
let ws = null;
let backoff = FEED.backoffMinMs;
let reconnectTimer = 0;
let nextRetryAt = 0;
let lastMsgAt = 0;
let connectedAt = 0;
let disconnectedAt = 0;
let failuresWithoutOpen = 0;
let lastCloseInfo = '';
let everSnapshot = false;
const awaiting = {}; // channel -> local ms when a fresh snapshot was requested
export const forbidden = new Set();

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}
function wanted() {
  return channels().filter((c) => !forbidden.has(c));
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
  toastFn(t('resync', { ch: channel, why }));
  awaiting[channel] = Date.now();
  send({ op: 'unsubscribe', channel });
  send({ op: 'subscribe', channel });
  updateConnection();
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  nextRetryAt = 0;
  if (!token) { updateConnection(); return; }
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
    for (const c of wanted()) subscribe(c, true);
    updateConnection();
  };
  sock.onmessage = (m) => {
    if (ws !== sock) return;
    lastMsgAt = Date.now();
    backoff = FEED.backoffMinMs;
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
  const delay = Math.min(FEED.backoffMaxMs, backoff) * (0.85 + Math.random() * 0.3);
  backoff = Math.min(FEED.backoffMaxMs, backoff * 2);
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
    const r = await fetch('/api/alerts', { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
    if (r.status === 401) {
      clearTimeout(reconnectTimer);
      onAuthRejected();
    }
  } catch (_) { /* server unreachable: keep retrying */ }
  probing = false;
}

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

/** One server frame (also the test hook `iocApp.handleMessage`). */
export function handleMessage(msg) {
  if (!msg || typeof msg !== 'object') return;
  switch (msg.op) {
    case 'snapshot':
      delete awaiting[msg.channel || 'city'];
      everSnapshot = true;
      applySnapshot(msg);
      break;
    case 'event': onEventMsg(msg); break;
    case 'status':
      state.serverStale = !!msg.stale;
      break;
    case 'error': onServerError(msg); break;
    default: break;
  }
  updateConnection();
}
function onServerError(msg) {
  const code = msg.code || 'error';
  toastFn(t('server.error', { code, msg: msg.message ? ' — ' + msg.message : '' }), true);
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

// ------------------------------------------------------------ connection state
function computeConnection() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return 'reconnecting';
  const waiting = Object.keys(awaiting).length > 0;
  if (waiting && !everSnapshot) return 'reconnecting';
  if (waiting || state.serverStale) return 'stale';
  if (Date.now() - lastMsgAt > FEED.staleAfterMs) return 'stale';
  return 'live';
}
let shown = '';
export function updateConnection() {
  const c = computeConnection();
  state.connection = c;
  let label;
  let banner = '';
  let sub = '';
  if (c === 'live') label = t('status.live');
  else if (c === 'stale') {
    label = t('status.stale');
    banner = t('banner.stale');
    if (state.serverStale) sub = t('banner.stale.server');
    else if (Object.keys(awaiting).length) sub = t('banner.stale.gap');
    else sub = t('banner.stale.quiet', { s: Math.round((Date.now() - lastMsgAt) / 1000), at: hms(lastMsgAt) });
  } else if (!token) {
    label = t('status.notoken');
    banner = t('banner.notoken');
  } else if (ws && ws.readyState === WebSocket.CONNECTING && !everSnapshot) {
    label = t('status.connecting');
    banner = t('banner.connecting');
  } else if (ws && ws.readyState === WebSocket.OPEN) {
    label = t('status.connecting');
    banner = t('banner.loading');
  } else {
    label = t('status.reconnecting');
    banner = everSnapshot ? t('banner.reconnecting') : t('banner.unreachable');
    const wait = nextRetryAt ? Math.max(0, Math.ceil((nextRetryAt - Date.now()) / 1000)) : 0;
    const parts = [];
    if (lastCloseInfo) parts.push(lastCloseInfo);
    if (disconnectedAt) parts.push(t('banner.since', { at: hms(disconnectedAt) }));
    parts.push(nextRetryAt ? t('banner.retry', { s: wait }) : t('banner.retrying'));
    if (everSnapshot) parts.push(t('banner.lastpicture'));
    sub = parts.join(' · ');
  }
  const key = [c, label, banner, sub].join('|');
  if (key === shown) return;
  shown = key;
  const s = $('status');
  if (s) {
    s.dataset.state = c;
    s.textContent = label;
  }
  document.body.dataset.state = c;
  const b = $('banner');
  if (b) {
    b.dataset.state = c;
    b.hidden = !banner;
    b.textContent = banner;
    if (sub) b.appendChild(el('small', null, sub));
  }
}

function watchdog() {
  const now = Date.now();
  if (ws && ws.readyState === WebSocket.OPEN) {
    if (now - lastMsgAt > FEED.deadAfterMs) dropSocket(`no data for ${Math.round((now - lastMsgAt) / 1000)} s`);
    else {
      for (const [c, at] of Object.entries(awaiting)) {
        if (now - at > FEED.resyncTimeoutMs) {
          delete state.channelSeq[c];
          dropSocket(`no snapshot for ${c}`);
          break;
        }
      }
    }
  }
  updateConnection();
}

/**
 * Starts the feed. `opts.channels()` lists the channels this screen wants;
 * `opts.onAuthRejected()` runs when the server answers 401 to the token.
 */
export function startFeed(opts) {
  token = opts.token;
  channels = opts.channels;
  onAuthRejected = opts.onAuthRejected || (() => {});
  toastFn = opts.toast || (() => {});
  setInterval(watchdog, 1000);
  setInterval(() => send({ op: 'ping' }), FEED.pingMs);
  onLangChange(() => { shown = ''; updateConnection(); });
  connect();
  updateConnection();
}

/** Re-subscribes (e.g. after the district choice changed). */
export function resubscribe(oldChannels) {
  for (const c of oldChannels || []) { send({ op: 'unsubscribe', channel: c }); delete state.channelSeq[c]; delete awaiting[c]; }
  for (const c of wanted()) subscribe(c, false);
  dirty.incidents = true;
  schedule();
}

export function stopFeed() {
  token = null;
  clearTimeout(reconnectTimer);
  const s = ws;
  ws = null;
  if (s) try { s.close(1000, 'logout'); } catch (_) { /* ignore */ }
  updateConnection();
}

export const reconnectNow = () => dropSocket('manual reconnect');
