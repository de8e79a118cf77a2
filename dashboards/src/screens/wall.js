// `/wall/`: the IOC wall screen. The whole city (channels `city` and
// `units`), readable across a room, unattended: map with hot spots, KPI
// tiles, open incidents by priority and age, the alert feed.

import { $ } from '../lib/util.js';
import { onLangChange } from '../lib/i18n.js';
import { state } from '../lib/store.js';
import { createMap } from '../lib/map.js';
import { createIncidentList, createAlertFeed, renderKpis, renderDetail, tickDetail } from '../lib/ui.js';

export function wall({ select }) {
  const map = createMap({ hotspots: true, onSelect: select });
  const incidents = createIncidentList({ ul: $('incident-list'), count: $('incident-count'), empty: $('incident-empty'), onSelect: select });
  const alerts = createAlertFeed({ ul: $('alert-list'), count: $('alert-count'), empty: $('alert-empty'), onSelect: select });
  const box = $('incident-detail');
  onLangChange(() => { incidents.refill(); alerts.refill(); renderDetail({ box }); renderKpis(); });
  document.addEventListener('keydown', (e) => {
    if (e.target && (e.target.tagName === 'TEXTAREA' || e.target.tagName === 'INPUT')) return;
    if (e.key === 'Escape') select(null);
    else if (e.key === 'f' || e.key === 'F') map.fit();
  });
  return {
    map,
    channels: () => ['city', 'units'],
    incidents: () => incidents.render(),
    alerts: () => alerts.render(),
    kpi: () => renderKpis(),
    select: () => { incidents.select(); },
    detail: () => renderDetail({ box }),
    tick: () => { incidents.tick(); tickDetail(box); },
    get state() { return state; },
  };
}
