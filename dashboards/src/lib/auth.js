// Operator token: entered once, kept in sessionStorage for the browser
// session (a memory fallback when storage is disabled). The role claim of
// the JWT payload decides which screen opens; the server enforces what
// each role may see, the pages only reflect it.

const KEY = 'ioc.token';
const memory = {};

function storeGet(k) {
  try { return sessionStorage.getItem(k); } catch (_) { return memory[k] || null; }
}
function storeSet(k, v) {
  try {
    if (v === null) sessionStorage.removeItem(k);
    else sessionStorage.setItem(k, v);
  } catch (_) { /* private mode: memory only */ }
  if (v === null) delete memory[k];
  else memory[k] = v;
}

/** Accepts `token: …`, `Bearer …` or a bare JWT pasted with spaces around. */
export function cleanToken(t) {
  return String(t || '').trim().replace(/^[\w-]*token:\s*/i, '').replace(/^bearer\s+/i, '').trim();
}

/** The JWT payload (not verified: the server does that), or null. */
export function decodeClaims(t) {
  try {
    const part = t.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4);
    const json = decodeURIComponent(Array.from(atob(b64), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch (_) {
    return null;
  }
}

/** Why a token cannot be used, as an i18n key + vars, or null when it looks fine. */
export function tokenProblem(t) {
  if (!t) return { key: 'login.empty' };
  if (t.split('.').length !== 3) return { key: 'login.notjwt' };
  const c = decodeClaims(t);
  if (!c) return { key: 'login.notjwt' };
  if (Number.isFinite(c.exp) && c.exp * 1000 < Date.now()) return { key: 'login.expired', vars: { at: new Date(c.exp * 1000).toLocaleString() } };
  if (!ROLES.includes(c.role)) return { key: 'login.norole' };
  return null;
}

const ROLES = ['ioc', 'dispatcher', 'district'];

/** A `?token=` in the address bar wins (and is removed from it); else the stored one. */
export function loadToken() {
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
    storeSet(KEY, t);
    return t;
  }
  return storeGet(KEY);
}

export function saveToken(t) {
  storeSet(KEY, t || null);
}

/** The screen a role opens. */
export function homeOf(role) {
  if (role === 'dispatcher') return '/dispatch/';
  if (role === 'district') return '/district/';
  return '/wall/';
}

/** Which roles may use a screen (the server refuses the channels otherwise). */
export const SCREEN_ROLES = {
  wall: ['ioc', 'dispatcher'],
  dispatch: ['dispatcher'],
  district: ['district', 'ioc', 'dispatcher'],
};

/** Sends the browser to the login page, remembering why. */
export function toLogin(reasonKey) {
  try { if (reasonKey) sessionStorage.setItem('ioc.login.reason', reasonKey); } catch (_) { /* ignore */ }
  location.replace('/');
}

export function takeLoginReason() {
  try {
    const r = sessionStorage.getItem('ioc.login.reason');
    sessionStorage.removeItem('ioc.login.reason');
    return r;
  } catch (_) {
    return null;
  }
}
