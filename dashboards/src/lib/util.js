// Small DOM and formatting helpers shared by every screen.

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export const pad2 = (n) => String(n).padStart(2, '0');

/** HH:MM:SS of a local time in ms. */
export function hms(ms) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** mm:ss (or h:mm:ss) of a duration in ms; negative durations get a minus sign. */
export function fmtAge(ms) {
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

/** Milliseconds of an RFC 3339 time, NaN when absent or invalid. */
export const tsMs = (ts) => {
  const t = Date.parse(ts);
  return Number.isFinite(t) ? t : NaN;
};

export const km = (m) => (Number.isFinite(m) ? `${(m / 1000).toFixed(1)} km` : '—');
export const mins = (s) => (Number.isFinite(s) ? `${(s / 60).toFixed(1)} min` : '—');

/** Nearest-rank percentile of a sorted array (q in 0..1). */
export function percentile(sorted, q) {
  if (!sorted.length) return NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}

let toastBox = null;
/** A short message in the corner for a few seconds. */
export function toast(text, isError) {
  if (!toastBox) toastBox = $('toasts');
  if (!toastBox) return;
  const t = el('div', isError ? 'toast error' : 'toast', text);
  toastBox.appendChild(t);
  while (toastBox.children.length > 4) toastBox.firstChild.remove();
  setTimeout(() => t.remove(), 7000);
}
