// Pieces of screen shared by the wall, the dispatcher console and the
// district screen: header (clock, seq, who, language, log out), KPI tiles,
// the incident list with its timers, the alert feed (with acknowledge
// buttons where allowed), unit lists and the incident detail with its
// recommended units. Rows are keyed and patched, never rebuilt.

import { $, el, hms, fmtAge, tsMs, km, mins, toast } from './util.js';
import { t, label, onLangChange, wireLangButton } from './i18n.js';
import { state, dirty, schedule, isOpen, feedNow, feedClock, alertFeed, freshAlerts, lastClosed, computeStats, CFG } from './store.js';
import { KINDS, kindLetter, districtName } from './map.js';

// ------------------------------------------------------------ header
export function wireHeader({ claims, onLogout }) {
  const who = $('who');
  if (who && claims) who.textContent = `${claims.sub || '?'} · ${label(claims.role)}${claims.district ? ' · ' + districtName(claims.district) : ''}`;
  const lo = $('logout');
  if (lo) { lo.hidden = false; lo.addEventListener('click', onLogout); }
  wireLangButton($('lang'));
}
export function tickHeader() {
  const now = Date.now();
  const c = $('clock');
  if (c) c.textContent = hms(now);
  const wrap = $('feed-time-wrap');
  if (wrap) {
    const showFeed = Math.abs(feedClock.offset) > 60000;
    wrap.hidden = !showFeed;
    if (showFeed) $('feed-time').textContent = hms(feedNow());
  }
}
export function renderSeq() {
  dirty.seq = false;
  const s = $('last-seq');
  if (!s) return;
  s.textContent = state.lastSeq ? String(state.lastSeq) : '—';
  s.dataset.value = String(state.lastSeq);
}

// ------------------------------------------------------------ KPIs
function setKpi(id, value, text, total) {
  const k = $(id);
  if (!k) return;
  k.dataset.value = String(value);
  const v = k.querySelector('.kpi-v');
  v.textContent = text !== undefined ? text : String(value);
  if (total !== undefined) {
    k.dataset.total = String(total);
    v.appendChild(el('small', null, '/' + total));
  }
}
const fmtDur = (s) => (Number.isFinite(s) ? fmtAge(s * 1000) : '—');

/** Fills whichever KPI tiles the page has, from the incidents/units in scope. */
export function renderKpis() {
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
  for (const k of KINDS) setKpi(`kpi-units-${k}`, avail[k], String(avail[k]), total[k]);
  const st = computeStats();
  setKpi('kpi-calls15', st.calls15);
  setKpi('kpi-scene-median', Number.isFinite(st.sceneMedianS) ? Math.round(st.sceneMedianS) : '', fmtDur(st.sceneMedianS));
  setKpi('kpi-scene-p90', Number.isFinite(st.sceneP90S) ? Math.round(st.sceneP90S) : '', fmtDur(st.sceneP90S));
  const n = $('kpi-scene-n');
  if (n) n.textContent = t('kpi.scene.n', { n: st.sceneCount });
  return { avail, total };
}

// ------------------------------------------------------------ incident list
/** Timer state of an incident: ok, warn (amber, deadline near), overdue (red), done (units assigned). */
export function timerState(inc, fnow) {
  const assigned = (inc.assigned_units || []).length > 0;
  if (assigned || inc.status !== 'open') return 'done';
  const dl = tsMs(inc.assign_deadline);
  if (!Number.isFinite(dl)) return 'ok';
  const left = dl - fnow;
  if (left < 0) return 'overdue';
  const window = dl - tsMs(inc.opened_at);
  const warnAt = Math.max(30000, Number.isFinite(window) ? window / 3 : 0);
  return left <= warnAt ? 'warn' : 'ok';
}

/**
 * The incident list in `ul`, sorted by priority then age. `deadline`: show
 * the assign-by countdown column; `caller`: show the caller's number.
 */
export function createIncidentList({ ul, count, empty, deadline, caller, onSelect }) {
  const rows = new Map(); // id -> row
  function fill(row, inc) {
    const li = row.li;
    row.inc = inc;
    li.dataset.priority = String(inc.priority);
    li.dataset.status = inc.status || '';
    li.dataset.category = inc.category || '';
    li.dataset.district = inc.district || '';
    const assigned = Array.isArray(inc.assigned_units) ? inc.assigned_units.length : 0;
    li.dataset.assigned = String(assigned);
    li.dataset.calls = String(inc.call_count || 0);
    li.classList.toggle('selected', state.selected === inc.incident_id);
    row.prio.className = `prio p${inc.priority}`;
    row.prio.textContent = `P${inc.priority}`;
    row.cat.textContent = label(inc.category);
    row.dist.textContent = districtName(inc.district);
    if (row.caller) row.caller.textContent = inc.caller ? '☎ ' + inc.caller : '';
    row.calls.textContent = String(inc.call_count || 0);
    row.units.textContent = String(assigned);
    li.title = `${inc.incident_id} · ${label(inc.status)} · ${inc.source || '?'}`;
    row.openedMs = tsMs(inc.opened_at);
    row.deadlineMs = tsMs(inc.assign_deadline);
    tickRow(row, feedNow());
  }
  function tickRow(row, fnow) {
    row.age.textContent = fmtAge(fnow - row.openedMs);
    const ts = timerState(row.inc, fnow);
    if (row.li.dataset.timer !== ts) row.li.dataset.timer = ts;
    row.li.classList.toggle('overdue', ts === 'overdue');
    if (row.dl) {
      if (ts === 'done') row.dl.textContent = '✓';
      else if (!Number.isFinite(row.deadlineMs)) row.dl.textContent = '';
      else row.dl.textContent = fmtAge(row.deadlineMs - fnow);
    }
  }
  function make(inc) {
    const li = el('li');
    li.dataset.incidentId = inc.incident_id;
    li.tabIndex = -1;
    const row = { li, inc: null };
    row.prio = el('span', 'prio');
    const main = el('span', 'inc-main');
    row.cat = el('span', 'cat');
    row.dist = el('span', 'dist');
    main.append(row.cat, row.dist);
    if (caller) { row.caller = el('span', 'inc-caller'); main.append(row.caller); }
    row.age = el('span', 'inc-age');
    li.append(row.prio, main, row.age);
    if (deadline) { row.dl = el('span', 'inc-deadline'); li.append(row.dl); }
    row.calls = el('span', 'inc-calls');
    row.units = el('span', 'inc-units');
    li.append(row.calls, row.units);
    li.addEventListener('click', () => onSelect(state.selected === inc.incident_id ? null : inc.incident_id));
    return row;
  }
  function sorted() {
    const list = Object.values(state.incidents).filter(isOpen);
    list.sort((a, b) => (a.priority - b.priority) || (tsMs(a.opened_at) - tsMs(b.opened_at)) || String(a.incident_id).localeCompare(String(b.incident_id)));
    return list;
  }
  return {
    render() {
      const list = sorted();
      for (const [id, row] of rows) {
        if (!isOpen(state.incidents[id])) { row.li.remove(); rows.delete(id); }
      }
      let prev = null;
      for (const inc of list) {
        let row = rows.get(inc.incident_id);
        if (!row) { row = make(inc); rows.set(inc.incident_id, row); }
        if (row.inc !== inc) fill(row, inc);
        const want = prev ? prev.nextSibling : ul.firstChild;
        if (want !== row.li) ul.insertBefore(row.li, want);
        prev = row.li;
      }
      if (count) count.textContent = String(list.length);
      if (empty) empty.hidden = list.length > 0;
      return list;
    },
    tick() {
      const fnow = feedNow();
      for (const row of rows.values()) tickRow(row, fnow);
    },
    select() {
      for (const [rid, row] of rows) row.li.classList.toggle('selected', rid === state.selected);
      const row = rows.get(state.selected);
      if (row) row.li.scrollIntoView({ block: 'nearest' });
    },
    refill() { for (const row of rows.values()) fill(row, row.inc); },
    order: () => sorted().map((i) => i.incident_id),
  };
}

// ------------------------------------------------------------ alerts
/** The alert feed, newest first; with `ack`, an acknowledge button on raised alerts. */
export function createAlertFeed({ ul, count, empty, ack, token, onSelect }) {
  const rows = new Map();
  const pending = new Set();
  async function acknowledge(id, button) {
    pending.add(id);
    button.disabled = true;
    button.textContent = '…';
    try {
      const r = await fetch(`/api/alerts/${encodeURIComponent(id)}/ack`, { method: 'POST', headers: { Authorization: 'Bearer ' + token() } });
      if (!r.ok) {
        let msg = `HTTP ${r.status}`;
        try { const b = await r.json(); if (b && b.error) msg += ' — ' + b.error; } catch (_) { /* not json */ }
        throw new Error(msg);
      }
      toast(t('alert.ack.sent'));
    } catch (e) {
      pending.delete(id);
      toast(t('alert.ack.failed', { err: e.message }), true);
      button.disabled = false;
      button.textContent = t('alert.ack');
    }
  }
  function fill(row, a) {
    row.a = a;
    const li = row.li;
    li.dataset.kind = a.kind || '';
    li.dataset.status = a.status || '';
    li.dataset.severity = String(a.severity || '');
    li.dataset.district = a.district || '';
    if (a.incident_id) li.dataset.incidentId = a.incident_id;
    li.textContent = '';
    const top = el('div', 'al-top');
    top.append(el('span', 'al-kind', label(a.kind)), el('span', 'al-dist', districtName(a.district)));
    if (a.status && a.status !== 'raised') top.append(el('span', 'al-status', label(a.status) + (a.acknowledged_by ? ' · ' + a.acknowledged_by : '')));
    const tm = tsMs(a.raised_at);
    top.append(el('span', 'al-time', Number.isFinite(tm) ? hms(tm) : ''));
    const body = el('div', 'al-body');
    body.append(el('div', 'al-msg', a.message || ''));
    if (ack && a.status === 'raised') {
      const b = el('button', 'ack', pending.has(a.alert_id) ? '…' : t('alert.ack'));
      b.type = 'button';
      b.disabled = pending.has(a.alert_id);
      b.addEventListener('click', (e) => { e.stopPropagation(); acknowledge(a.alert_id, b); });
      body.append(b);
    } else if (a.status !== 'raised') pending.delete(a.alert_id);
    li.append(top, body);
  }
  return {
    render() {
      dirty.alerts = false;
      let list = Array.from(alertFeed.values());
      list.sort((a, b) => (tsMs(b.raised_at) || 0) - (tsMs(a.raised_at) || 0));
      if (list.length > CFG.maxAlertFeed) {
        for (const a of list.slice(CFG.maxAlertFeed)) alertFeed.delete(a.alert_id);
        list = list.slice(0, CFG.maxAlertFeed);
      }
      for (const [id, row] of rows) if (!alertFeed.has(id)) { row.li.remove(); rows.delete(id); }
      let prev = null;
      for (const a of list) {
        let row = rows.get(a.alert_id);
        if (!row) {
          const li = el('li');
          li.dataset.alertId = a.alert_id;
          row = { li, a: null };
          li.addEventListener('click', () => {
            const cur = alertFeed.get(a.alert_id);
            if (cur && cur.incident_id && state.incidents[cur.incident_id]) onSelect(cur.incident_id);
          });
          rows.set(a.alert_id, row);
        }
        if (row.a !== a) fill(row, a);
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
      if (count) count.textContent = String(Object.keys(state.alerts).length);
      if (empty) empty.hidden = list.length > 0;
    },
    refill() { for (const row of rows.values()) fill(row, row.a); },
  };
}

// ------------------------------------------------------------ units
/** A compact unit list (sorted by kind then id). */
export function createUnitList({ ul, count, empty, onSelect }) {
  const rows = new Map();
  function fill(row, u, force) {
    const sig = [u.kind, u.status, u.district, u.incident_id].join('|');
    if (row.sig === sig && !force) return;
    row.sig = sig;
    const li = row.li;
    li.dataset.kind = u.kind || '';
    li.dataset.status = u.status || '';
    li.dataset.district = u.district || '';
    if (u.incident_id) li.dataset.incidentId = u.incident_id; else delete li.dataset.incidentId;
    row.k.className = `ukind k-${u.kind}`;
    row.k.textContent = kindLetter(u.kind);
    row.st.textContent = label(u.status) + (u.incident_id ? ' → ' + u.incident_id : '');
    row.st.className = `u-st s-${u.status}`;
  }
  return {
    render() {
      if (dirty.unitsAll) {
        for (const [id, row] of rows) if (!state.units[id]) { row.li.remove(); rows.delete(id); }
        const ids = Object.keys(state.units).sort((a, b) => (KINDS.indexOf(state.units[a].kind) - KINDS.indexOf(state.units[b].kind)) || a.localeCompare(b));
        let prev = null;
        for (const id of ids) {
          let row = rows.get(id);
          if (!row) {
            const li = el('li');
            li.dataset.unitId = id;
            row = { li, sig: null, k: el('span', 'ukind'), name: el('span', 'u-id', id), st: el('span', 'u-st') };
            li.append(row.k, row.name, row.st);
            li.addEventListener('click', () => {
              const u = state.units[id];
              if (u && u.incident_id && state.incidents[u.incident_id]) onSelect(u.incident_id);
            });
            rows.set(id, row);
          }
          fill(row, state.units[id]);
          const want = prev ? prev.nextSibling : ul.firstChild;
          if (want !== row.li) ul.insertBefore(row.li, want);
          prev = row.li;
        }
      } else {
        for (const id of dirty.units) {
          const row = rows.get(id);
          const u = state.units[id];
          if (row && u) fill(row, u);
        }
      }
      if (count) count.textContent = String(rows.size);
      if (empty) empty.hidden = rows.size > 0;
    },
    refill() { for (const [id, row] of rows) if (state.units[id]) fill(row, state.units[id], true); },
  };
}

export const UNIT_STATUSES = ['available', 'dispatched', 'en_route', 'on_scene', 'returning', 'out_of_service'];

/** The dispatcher's unit status board: one column per status, unit chips inside. */
export function createUnitBoard({ root, onSelect }) {
  const cols = {};
  const chips = new Map(); // id -> {chip, sig}
  root.textContent = '';
  for (const s of UNIT_STATUSES) {
    const col = el('div', `board-col s-${s}`);
    col.dataset.status = s;
    const h = el('div', 'board-h');
    const name = el('span', 'board-name', label(s));
    name.title = label(s);
    const n = el('span', 'count', '0');
    h.append(name, n);
    const body = el('div', 'board-body');
    col.append(h, body);
    root.append(col);
    cols[s] = { col, body, n, name };
  }
  return {
    render() {
      for (const [id, c] of chips) if (!state.units[id]) { c.chip.remove(); chips.delete(id); }
      const ids = Object.keys(state.units).sort((a, b) => (KINDS.indexOf(state.units[a].kind) - KINDS.indexOf(state.units[b].kind)) || a.localeCompare(b));
      const counts = {};
      for (const s of UNIT_STATUSES) counts[s] = [];
      for (const id of ids) {
        const u = state.units[id];
        let c = chips.get(id);
        if (!c) {
          const chip = el('span', 'chip');
          chip.dataset.unitId = id;
          chip.addEventListener('click', () => {
            const cur = state.units[id];
            if (cur && cur.incident_id && state.incidents[cur.incident_id]) onSelect(cur.incident_id);
          });
          c = { chip, sig: null };
          chips.set(id, c);
        }
        const sig = [u.kind, u.status, u.incident_id].join('|');
        if (c.sig !== sig) {
          c.sig = sig;
          c.chip.dataset.kind = u.kind || '';
          c.chip.dataset.status = u.status || '';
          c.chip.className = `chip k-${u.kind}`;
          c.chip.textContent = '';
          c.chip.append(el('b', null, kindLetter(u.kind)), document.createTextNode(' ' + id));
          c.chip.title = `${id} · ${label(u.kind)} · ${label(u.status)}${u.incident_id ? ' → ' + u.incident_id : ''}`;
        }
        (counts[u.status] || counts.out_of_service).push(c.chip);
      }
      for (const s of UNIT_STATUSES) {
        const { body, n } = cols[s];
        let prev = null;
        for (const chip of counts[s]) {
          const want = prev ? prev.nextSibling : body.firstChild;
          if (want !== chip) body.insertBefore(chip, want);
          prev = chip;
        }
        n.textContent = String(counts[s].length);
      }
    },
    relabel() { for (const s of UNIT_STATUSES) { cols[s].name.textContent = label(s); cols[s].name.title = label(s); } for (const c of chips.values()) c.sig = null; },
  };
}

// ------------------------------------------------------------ detail
/**
 * The selected incident with its recommended units. `assign(incident, unit)`
 * (dispatcher only) adds Assign buttons; `pending` is the set of
 * `incident|unit` keys being sent.
 */
export function renderDetail({ box, assign, pending, emptyText }) {
  dirty.detail = false;
  const id = state.selected;
  box.textContent = '';
  if (!id) {
    delete box.dataset.incidentId;
    if (emptyText) { box.hidden = false; box.append(el('div', 'd-note big', emptyText)); } else box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.incidentId = id;
  let inc = state.incidents[id];
  const closed = !inc;
  if (closed) inc = lastClosed && lastClosed.incident_id === id ? lastClosed : { incident_id: id, status: 'closed' };
  box.dataset.status = inc.status || '';

  const head = el('div', 'd-head');
  if (inc.priority) head.append(el('span', `prio p${inc.priority}`, `P${inc.priority}`));
  head.append(el('span', 'd-title', `${label(inc.category)} · ${districtName(inc.district)}`));
  const x = el('button', 'd-close', '×');
  x.type = 'button';
  x.title = t('detail.deselect');
  x.addEventListener('click', () => { state.selected = null; dirty.detail = true; dirty.map = true; dirty.select = true; schedule(); });
  head.append(x);
  box.append(head);

  const dl = el('dl');
  const row = (k, v, cls) => { dl.append(el('dt', null, t(k))); const dd = el('dd', cls); if (v instanceof Node) dd.append(v); else dd.textContent = v; dl.append(dd); return dd; };
  row('detail.id', inc.incident_id);
  row('detail.status', label(closed ? 'closed' : inc.status));
  if (inc.source) row('detail.source', inc.source + (inc.line ? ` (${inc.line})` : ''));
  if (inc.opened_at) {
    const dd = row('detail.opened', `${hms(tsMs(inc.opened_at))} · `);
    const s = el('span', null, '');
    s.dataset.ageFrom = String(tsMs(inc.opened_at));
    dd.append(s);
  }
  if (inc.call_count !== undefined) row('detail.calls', String(inc.call_count));
  if (inc.caller) row('detail.caller', inc.caller, 'caller');
  if (inc.description) row('detail.note', inc.description);
  if (!closed && inc.status === 'open' && inc.assign_deadline) {
    const s = el('span');
    s.dataset.deadline = String(tsMs(inc.assign_deadline));
    s.dataset.opened = String(tsMs(inc.opened_at));
    row('detail.assignby', s);
  }
  const assigned = Array.isArray(inc.assigned_units) ? inc.assigned_units : [];
  row('detail.assigned', assigned.length ? assigned.map((u) => {
    const un = state.units[u];
    return un ? `${kindLetter(un.kind)} ${u} (${label(un.status)})` : u;
  }).join(', ') : t('detail.none'));
  box.append(dl);
  if (closed) { box.append(el('div', 'd-note', t('detail.closed'))); tickDetail(box); return; }

  box.append(el('h3', null, t('rec.title')));
  const rec = state.recommendations[id];
  if (!rec) {
    box.append(el('div', 'd-note', t('rec.none')));
  } else {
    const needs = (rec.needs || []).map((n) => `${n.count} × ${label(n.kind)}`).join(', ');
    if (needs) box.append(el('div', 'd-note', t('rec.needs', { what: needs }) + (rec.auto_assign ? ' · ' + t('rec.auto') : '')));
    else if (rec.auto_assign) box.append(el('div', 'd-note', t('rec.auto')));
    if (rec.unfilled && rec.unfilled.length) box.append(el('div', 'd-warn', t('rec.unfilled', { what: rec.unfilled.map(label).join(', ') })));
    const ul = el('ol');
    ul.id = 'recommendation';
    ul.dataset.incidentId = id;
    if (assign) ul.classList.add('with-assign');
    let n = 0;
    for (const c of rec.candidates || []) {
      n++;
      const li = el('li');
      li.dataset.unitId = c.unit_id;
      li.dataset.kind = c.kind || '';
      li.dataset.distanceM = String(c.distance_m);
      li.dataset.etaS = String(c.eta_s);
      li.dataset.rank = String(n);
      const u = state.units[c.unit_id];
      const isAssigned = assigned.includes(c.unit_id);
      const busy = u && u.status !== 'available' && !isAssigned;
      if (isAssigned) li.classList.add('assigned');
      if (busy) li.classList.add('busy');
      li.append(el('span', 'c-rank', n <= 9 ? String(n) : ''), el('span', `ukind k-${c.kind}`, kindLetter(c.kind)), el('span', 'c-id', c.unit_id),
        el('span', 'num c-dist', km(c.distance_m)), el('span', 'num c-eta', mins(c.eta_s)));
      if (assign) {
        const key = `${id}|${c.unit_id}`;
        const b = el('button', 'assign');
        b.type = 'button';
        b.dataset.unitId = c.unit_id;
        if (isAssigned) { b.textContent = t('rec.assigned'); b.disabled = true; } else if (pending && pending.has(key)) { b.textContent = t('rec.sending'); b.disabled = true; } else {
          b.textContent = t('rec.assign');
          b.title = n <= 9 ? `${t('rec.assign')} (${n})` : t('rec.assign');
          b.addEventListener('click', () => assign(id, c.unit_id));
        }
        li.append(b);
      }
      const why = [c.reason, u && busy ? label(u.status) : ''].filter(Boolean).join(' · ');
      if (why) li.append(el('span', 'reason', why));
      ul.append(li);
    }
    if (!(rec.candidates || []).length) box.append(el('div', 'd-warn', t('rec.nocand')));
    else box.append(ul);
    if (assign) box.append(el('div', 'd-keys', t('rec.keys')));
  }
  tickDetail(box);
}
export function tickDetail(box) {
  if (!box || box.hidden) return;
  const fnow = feedNow();
  for (const s of box.querySelectorAll('[data-age-from]')) s.textContent = fmtAge(fnow - Number(s.dataset.ageFrom));
  for (const s of box.querySelectorAll('[data-deadline]')) {
    const left = Number(s.dataset.deadline) - fnow;
    const window = Number(s.dataset.deadline) - Number(s.dataset.opened);
    s.textContent = left >= 0 ? t('detail.in', { t: fmtAge(left) }) : t('detail.overdue', { t: fmtAge(-left) });
    s.className = left < 0 ? 'overdue-text' : left <= Math.max(30000, window / 3) ? 'warn-text' : '';
  }
}

export { onLangChange };
