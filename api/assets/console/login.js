// Logging in: a wrong password and a rate-limited login each get their
// own message (the latter with when to try again); a session that ended
// says why.

import { useEffect, useState } from 'preact/hooks';
import { login } from './api.js';
import { html, useTitle } from './ui.js';

export function LoginPage({ message }) {
  useTitle('Log in');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [retryAt, setRetryAt] = useState(0);
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (retryAt <= now) return undefined;
    const t = setTimeout(() => setNow(Date.now()), 1000);
    return () => clearTimeout(t);
  }, [retryAt, now]);
  const waiting = Math.ceil((retryAt - now) / 1000);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
    } catch (p) {
      setPassword('');
      if (p.status === 401) {
        setError('Wrong username or password.');
      } else if (p.status === 429) {
        const secs = Number(p.headers?.get('Retry-After')) || 60;
        const at = Date.now() + secs * 1000;
        setRetryAt(at);
        setNow(Date.now());
        setError(
          `Too many login attempts. Try again in ${secs} second${secs === 1 ? '' : 's'}, at ${new Date(at).toLocaleTimeString()}.`,
        );
      } else {
        setError(p.message);
      }
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="login">
    <h1>pgplane</h1>
    <p class="muted">Managed PostgreSQL</p>
    ${message && html`<p class="notice" role="status">${message}</p>`}
    <form onSubmit=${submit} aria-describedby=${error ? 'login-error' : undefined}>
      <div class="field">
        <label for="username">Username</label>
        <input id="username" name="username" autocomplete="username" required value=${username}
          onInput=${(e) => setUsername(e.target.value)} />
      </div>
      <div class="field">
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required value=${password}
          onInput=${(e) => setPassword(e.target.value)} />
      </div>
      ${error && html`<p id="login-error" class="problem" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy || waiting > 0}>
        ${waiting > 0 ? `Log in (wait ${waiting} s)` : busy ? 'Logging in…' : 'Log in'}
      </button>
    </form>
  </main>`;
}
