// What happened to one database: its state transitions as they are
// recorded (the follow stream, resumed with Last-Event-ID after a drop),
// its audit trail (editors and admins), and its revisions, any of which
// can be rolled back to after a confirmation that says what will change
// and what is kept.

import { useEffect, useRef, useState } from 'preact/hooks';
import { can, follow, request } from './api.js';
import { useDatabases } from './live.js';
import { html, Link, ProblemMessage, StateBadge, time, useTitle } from './ui.js';

export function HistoryPage({ name }) {
  useTitle(`${name}: history`);
  const { databases } = useDatabases();
  const db = databases.get(name);
  const [events, setEvents] = useState([]);
  const [status, setStatus] = useState('connecting');

  useEffect(() => {
    const abort = new AbortController();
    const seen = new Set();
    follow(`/databases/${encodeURIComponent(name)}/events?follow=true`, {
      resume: true,
      signal: abort.signal,
      onStatus: setStatus,
      onEvent: ({ event, data, id }) => {
        if (event !== 'service_event' || seen.has(id)) return;
        seen.add(id);
        setEvents((list) => [{ ...data, id }, ...list]);
      },
    });
    return () => abort.abort();
  }, [name]);

  // The audit trail and the revisions are read again when something
  // happens to the database (a new revision or transition), not polled.
  const changeKey = `${db?.revision}/${db?.state}/${events.length}`;
  return html`<section class="history">
    <div class="page-head">
      <h1>${name}: history</h1>
      ${db && html`<${StateBadge} state=${db.state} />`}
      <${Link} href=${`/databases/${name}`} class="button secondary">Back to ${name}</${Link}>
    </div>
    <div class="history-grid">
      <section aria-labelledby="timeline-title">
        <h2 id="timeline-title">State transitions <span class=${`live live-${status}`}>${status === 'live' ? 'Live' : status === 'failed' ? 'Unavailable' : 'Reconnecting…'}</span></h2>
        ${events.length === 0
          ? html`<p class="muted">None recorded yet.</p>`
          : html`<ol class="timeline" aria-live="polite">${events.map((e) => html`<li key=${e.id} data-to=${e.to}>
              ${time(e.ts)}: <${StateBadge} state=${e.from} /> → <${StateBadge} state=${e.to} />
              <span class="muted">${e.ready_instances}/${e.instances} ready · ${e.phase}</span>
            </li>`)}</ol>`}
      </section>
      <${Revisions} name=${name} db=${db} changeKey=${changeKey} />
      ${can('editor') && html`<${DatabaseAudit} name=${name} changeKey=${changeKey} />`}
    </div>
  </section>`;
}

export function AuditTable({ items, showDatabase = false }) {
  return html`<table class="audit">
    <thead><tr><th scope="col">When</th><th scope="col">Actor</th><th scope="col">Action</th>
      ${showDatabase && html`<th scope="col">Database</th>`}<th scope="col">Outcome</th><th scope="col">Changes</th></tr></thead>
    <tbody>${items.map((r) => html`<tr key=${r.id || r.request_id + r.ts} data-id=${r.id} data-action=${r.action}>
      <td data-label="When">${time(r.ts)}</td>
      <td data-label="Actor">${r.actor}${r.role ? html` <span class="muted">(${r.role})</span>` : ''}</td>
      <td data-label="Action"><code>${r.action}</code></td>
      ${showDatabase && html`<td data-label="Database">${r.database ? html`<${Link} href=${`/databases/${r.database}`}>${r.database}</${Link}>` : '—'}</td>`}
      <td data-label="Outcome"><span class=${`outcome outcome-${r.outcome}`}>${r.outcome}</span> <span class="muted">${r.status}</span></td>
      <td data-label="Changes">${r.changes ? html`<code>${JSON.stringify(r.changes)}</code>` : ''}</td>
    </tr>`)}</tbody>
  </table>`;
}

function DatabaseAudit({ name, changeKey }) {
  const [items, setItems] = useState([]);
  const [problem, setProblem] = useState(null);
  useEffect(() => {
    request('GET', `/databases/${encodeURIComponent(name)}/audit?limit=50`).then(
      (r) => { setItems(r.body.items); setProblem(null); },
      setProblem,
    );
  }, [name, changeKey]);
  return html`<section aria-labelledby="audit-title">
    <h2 id="audit-title">Audit trail</h2>
    <${ProblemMessage} problem=${problem} />
    ${items.length ? html`<${AuditTable} items=${items} />` : html`<p class="muted">No records.</p>`}
  </section>`;
}

/** Bytes of a Kubernetes quantity, for comparing storage sizes. */
function bytes(q) {
  const m = /^(\d+(?:\.\d+)?)([KMGTPE]i?|k)?$/.exec(q || '');
  if (!m) return NaN;
  const units = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
  return Number(m[1]) * units[m[2] || ''];
}

/** What a rollback of `current` to `target` changes, and what it keeps. */
export function rollbackPlan(current, target) {
  const show = (v) => (typeof v === 'object' ? JSON.stringify(v) : String(v));
  const changes = [];
  const kept = [`name ${current.name}`, `PostgreSQL ${current.postgres_version}`];
  for (const f of ['instances', 'parameters', 'labels']) {
    if (show(current[f]) !== show(target[f])) changes.push([f, show(current[f]), show(target[f])]);
    else kept.push(`${f} ${show(current[f])}`);
  }
  if (bytes(target.storage) > bytes(current.storage)) changes.push(['storage', current.storage, target.storage]);
  else if (bytes(target.storage) < bytes(current.storage)) kept.push(`storage ${current.storage} (revision's ${target.storage}: storage never shrinks)`);
  else kept.push(`storage ${current.storage}`);
  return { changes, kept };
}

function Revisions({ name, db, changeKey }) {
  const [items, setItems] = useState([]);
  const [problem, setProblem] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const [done, setDone] = useState(null);
  const dialog = useRef(null);
  useEffect(() => {
    request('GET', `/databases/${encodeURIComponent(name)}/revisions?limit=20`).then(
      (r) => { setItems(r.body.items); setProblem(null); },
      (p) => p.status !== 404 && setProblem(p),
    );
  }, [name, changeKey]);
  useEffect(() => {
    if (confirm && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [confirm]);
  const close = () => {
    dialog.current?.close();
    setConfirm(null);
  };
  const ask = (rev) => {
    setDone(null);
    setConfirm({ rev, plan: rollbackPlan(db, rev.spec), revision: db.revision });
  };
  const rollback = async () => {
    const { rev, revision } = confirm;
    try {
      const r = await request('POST', `/databases/${encodeURIComponent(name)}/rollback`, {
        body: { revision: rev.revision },
        headers: { 'If-Match': `"${revision}"` },
      });
      const kept = r.body.kept && Object.keys(r.body.kept).length ? ` Kept: ${JSON.stringify(r.body.kept)}.` : '';
      setDone(`Rolled back to revision ${rev.revision}, as revision ${r.body.revision}.${kept}`);
      close();
    } catch (p) {
      close();
      setProblem(p.status === 412 ? { ...p, message: 'The database changed before the rollback was sent; look at the revisions again and retry.', body: p.body, status: p.status } : p);
    }
  };
  return html`<section aria-labelledby="revisions-title">
    <h2 id="revisions-title">Revisions</h2>
    ${done && html`<p class="notice" role="status">${done}</p>`}
    <${ProblemMessage} problem=${problem} />
    <ol class="revisions">${items.map((r) => html`<li key=${r.revision} data-revision=${r.revision}>
      <div><strong>Revision ${r.revision}</strong> · ${r.kind}${r.from ? ` of revision ${r.from}` : ''} · by ${r.by} · ${time(r.at)}
        ${db && r.revision === db.revision ? html` <span class="badge current">current</span>` : ''}</div>
      ${Object.keys(r.changes).length
        ? html`<ul class="diff">${Object.entries(r.changes).map(([f, [x, y]]) => html`<li key=${f}><strong>${f}</strong>: <code>${JSON.stringify(x)}</code> → <code>${JSON.stringify(y)}</code></li>`)}</ul>`
        : html`<p class="muted">${r.kind === 'create' ? 'Created with' : 'No field changed;'} instances ${r.spec.instances}, storage ${r.spec.storage}.</p>`}
      ${can('editor') && db && db.source !== 'git' && r.revision !== db.revision && html`<button type="button" class="secondary" onClick=${() => ask(r)}>Roll back to revision ${r.revision}</button>`}
    </li>`)}</ol>
    <dialog ref=${dialog} aria-labelledby="rollback-title" onClose=${() => setConfirm(null)}>
      ${confirm && html`<form method="dialog" onSubmit=${(e) => { e.preventDefault(); rollback(); }}>
        <h3 id="rollback-title">Roll back ${name} to revision ${confirm.rev.revision}?</h3>
        <p>This makes a new revision with revision ${confirm.rev.revision}'s spec.</p>
        ${confirm.plan.changes.length
          ? html`<p>What will change:</p><ul class="diff">${confirm.plan.changes.map(([f, x, y]) => html`<li key=${f}><strong>${f}</strong>: <code>${x}</code> → <code>${y}</code></li>`)}</ul>`
          : html`<p>Nothing will change: the spec is already the same.</p>`}
        <p>What is kept:</p>
        <ul>${confirm.plan.kept.map((k) => html`<li key=${k}>${k}</li>`)}</ul>
        <div class="actions">
          <button type="submit">Roll back</button>
          <button type="button" class="secondary" onClick=${close}>Cancel</button>
        </div>
      </form>`}
    </dialog>
  </section>`;
}
