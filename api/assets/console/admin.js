// The whole audit trail (admins): filtered by actor, action, database and
// time range, a page at a time, newest first.

import { useEffect, useState } from 'preact/hooks';
import { request } from './api.js';
import { AuditTable } from './history.js';
import { Field, html, ProblemMessage, useTitle } from './ui.js';

const ACTIONS = [
  'auth.login', 'auth.login_failed', 'database.create', 'database.update', 'database.delete',
  'database.rollback', 'database.credentials_read', 'audit.read',
];
const PAGE = 50;

function queryOf(filters, cursor) {
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const k of ['actor', 'action', 'database']) if (filters[k].trim()) q.set(k, filters[k].trim());
  // datetime-local is the user's local time; the API takes RFC 3339.
  for (const k of ['since', 'until']) if (filters[k]) q.set(k, new Date(filters[k]).toISOString());
  if (cursor) q.set('cursor', cursor);
  return q.toString();
}

export function AdminPage() {
  useTitle('Audit trail');
  const empty = { actor: '', action: '', database: '', since: '', until: '' };
  const [draft, setDraft] = useState(empty);
  const [filters, setFilters] = useState(empty);
  const [cursors, setCursors] = useState([null]);
  const [page, setPage] = useState({ items: [], next_cursor: null, query: null });
  const [problem, setProblem] = useState(null);
  const [errors, setErrors] = useState({});
  const cursor = cursors[cursors.length - 1];
  const query = queryOf(filters, cursor);
  // What is shown is the answer to the query asked, or "loading": never
  // the previous page under the new page's number.
  const loading = page.query !== query;

  useEffect(() => {
    let current = true;
    request('GET', `/audit?${query}`).then(
      (r) => { if (current) { setPage({ ...r.body, query }); setProblem(null); setErrors({}); } },
      (p) => {
        if (!current) return;
        if (p.status === 422) setErrors(p.fields); else setProblem(p);
        setPage({ items: [], next_cursor: null, query });
      },
    );
    return () => { current = false; };
  }, [query]);

  const set = (k) => (e) => setDraft((d) => ({ ...d, [k]: e.target.value }));
  const apply = (e) => {
    e.preventDefault();
    setFilters(draft);
    setCursors([null]);
  };
  const clear = () => {
    setDraft(empty);
    setFilters(empty);
    setCursors([null]);
  };
  const pageNo = cursors.length;
  return html`<section class="admin">
    <h1>Audit trail</h1>
    <form class="filters" onSubmit=${apply} aria-label="Audit filters">
      <${Field} id="f-actor" label="Actor" error=${errors.actor}><input id="f-actor" value=${draft.actor} onInput=${set('actor')} autocomplete="off" /></${Field}>
      <${Field} id="f-action" label="Action" error=${errors.action}>
        <select id="f-action" value=${draft.action} onChange=${set('action')}>
          <option value="">Any</option>
          ${ACTIONS.map((a) => html`<option value=${a}>${a}</option>`)}
        </select>
      </${Field}>
      <${Field} id="f-database" label="Database" error=${errors.database}><input id="f-database" value=${draft.database} onInput=${set('database')} autocomplete="off" /></${Field}>
      <${Field} id="f-since" label="From" error=${errors.since}><input id="f-since" type="datetime-local" value=${draft.since} onInput=${set('since')} /></${Field}>
      <${Field} id="f-until" label="Until" error=${errors.until}><input id="f-until" type="datetime-local" value=${draft.until} onInput=${set('until')} /></${Field}>
      <div class="actions">
        <button type="submit">Apply filters</button>
        <button type="button" class="secondary" onClick=${clear}>Clear</button>
      </div>
    </form>
    <${ProblemMessage} problem=${problem} />
    <p class="muted" role="status">${loading ? 'Loading…' : `Page ${pageNo}: ${page.items.length} record${page.items.length === 1 ? '' : 's'}, newest first.`}</p>
    ${!loading && page.items.length > 0 && html`<${AuditTable} items=${page.items} showDatabase=${true} />`}
    <nav class="pager" aria-label="Audit pages">
      <button type="button" class="secondary" disabled=${pageNo === 1} onClick=${() => setCursors((c) => c.slice(0, -1))}>Newer</button>
      <span>Page ${pageNo}</span>
      <button type="button" class="secondary" disabled=${loading || !page.next_cursor} onClick=${() => setCursors((c) => [...c, page.next_cursor])}>Older</button>
    </nav>
  </section>`;
}
