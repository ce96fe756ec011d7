// The console's shell: who is logged in, the navigation, and which page a
// path shows. Pages talk to the API through api.js only.

import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { can, currentSession, endSession, onSession } from './api.js';
import { closeWatch } from './live.js';
import { html, Link, navigate, usePath } from './ui.js';
import { LoginPage } from './login.js';
import { ListPage } from './list.js';
import { CreatePage } from './create.js';
import { DatabasePage } from './database.js';
import { HistoryPage } from './history.js';
import { AdminPage } from './admin.js';

// Where to go once logged in: the page that sent the user to log in.
let returnTo = '/';

function useSession() {
  const [state, setState] = useState({ session: currentSession(), message: null });
  useEffect(
    () =>
      onSession((session, message) => {
        if (!session) {
          closeWatch();
          if (location.pathname !== '/login') {
            returnTo = location.pathname + location.search;
            navigate('/login', { replace: true });
          }
        } else if (location.pathname === '/login') {
          navigate(returnTo, { replace: true });
          returnTo = '/';
        }
        setState({ session, message: message || null });
      }),
    [],
  );
  return state;
}

function page(path) {
  const p = path.split('?')[0].replace(/\/+$/, '') || '/';
  let m;
  if (p === '/' || p === '/databases') return html`<${ListPage} />`;
  if (p === '/create') return can('editor') ? html`<${CreatePage} />` : html`<${Forbidden} what="create databases" />`;
  if (p === '/audit') return can('admin') ? html`<${AdminPage} />` : html`<${Forbidden} what="read the audit trail" />`;
  if ((m = /^\/databases\/([^/]+)\/history$/.exec(p))) return html`<${HistoryPage} key=${m[1]} name=${decodeURIComponent(m[1])} />`;
  if ((m = /^\/databases\/([^/]+)$/.exec(p))) return html`<${DatabasePage} key=${m[1]} name=${decodeURIComponent(m[1])} />`;
  return html`<section><h1>Not found</h1><p>There is no page at ${p}. <${Link} href="/">Go to the databases</${Link}>.</p></section>`;
}

function Forbidden({ what }) {
  return html`<section><h1>Not allowed</h1><p>Your role may not ${what}.</p></section>`;
}

function App() {
  const { session, message } = useSession();
  const path = usePath();
  const main = useRef(null);
  // After a navigation, focus moves to the page, so keyboard and screen
  // reader users start at its content, not at the end of the old one.
  useEffect(() => {
    main.current?.focus({ preventScroll: true });
  }, [path]);
  if (!session) {
    if (location.pathname !== '/login') {
      returnTo = location.pathname + location.search;
      history.replaceState(null, '', '/login');
    }
    return html`<${LoginPage} message=${message} />`;
  }
  if (path.startsWith('/login')) {
    navigate(returnTo, { replace: true });
    returnTo = '/';
    return null;
  }
  const here = path.split('?')[0];
  const current = (href) => (here === href || (href === '/' && here.startsWith('/databases/')) ? 'page' : undefined);
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <${Link} href="/" class="brand">pgplane</${Link}>
      <nav aria-label="Main">
        <ul>
          <li><${Link} href="/" aria-current=${current('/')}>Databases</${Link}></li>
          ${can('editor') && html`<li><${Link} href="/create" aria-current=${current('/create')}>New database</${Link}></li>`}
          ${can('admin') && html`<li><${Link} href="/audit" aria-current=${current('/audit')}>Audit trail</${Link}></li>`}
        </ul>
      </nav>
      <div class="who">
        <span>${session.username} <span class="role">(${session.role})</span></span>
        <button type="button" class="secondary" onClick=${() => endSession('You have logged out.')}>Log out</button>
      </div>
    </header>
    <main id="main" tabindex="-1" ref=${main}>${page(path)}</main>
  `;
}

render(html`<${App} />`, document.getElementById('root'));
