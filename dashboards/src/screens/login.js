// `/`: the token is entered once and kept for the browser session; the role
// in its payload picks the screen. A token in `?token=` (as printed by
// `ioc demo`) signs in directly.

import { $ } from '../lib/util.js';
import { t, wireLangButton, onLangChange } from '../lib/i18n.js';
import { loadToken, saveToken, cleanToken, decodeClaims, tokenProblem, homeOf, takeLoginReason } from '../lib/auth.js';

export function bootLogin() {
  wireLangButton($('lang'));
  const err = $('login-error');
  let shown = null; // {key, vars}
  const show = (p) => { shown = p; err.textContent = p ? t(p.key, p.vars) : ''; };
  onLangChange(() => show(shown));

  const reason = takeLoginReason();
  const token = loadToken();
  if (token && !tokenProblem(token) && reason !== 'login.rejected') {
    location.replace(homeOf(decodeClaims(token).role));
    return;
  }
  if (reason) show({ key: reason });
  else if (token) show(tokenProblem(token));
  $('login').hidden = false;
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const tok = cleanToken($('token-input').value);
    const problem = tokenProblem(tok);
    if (problem) { show(problem); return; }
    saveToken(tok);
    location.assign(homeOf(decodeClaims(tok).role));
  });
  setTimeout(() => $('token-input').focus(), 0);
}
