// `/dispatch/`: the dispatcher console (channels `dispatch` — callers
// unmasked, dispatchers only — and `units`). Queue by priority and age with
// assign-by timers (amber near the deadline, red past it), the selected
// incident on the map with its recommended units ranked by ETA, one click or
// one key to assign (POST /api/incidents/{id}/assign), unit status board.

import { $, toast } from '../lib/util.js';
import { t, onLangChange } from '../lib/i18n.js';
import { state, dirty, schedule } from '../lib/store.js';
import { createMap } from '../lib/map.js';
import { createIncidentList, createAlertFeed, createUnitBoard, renderKpis, renderDetail, tickDetail } from '../lib/ui.js';

export function dispatch({ token, select }) {
  const map = createMap({ hotspots: false, onSelect: select });
  const queue = createIncidentList({ ul: $('incident-list'), count: $('incident-count'), empty: $('incident-empty'), deadline: true, caller: true, onSelect: select });
  const alerts = createAlertFeed({ ul: $('alert-list'), count: $('alert-count'), empty: $('alert-empty'), onSelect: select });
  const board = createUnitBoard({ root: $('unit-board'), onSelect: select });
  const box = $('incident-detail');
  const pending = new Set(); // "incident|unit" being sent

  async function assign(incidentId, unitId) {
    const key = `${incidentId}|${unitId}`;
    if (pending.has(key)) return;
    pending.add(key);
    dirty.detail = true;
    schedule();
    try {
      const r = await fetch(`/api/incidents/${encodeURIComponent(incidentId)}/assign`, {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
        body: JSON.stringify({ unit_id: unitId }),
      });
      if (!r.ok) {
        let msg = `HTTP ${r.status}`;
        try { const b = await r.json(); if (b && b.error) msg += ' — ' + b.error; } catch (_) { /* not json */ }
        throw new Error(msg);
      }
      toast(t('assign.sent', { unit: unitId, inc: incidentId }));
    } catch (e) {
      toast(t('assign.failed', { err: e.message }), true);
    } finally {
      // The button stays "sending" until dispatch.assigned arrives or 10 s pass.
      setTimeout(() => { pending.delete(key); dirty.detail = true; schedule(); }, 10000);
      dirty.detail = true;
      schedule();
    }
  }
  const render = () => renderDetail({ box, assign, pending, emptyText: t('dispatch.select') });

  function move(delta) {
    const order = queue.order();
    if (!order.length) return;
    const i = order.indexOf(state.selected);
    const next = i < 0 ? (delta > 0 ? 0 : order.length - 1) : Math.min(order.length - 1, Math.max(0, i + delta));
    select(order[next]);
  }
  function assignRank(n) {
    const id = state.selected;
    const rec = id && state.recommendations[id];
    const inc = id && state.incidents[id];
    if (!rec || !inc) return;
    const assigned = inc.assigned_units || [];
    const cands = rec.candidates || [];
    const c = n === 0 ? cands.find((x) => !assigned.includes(x.unit_id) && (!state.units[x.unit_id] || state.units[x.unit_id].status === 'available')) : cands[n - 1];
    if (c && !assigned.includes(c.unit_id)) assign(id, c.unit_id);
  }
  document.addEventListener('keydown', (e) => {
    if (e.target && (e.target.tagName === 'TEXTAREA' || e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT')) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === 'ArrowDown' || e.key === 'j') { e.preventDefault(); move(1); }
    else if (e.key === 'ArrowUp' || e.key === 'k') { e.preventDefault(); move(-1); }
    else if (e.key === 'Escape') select(null);
    else if (e.key === 'Enter' && !(e.target && e.target.tagName === 'BUTTON')) { e.preventDefault(); assignRank(0); }
    else if (/^[1-9]$/.test(e.key)) assignRank(Number(e.key));
    else if (e.key === 'f' || e.key === 'F') map.fit();
  });
  onLangChange(() => { queue.refill(); alerts.refill(); board.relabel(); board.render(); render(); });

  return {
    map,
    channels: () => ['dispatch', 'units'],
    incidents: () => { queue.render(); if (state.selected && !state.incidents[state.selected]) dirty.detail = true; },
    units: () => board.render(),
    alerts: () => alerts.render(),
    kpi: () => renderKpis(),
    select: () => { queue.select(); map.reveal(state.selected); },
    detail: render,
    tick: () => { queue.tick(); tickDetail(box); },
  };
}
