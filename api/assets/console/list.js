// Every database, live from the watch stream: filtered by label or name,
// sorted, and paged in the browser, so only one page of rows is ever in
// the document however many databases there are.

import { useMemo, useState, useEffect } from 'preact/hooks';
import { can } from './api.js';
import { useDatabases } from './live.js';
import { age, html, Labels, Link, StateBadge, useTitle } from './ui.js';

// Trouble first, then work under way, then the quiet ones.
const STATE_ORDER = ['failed', 'degraded', 'failing_over', 'unknown', 'deleting', 'creating', 'scaling', 'updating', 'healthy'];

const SORTS = {
  name: (a, b) => a.name.localeCompare(b.name),
  state: (a, b) => STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state) || a.name.localeCompare(b.name),
  age: (a, b) => Date.parse(b.created_at) - Date.parse(a.created_at) || a.name.localeCompare(b.name),
};

/** `team=payments, tier` → [['team','payments'], ['tier', null]]. */
function parseLabelFilter(text) {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const at = s.indexOf('=');
      return at < 0 ? [s, null] : [s.slice(0, at).trim(), s.slice(at + 1).trim()];
    });
}

export function ListPage() {
  useTitle('Databases');
  const { databases, loaded, status } = useDatabases();
  const params = new URLSearchParams(location.search);
  const [labelFilter, setLabelFilter] = useState(params.get('label') || '');
  const [nameFilter, setNameFilter] = useState('');
  const [sort, setSort] = useState('name');
  const [pageSize, setPageSize] = useState(50);
  const [page, setPage] = useState(0);
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 30000);
    return () => clearInterval(t);
  }, []);

  const rows = useMemo(() => {
    const wanted = parseLabelFilter(labelFilter);
    const name = nameFilter.trim().toLowerCase();
    const out = [];
    for (const d of databases.values()) {
      if (name && !d.name.includes(name)) continue;
      if (!wanted.every(([k, v]) => (v === null ? k in d.labels : d.labels[k] === v))) continue;
      out.push(d);
    }
    return out.sort(SORTS[sort]);
  }, [databases, labelFilter, nameFilter, sort]);

  const pages = Math.max(1, Math.ceil(rows.length / pageSize));
  const current = Math.min(page, pages - 1);
  const shown = rows.slice(current * pageSize, (current + 1) * pageSize);
  const first = rows.length ? current * pageSize + 1 : 0;

  return html`<section class="list">
    <div class="page-head">
      <h1>Databases</h1>
      <span class=${`live live-${status}`} role="status">${{ live: 'Live', reconnecting: 'Reconnecting…', failed: 'Unavailable' }[status] || 'Connecting…'}</span>
      ${can('editor') && html`<${Link} href="/create" class="button">New database</${Link}>`}
    </div>
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <div class="field">
        <label for="filter-label">Labels</label>
        <input id="filter-label" placeholder="team=payments, tier" value=${labelFilter} autocomplete="off"
          onInput=${(e) => { setLabelFilter(e.target.value); setPage(0); }} />
      </div>
      <div class="field">
        <label for="filter-name">Name contains</label>
        <input id="filter-name" value=${nameFilter} autocomplete="off" onInput=${(e) => { setNameFilter(e.target.value); setPage(0); }} />
      </div>
      <div class="field">
        <label for="sort">Sort by</label>
        <select id="sort" value=${sort} onChange=${(e) => setSort(e.target.value)}>
          <option value="name">Name</option>
          <option value="state">State (trouble first)</option>
          <option value="age">Age (newest first)</option>
        </select>
      </div>
      <div class="field">
        <label for="page-size">Per page</label>
        <select id="page-size" value=${pageSize} onChange=${(e) => { setPageSize(Number(e.target.value)); setPage(0); }}>
          ${[25, 50, 100].map((n) => html`<option value=${n}>${n}</option>`)}
        </select>
      </div>
    </form>
    ${!loaded
      ? html`<p class="muted">Loading databases…</p>`
      : html`
    <table class="databases" aria-describedby="list-count">
      <caption id="list-count">${rows.length
        ? `Databases ${first}–${first + shown.length - 1} of ${rows.length}${rows.length !== databases.size ? ` (${databases.size} in all)` : ''}`
        : databases.size ? 'No database matches the filters.' : 'No databases yet.'}</caption>
      <thead><tr>
        <th scope="col">Name</th><th scope="col">State</th><th scope="col">Ready</th><th scope="col">Version</th>
        <th scope="col">Storage</th><th scope="col">Labels</th><th scope="col">Owner</th><th scope="col">Age</th>
      </tr></thead>
      <tbody>
        ${shown.map((d) => html`<tr key=${d.name} data-database=${d.name}>
          <th scope="row" data-label="Name"><${Link} href=${`/databases/${d.name}`}>${d.name}</${Link}></th>
          <td data-label="State"><${StateBadge} state=${d.state} /></td>
          <td data-label="Ready" class="num">${d.ready_instances}/${d.instances}</td>
          <td data-label="Version" class="num">${d.postgres_version}</td>
          <td data-label="Storage" class="num">${d.storage}</td>
          <td data-label="Labels"><${Labels} labels=${d.labels} /></td>
          <td data-label="Owner">${d.owner}</td>
          <td data-label="Age"><time datetime=${d.created_at} title=${d.created_at}>${age(d.created_at, now)}</time></td>
        </tr>`)}
      </tbody>
    </table>
    ${pages > 1 && html`<nav class="pager" aria-label="Pages">
      <button type="button" class="secondary" disabled=${current === 0} onClick=${() => setPage(current - 1)}>Previous page</button>
      <span>Page ${current + 1} of ${pages}</span>
      <button type="button" class="secondary" disabled=${current >= pages - 1} onClick=${() => setPage(current + 1)}>Next page</button>
    </nav>`}`}
  </section>`;
}
