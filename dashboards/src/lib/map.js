// The canvas map: district polygons from GET /api/zones (no tiles, works
// offline), call hot spots, assignment and candidate lines, units by kind
// and status, incidents by priority (pulsing while new). District polygons
// are drawn once per view change to an offscreen canvas; each frame blits
// it and draws the live layers. Frames run continuously only while an
// incident is pulsing.

import { $, el, fmtAge, tsMs } from './util.js';
import { t, label, onLangChange } from './i18n.js';
import { state, dirty, schedule, markAll, pulseStart, isOpen, feedNow, recentCalls, CFG } from './store.js';

export const PRIO_COLOR = { 1: '#ff3b30', 2: '#ff9500', 3: '#ffd60a', 4: '#3b8bff' };
export const KINDS = ['ambulance', 'fire_engine', 'police', 'rescue'];
export const KIND = {
  ambulance: { letter: 'A', color: '#22d3ee' },
  fire_engine: { letter: 'F', color: '#f472b6' },
  police: { letter: 'P', color: '#a78bfa' },
  rescue: { letter: 'R', color: '#a3e635' },
};
export const kindLetter = (k) => (KIND[k] ? KIND[k].letter : '?');
const kindColor = (k) => (KIND[k] ? KIND[k].color : '#cccccc');
const prioColor = (p) => PRIO_COLOR[p] || '#cccccc';
// Land districts of Da Nang, used until /api/zones answers.
const FALLBACK_BBOX = { minLon: 107.8, maxLon: 108.35, minLat: 15.9, maxLat: 16.2 };
const ZONES_RETRY_MS = 15000;

const zoneById = new Map();
/** Display name of a zone id (Vietnamese name when known). */
export function districtName(id) {
  if (!id) return t('outside');
  const z = zoneById.get(id);
  return z ? z.name_vi || z.name || id : id;
}

/**
 * Creates the map on `#map`. Options: `focus` (zone id: fit to it and dim
 * the others), `hotspots` (draw calls of the last 15 min), `onSelect(id)`.
 * Returns {draw(), fit(), project(lon, lat), setZones(gj), loadZones(), setFocus(id)}.
 */
export function createMap(opts = {}) {
  const canvas = $('map');
  const ctx = canvas.getContext('2d');
  const base = document.createElement('canvas');
  const bctx = base.getContext('2d');
  let W = 0;
  let H = 0;
  let dpr = 1;
  let kx = Math.cos(((FALLBACK_BBOX.minLat + FALLBACK_BBOX.maxLat) / 2) * Math.PI / 180);
  let landBBox = Object.assign({}, FALLBACK_BBOX);
  let focus = opts.focus || null;
  const view = { cx: 0, cy: 0, scale: 1, userMoved: false };
  let zoneShapes = []; // {id, name, name_vi, offshore, path: Path2D (world coords), label: [lon, lat], bbox}
  const onSelect = opts.onSelect || (() => {});

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
    const fz = focus ? zoneShapes.find((z) => z.id === focus) : null;
    const b = fz && fz.bbox ? fz.bbox : landBBox;
    const bw = Math.max(1e-6, (b.maxLon - b.minLon) * kx);
    const bh = Math.max(1e-6, b.maxLat - b.minLat);
    view.cx = worldX((b.minLon + b.maxLon) / 2);
    view.cy = worldY((b.minLat + b.maxLat) / 2);
    const pad = fz ? 0.86 : 0.94;
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
  function bboxOf(polys) {
    const b = { minLon: Infinity, maxLon: -Infinity, minLat: Infinity, maxLat: -Infinity };
    for (const poly of polys) for (const ring of poly) for (const [lon, lat] of ring) {
      if (lon < b.minLon) b.minLon = lon;
      if (lon > b.maxLon) b.maxLon = lon;
      if (lat < b.minLat) b.minLat = lat;
      if (lat > b.maxLat) b.maxLat = lat;
    }
    return Number.isFinite(b.minLon) ? b : null;
  }
  function setZones(gj) {
    const feats = (gj.features || []).filter((f) => f && f.geometry);
    // Fit box and aspect from the land zones only.
    const b = { minLon: Infinity, maxLon: -Infinity, minLat: Infinity, maxLat: -Infinity };
    for (const f of feats) {
      const p = f.properties || {};
      if (p.offshore) continue;
      const bb = bboxOf(ringsOf(f.geometry));
      if (!bb) continue;
      b.minLon = Math.min(b.minLon, bb.minLon); b.maxLon = Math.max(b.maxLon, bb.maxLon);
      b.minLat = Math.min(b.minLat, bb.minLat); b.maxLat = Math.max(b.maxLat, bb.maxLat);
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
      const z = { id: p.id, name: p.name, name_vi: p.name_vi, offshore: !!p.offshore, path, label: labelPoint(polys), bbox: bboxOf(polys) };
      zoneShapes.push(z);
      if (p.id) zoneById.set(p.id, z);
      state.zones.push({ id: p.id, name: p.name, name_vi: p.name_vi, offshore: !!p.offshore });
    }
    canvas.dataset.zones = String(zoneShapes.length);
    if (!view.userMoved) fit();
    if (opts.onZones) opts.onZones(state.zones);
    markAll();
  }

  // --- zones loading, retried while it fails
  let zonesTimer = 0;
  let zonesLoading = false;
  function showMapMessage(text, retry) {
    const m = $('map-message');
    if (!m) return;
    m.textContent = text;
    if (retry) {
      const b = el('button', null, t('map.retry'));
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
      let r;
      try {
        r = await fetch('/api/zones', { cache: 'no-cache' });
      } catch (e) {
        throw new Error('server unreachable');
      }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      let gj;
      try { gj = await r.json(); } catch (_) { throw new Error('response is not JSON'); }
      if (!gj || !Array.isArray(gj.features)) throw new Error('response is not a GeoJSON FeatureCollection');
      setZones(gj);
      state.zonesError = null;
      const m = $('map-message');
      if (m) m.hidden = true;
    } catch (e) {
      state.zonesError = e.message;
      showMapMessage(t('map.zones.error', { err: e.message, s: ZONES_RETRY_MS / 1000 }), true);
      zonesTimer = setTimeout(loadZones, ZONES_RETRY_MS);
    } finally {
      zonesLoading = false;
    }
  }

  // --- drawing
  function drawBase() {
    dirty.base = false;
    const c = bctx;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.fillStyle = '#03070c';
    c.fillRect(0, 0, base.width, base.height);
    // graticule
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
      const dim = focus && z.id !== focus;
      c.fillStyle = dim ? '#070b11' : z.id === focus ? '#14263a' : z.offshore ? '#0b1420' : '#101b29';
      c.fill(z.path, 'evenodd');
    }
    for (const z of zoneShapes) {
      const dim = focus && z.id !== focus;
      c.setLineDash(z.offshore ? [6 / view.scale, 4 / view.scale] : []);
      c.strokeStyle = z.id === focus ? '#cfe3ff' : dim ? '#223042' : z.offshore ? '#4d6580' : '#7f97b3';
      c.lineWidth = (z.id === focus ? 3 : 1.4) / view.scale;
      c.stroke(z.path);
    }
    c.setLineDash([]);
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.textAlign = 'center';
    c.textBaseline = 'middle';
    const fs = Math.round(Math.max(12, Math.min(20, W / 70)));
    c.lineWidth = 4;
    c.strokeStyle = '#03070c';
    for (const z of zoneShapes) {
      if (!z.label) continue;
      const dim = focus && z.id !== focus;
      let [x, y] = project(z.label[0], z.label[1]);
      let text = z.name_vi || z.name || z.id || '';
      if (z.offshore) text += ' ' + t('map.offshore');
      c.font = `${z.id === focus ? 800 : 600} ${z.id === focus ? Math.round(fs * 1.3) : fs}px system-ui, "DejaVu Sans", sans-serif`;
      const off = x < 0 || x > W || y < 0 || y > H;
      if (off) {
        if (!z.offshore || focus) continue;
        // Point to an off-screen offshore zone from the map edge.
        const m = 14;
        const arrow = x > W ? ' →' : x < 0 ? '← ' : y < 0 ? ' ↑' : ' ↓';
        text = x < 0 ? arrow + text : text + arrow;
        x = Math.min(W - m, Math.max(m, x));
        y = Math.min(H - m, Math.max(m + 60, y));
        c.textAlign = x >= W - m ? 'right' : x <= m ? 'left' : 'center';
      } else c.textAlign = 'center';
      c.fillStyle = dim ? '#3d4d61' : z.offshore ? '#6f88a5' : '#b9cde4';
      c.strokeText(text, x, y);
      c.fillText(text, x, y);
    }
  }

  function drawHotspots(c) {
    const list = recentCalls();
    if (!list.length) return;
    const now = feedNow();
    const r = Math.max(34, Math.min(90, view.scale * 0.02));
    c.save();
    c.globalCompositeOperation = 'lighter';
    for (const call of list) {
      const [x, y] = project(call.lon, call.lat);
      if (x < -r || y < -r || x > W + r || y > H + r) continue;
      const fade = 1 - Math.min(1, Math.max(0, (now - call.t) / CFG.callWindowMs)) * 0.6;
      const g = c.createRadialGradient(x, y, 0, x, y, r);
      g.addColorStop(0, `rgba(255,110,30,${0.5 * fade})`);
      g.addColorStop(0.45, `rgba(255,80,20,${0.22 * fade})`);
      g.addColorStop(1, 'rgba(255,60,20,0)');
      c.fillStyle = g;
      c.fillRect(x - r, y - r, 2 * r, 2 * r);
    }
    c.restore();
  }

  function draw() {
    dirty.map = false;
    state.frames++;
    if (dirty.base) drawBase();
    const c = ctx;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.drawImage(base, 0, 0);
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (opts.hotspots) drawHotspots(c);
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
      c.strokeStyle = 'rgba(255,255,255,0.8)';
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
    const us = Math.round(Math.max(14, Math.min(22, W / 80)));
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
      c.globalAlpha = avail ? 1 : u.status === 'out_of_service' ? 0.3 : 0.8;
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
        c.lineWidth = 2;
        c.strokeRect(x - h + 1, y - h + 1, us - 2, us - 2);
        c.fillStyle = col;
      }
      c.fillText(kindLetter(u.kind), x, y + 0.5);
      if (Number.isFinite(u.heading_deg) && (u.speed_kmh || 0) > 1) {
        const a = (u.heading_deg * Math.PI) / 180;
        c.strokeStyle = col;
        c.lineWidth = 2;
        c.beginPath();
        c.moveTo(x + Math.sin(a) * h, y - Math.cos(a) * h);
        c.lineTo(x + Math.sin(a) * (h + 7), y - Math.cos(a) * (h + 7));
        c.stroke();
      }
    }
    c.globalAlpha = 1;

    // incidents, P1 drawn last (on top)
    incs.sort((a, b) => b.priority - a.priority);
    const rBase = Math.max(10, Math.min(15, W / 110));
    for (const inc of incs) {
      if (!inc.location) continue;
      const [x, y] = project(inc.location.lon, inc.location.lat);
      const r = rBase - Math.min(3, Math.max(0, (inc.priority || 4) - 1)) * 1.3;
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
            c.arc(x, y, r + 4 + ph * 30, 0, Math.PI * 2);
            c.stroke();
          }
          c.globalAlpha = 1;
        }
      }
      c.fillStyle = col;
      c.beginPath();
      c.arc(x, y, r, 0, Math.PI * 2);
      c.fill();
      c.lineWidth = 2.5;
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
        c.moveTo(x - r - 20, y); c.lineTo(x - r - 9, y);
        c.moveTo(x + r + 9, y); c.lineTo(x + r + 20, y);
        c.moveTo(x, y - r - 20); c.lineTo(x, y - r - 9);
        c.moveTo(x, y + r + 9); c.lineTo(x, y + r + 20);
        c.stroke();
      }
    }
    return pulseStart.size > 0;
  }

  /** Centres the view on the selected incident if it is off screen. */
  function reveal(id) {
    const inc = id ? state.incidents[id] : null;
    if (!inc || !inc.location) return;
    const [x, y] = project(inc.location.lon, inc.location.lat);
    if (x < 40 || y < 40 || x > W - 40 || y > H - 40) {
      view.cx = worldX(inc.location.lon);
      view.cy = worldY(inc.location.lat);
      view.userMoved = true;
      dirty.base = true;
      schedule();
    }
  }

  // --- interaction
  function hitTest(px, py) {
    let best = null;
    let bestD = 18 * 18;
    for (const inc of Object.values(state.incidents)) {
      if (!isOpen(inc) || !inc.location) continue;
      const [x, y] = project(inc.location.lon, inc.location.lat);
      const d = (x - px) ** 2 + (y - py) ** 2;
      if (d < bestD) { bestD = d; best = { type: 'incident', item: inc }; }
    }
    if (best) return best;
    bestD = 12 * 12;
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
      return `P${i.priority} ${label(i.category)} · ${districtName(i.district)}\n${i.incident_id} · ${label(i.status)} · ☎ ${i.call_count || 0} · ${fmtAge(feedNow() - tsMs(i.opened_at))}`;
    }
    const u = hit.item;
    return `${kindLetter(u.kind)} ${u.unit_id} · ${label(u.status)}\n${districtName(u.district)}${u.incident_id ? ' · → ' + u.incident_id : ''}${Number.isFinite(u.speed_kmh) ? ' · ' + Math.round(u.speed_kmh) + ' km/h' : ''}`;
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
        if (tip) tip.hidden = true;
        schedule();
      }
      return;
    }
    if (!tip) return;
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
      if (hit && hit.type === 'incident') onSelect(hit.item.incident_id === state.selected ? null : hit.item.incident_id);
      else if (hit && hit.type === 'unit' && hit.item.incident_id && state.incidents[hit.item.incident_id]) onSelect(hit.item.incident_id);
      else if (!hit) onSelect(null);
    }
  };
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);
  canvas.addEventListener('pointerleave', () => { const tip = $('tooltip'); if (tip) tip.hidden = true; });
  function zoomAt(px, py, factor) {
    const [lon, lat] = unproject(px, py);
    view.scale = Math.min(1e7, Math.max(10, view.scale * factor));
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
  const on = (id, f) => { const b = $(id); if (b) b.addEventListener('click', f); };
  on('fit', fit);
  on('zoom-in', () => zoomAt(W / 2, H / 2, 1.5));
  on('zoom-out', () => zoomAt(W / 2, H / 2, 1 / 1.5));
  onLangChange(() => { dirty.base = true; schedule(); });

  if (typeof ResizeObserver === 'function') new ResizeObserver(resize).observe(canvas.parentElement);
  window.addEventListener('resize', resize);
  resize();

  return {
    draw, fit, project, setZones, loadZones, reveal,
    setFocus(id) { focus = id || null; view.userMoved = false; fit(); },
    needsFrame: () => dirty.map || dirty.base,
  };
}
