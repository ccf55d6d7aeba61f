// Logging in when the server asks for it (topotap --auth-htpasswd).
//
// The API answers 401 without credentials. The login form posts the user name and
// password to /login as an HTML form would (application/x-www-form-urlencoded), and the
// server answers with the `authtoken` cookie: HttpOnly and SameSite=Strict, so the page's
// scripts never see the token, and the browser sends it on every same-origin request and
// on the WebSocket upgrade. Logging out asks the server to expire the cookie. With
// authentication off the API never answers 401 and none of this shows.

import { $, clear, h } from './dom.js';

const USER_HEADER = 'X-Topotap-User';

/**
 * Whether the API lets this page in: {ok: true, user} (user is null with authentication
 * off), {ok: false, reason} on a 401, or throws for anything else.
 */
export async function session() {
  const resp = await fetch('/api', { headers: { Accept: 'application/json' }, cache: 'no-store' });
  if (resp.status === 401) {
    return { ok: false, reason: (await resp.text()).trim() };
  }
  return { ok: true, user: resp.headers.get(USER_HEADER) };
}

/** POST /login as a form: null on success, else the server's one-line reason. */
export async function login(username, password) {
  let resp;
  try {
    resp = await fetch('/login', {
      method: 'POST',
      body: new URLSearchParams({ username, password }),
      cache: 'no-store',
    });
  } catch (e) {
    return `cannot reach the server: ${e.message}`;
  }
  if (resp.ok) return null;
  return (await resp.text()).trim() || `${resp.status} ${resp.statusText}`;
}

/** POST /logout: the server expires the authtoken cookie. */
export async function logout() {
  await fetch('/logout', { method: 'POST', cache: 'no-store' });
}

/**
 * The login overlay. show(reason) displays it and resolves once the user logged in;
 * `onLogout` is called after the user logged out.
 */
export class LoginForm {
  constructor(root) {
    this.root = root;
    this.waiting = null;
  }

  /** Shows the form (once, however many callers wait) and resolves after a login. */
  show(reason = '') {
    if (this.waiting) return this.waiting.promise;
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    this.waiting = { promise, resolve };
    this.render(reason);
    return promise;
  }

  render(reason) {
    const error = h('div', { class: 'login-error', id: 'login-error', role: 'alert' });
    const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, spellcheck: 'false' });
    const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const submit = h('button', { class: 'btn primary', type: 'submit', id: 'login-submit' }, 'Log in');
    const form = h(
      'form',
      { class: 'login-box', id: 'login-form', autocomplete: 'on' },
      h('div', { class: 'login-title' }, h('img', { src: '/ui/favicon.svg', alt: '', width: 22, height: 22 }), h('span', null, 'topotap')),
      h('p', { class: 'muted small', id: 'login-reason' }, reason || 'This server requires a login.'),
      h('label', { for: 'login-username' }, 'User name'),
      user,
      h('label', { for: 'login-password' }, 'Password'),
      password,
      error,
      submit,
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      error.textContent = '';
      const failure = await login(user.value, password.value);
      submit.disabled = false;
      if (failure) {
        error.textContent = failure;
        password.value = '';
        password.focus();
        return;
      }
      this.hide();
    });
    clear(this.root).append(form);
    this.root.classList.remove('hidden');
    document.body.classList.add('logged-out');
    user.focus();
  }

  hide() {
    this.root.classList.add('hidden');
    document.body.classList.remove('logged-out');
    clear(this.root);
    const w = this.waiting;
    this.waiting = null;
    w?.resolve();
  }

  get shown() {
    return this.waiting !== null;
  }
}

/** The user name and the logout button in the top bar (only with authentication on). */
export function showUser(user, onLogout) {
  const box = $('#user');
  clear(box);
  box.classList.toggle('hidden', !user);
  if (!user) return;
  box.append(
    h('span', { class: 'muted', id: 'user-name' }, user),
    h('button', { class: 'btn small', type: 'button', id: 'logout', onclick: onLogout }, 'Log out'),
  );
}
