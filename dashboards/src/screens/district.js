// `/district/`: a district centre's screen (channel `district:<id>`). A
// district user gets its own district only (the token's `district` claim;
// the server refuses any other channel). IOC and dispatcher users may pick a
// district (`?district=<zone id>` or the selector). Incidents, alerts with
// an acknowledge button, units in the district and its coverage by kind.

import { $, el } from '../lib/util.js';
import { t, label, onLangChange } from '../lib/i18n.js';
import { state, dirty, schedule, isOpen, markAll, alertFeed } from '../lib/store.js';
import { createMap, districtName, KINDS, kindLetter } from '../lib/map.js';
import { resubscribe } from '../lib/feed.js';
import { createIncidentList, createAlertFeed, createUnitList, renderKpis, renderDetail, tickDetail } from '../lib/ui.js';

export function district({ claims, token, select }) {
  const params = new URL(location.href).searchParams;
  let id = claims.role === 'district' ? claims.district : params.get('district') || 'hai_chau';
  state.district = id;
  const chooser = $('district-select');
  const map = createMap({
    focus: id,
    onSelect: select,
    onZones: (zones) => {
      setTitle();
      if (claims.role === 'district' || !chooser) return;
      chooser.textContent = '';
      for (const z of zones) {
        const o = el('option', null, z.name_vi || z.name || z.id);
        o.value = z.id;
        if (z.id === id) o.selected = true;
        chooser.append(o);
      }
      chooser.hidden = false;
    },
  });
  if (chooser) {
    chooser.addEventListener('change', () => {
      const old = [`district:${id}`];
      id = chooser.value;
      state.district = id;
      const u = new URL(location.href);
      u.searchParams.set('district', id);
      history.replaceState(null, '', u.pathname + u.search);
      // A different district: forget the old one's picture before its snapshot.
      for (const k of ['incidents', 'units', 'alerts', 'recommendations']) for (const x of Object.keys(state[k])) delete state[k][x];
      alertFeed.clear();
      map.setFocus(id);
      setTitle();
      resubscribe(old);
      markAll();
    });
  }
  function setTitle() {
    const n = $('district-name');
    if (n) { n.textContent = districtName(id); n.dataset.district = id; }
    const o = $('district-only');
    if (o) o.textContent = t('district.only', { name: districtName(id) });
    document.title = `${districtName(id)} — ${t('app.title')}`;
  }
  setTitle();

  const incidents = createIncidentList({ ul: $('incident-list'), count: $('incident-count'), empty: $('incident-empty'), deadline: true, onSelect: select });
  const alerts = createAlertFeed({ ul: $('alert-list'), count: $('alert-count'), empty: $('alert-empty'), ack: true, token: () => token, onSelect: select });
  const units = createUnitList({ ul: $('unit-list'), count: $('unit-count'), empty: $('unit-empty'), onSelect: select });
  const box = $('incident-detail');

  // Coverage: available units of each kind inside the district, and the
  // engine's coverage-gap alerts for it.
  function renderCoverage() {
    const root = $('coverage');
    if (!root) return;
    const avail = {};
    for (const k of KINDS) avail[k] = 0;
    for (const u of Object.values(state.units)) if (u.district === id && u.status === 'available' && avail[u.kind] !== undefined) avail[u.kind]++;
    const gaps = Object.values(state.alerts).filter((a) => a.kind === 'coverage_gap' && a.district === id);
    let anyGap = gaps.length > 0;
    for (const k of KINDS) {
      const tile = $(`cov-${k}`);
      if (!tile) continue;
      const gapAlert = gaps.some((a) => (a.message || '').includes(k) || (a.message || '').includes(k.replace('_', ' ')));
      const gap = avail[k] === 0 || gapAlert;
      if (gap) anyGap = true;
      tile.dataset.value = String(avail[k]);
      tile.dataset.gap = gap ? '1' : '0';
      tile.querySelector('.kpi-v').textContent = String(avail[k]);
      tile.querySelector('.kpi-l').textContent = `${kindLetter(k)} ${label(k)}${gap ? ' · ' + t('district.coverage.gap') : ''}`;
    }
    root.dataset.state = anyGap ? 'gap' : 'ok';
    const s = $('coverage-state');
    if (s) s.textContent = anyGap ? t('district.coverage.gap') : t('district.coverage.ok');
  }
  onLangChange(() => { setTitle(); incidents.refill(); alerts.refill(); units.refill(); renderDetail({ box }); renderCoverage(); dirty.base = true; schedule(); });
  document.addEventListener('keydown', (e) => {
    if (e.target && (e.target.tagName === 'SELECT' || e.target.tagName === 'INPUT')) return;
    if (e.key === 'Escape') select(null);
    else if (e.key === 'f' || e.key === 'F') map.fit();
  });

  return {
    map,
    channels: () => [`district:${id}`],
    incidents: () => incidents.render(),
    units: () => units.render(),
    alerts: () => { alerts.render(); renderCoverage(); },
    kpi: () => { renderKpis(); renderCoverage(); },
    select: () => incidents.select(),
    detail: () => renderDetail({ box }),
    tick: () => { incidents.tick(); tickDetail(box); },
    isOpen,
  };
}
