// One database, live from the watch stream: its state, instances and
// endpoints; its connection details (fetched only when asked for, since
// each read of them is audited); an inline edit sent with If-Match, whose
// conflict shows what changed meanwhile; and a delete that asks for the
// name.

import { useEffect, useState } from 'preact/hooks';
import { can, request } from './api.js';
import { useDatabases } from './live.js';
import {
  CopyButton, described, Field, html, KeyValueRows, Labels, Link, navigate, objectToRows, ProblemMessage,
  rowsToObject, StateBadge, time, useTitle,
} from './ui.js';

const EDITABLE = ['instances', 'storage', 'parameters', 'labels'];

/** The JSON merge patch that turns `base` into the form's values. */
export function patchOf(base, form) {
  const patch = {};
  const instances = /^\d+$/.test(form.instances.trim()) ? Number(form.instances) : form.instances.trim();
  if (instances !== base.instances) patch.instances = instances;
  if (form.storage.trim() !== base.storage) patch.storage = form.storage.trim();
  for (const key of ['parameters', 'labels']) {
    const want = rowsToObject(form[key]);
    const diff = {};
    for (const k of Object.keys(base[key])) if (!(k in want)) diff[k] = null;
    for (const [k, v] of Object.entries(want)) if (base[key][k] !== v) diff[k] = v;
    if (Object.keys(diff).length) patch[key] = diff;
  }
  return patch;
}

function formOf(db) {
  return {
    instances: String(db.instances),
    storage: db.storage,
    parameters: objectToRows(db.parameters),
    labels: objectToRows(db.labels),
  };
}

/** What differs between two specs, field by field, as [before, after] text. */
export function specDiff(a, b) {
  const out = [];
  for (const f of EDITABLE) {
    const x = typeof a[f] === 'object' ? JSON.stringify(a[f]) : String(a[f]);
    const y = typeof b[f] === 'object' ? JSON.stringify(b[f]) : String(b[f]);
    if (x !== y) out.push([f, x, y]);
  }
  return out;
}

function Diff({ rows }) {
  return html`<ul class="diff">${rows.map(([f, x, y]) => html`<li key=${f}><strong>${f}</strong>: <code>${x}</code> → <code>${y}</code></li>`)}</ul>`;
}

export function DatabasePage({ name }) {
  useTitle(name);
  const { databases, loaded, status } = useDatabases();
  const db = databases.get(name);
  if (!loaded) return html`<section><h1>${name}</h1><p class="muted">Loading…</p></section>`;
  if (!db) {
    return html`<section><h1>${name}</h1>
      <p role="status">There is no database named ${name} (it may have just been deleted).</p>
      <p><${Link} href="/">Back to the databases</${Link}> · <${Link} href=${`/databases/${name}/history`}>Its history</${Link}></p>
    </section>`;
  }
  return html`<section class="database">
    <div class="page-head">
      <h1>${db.name}</h1>
      <${StateBadge} state=${db.state} />
      <span class=${`live live-${status}`}>${status === 'live' ? 'Live' : 'Reconnecting…'}</span>
      <${Link} href=${`/databases/${db.name}/history`} class="button secondary">History</${Link}>
    </div>
    <p class="phase">Phase: <span data-testid="phase">${db.phase}</span></p>
    ${db.undone && html`<p class="notice" role="status">Revision ${db.undone.revision} could not be applied and was undone: ${db.undone.reason}</p>`}
    ${db.source === 'git' && html`<p class="notice" data-testid="declared-in-git">Managed in git: its spec is <code>${db.declared_in}</code>. Change it there; Argo CD applies it.</p>`}
    <dl class="facts">
      <div><dt>Ready</dt><dd data-testid="ready">${db.ready_instances}/${db.instances}</dd></div>
      <div><dt>PostgreSQL</dt><dd>${db.postgres_version}</dd></div>
      <div><dt>Storage</dt><dd>${db.storage}</dd></div>
      <div><dt>Owner</dt><dd>${db.owner}</dd></div>
      <div><dt>Source</dt><dd data-testid="source">${db.source}</dd></div>
      <div><dt>Revision</dt><dd data-testid="revision">${db.revision}</dd></div>
      <div><dt>Created</dt><dd>${time(db.created_at)}</dd></div>
      <div><dt>Primary</dt><dd>${db.primary || '—'}</dd></div>
      <div><dt>Labels</dt><dd><${Labels} labels=${db.labels} /></dd></div>
      <div><dt>Parameters</dt><dd><${Labels} labels=${db.parameters} /></dd></div>
    </dl>
    <${Instances} db=${db} />
    <section aria-labelledby="endpoints-title">
      <h2 id="endpoints-title">Endpoints</h2>
      ${db.endpoints
        ? html`<dl class="facts">
            <div><dt>Read-write</dt><dd><code>${db.endpoints.read_write}</code></dd></div>
            <div><dt>Read-only</dt><dd><code>${db.endpoints.read_only}</code></dd></div>
          </dl>`
        : html`<p class="muted">Not yet known.</p>`}
    </section>
    ${can('editor') && html`<${Connection} name=${db.name} />`}
    ${can('editor') && db.source !== 'git' && html`<${Edit} key=${db.name} db=${db} />`}
    ${can('editor') && db.source !== 'git' && html`<${Delete} name=${db.name} />`}
  </section>`;
}

function Instances({ db }) {
  const list = db.instances_status || [];
  return html`<section aria-labelledby="instances-title">
    <h2 id="instances-title">Instances</h2>
    ${list.length === 0
      ? html`<p class="muted">None seen yet.</p>`
      : html`<table class="instances">
      <thead><tr><th scope="col">Instance</th><th scope="col">Role</th><th scope="col">State</th><th scope="col">Ready</th>
        <th scope="col">Lag</th><th scope="col">Timeline</th><th scope="col">Restarts</th></tr></thead>
      <tbody>${list.map((i) => html`<tr key=${i.name} data-instance=${i.name}>
        <th scope="row" data-label="Instance">${i.name}</th>
        <td data-label="Role">${i.role}</td>
        <td data-label="State">${i.state}</td>
        <td data-label="Ready">${i.ready ? 'yes' : 'no'}</td>
        <td data-label="Lag">${i.role === 'primary' ? '—' : i.lag_bytes == null ? 'unknown' : `${i.lag_bytes} B${i.lag_seconds == null ? '' : `, ${i.lag_seconds.toFixed(1)} s`}`}</td>
        <td data-label="Timeline">${i.timeline ?? '—'}</td>
        <td data-label="Restarts">${i.restarts ?? '—'}</td>
      </tr>`)}</tbody>
    </table>`}
  </section>`;
}

function Connection({ name }) {
  const [creds, setCreds] = useState(null);
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const reveal = async () => {
    setBusy(true);
    setProblem(null);
    try {
      setCreds((await request('GET', `/databases/${name}/credentials`)).body);
    } catch (p) {
      setProblem(p);
    } finally {
      setBusy(false);
    }
  };
  const psql = creds && `psql '${creds.uri.replace(/'/g, "'\\''")}'`;
  return html`<section aria-labelledby="connection-title">
    <h2 id="connection-title">Connection</h2>
    ${!creds
      ? html`<p class="muted">The password and the connection strings are fetched only when you ask (each read is recorded in the audit trail).</p>
          <button type="button" onClick=${reveal} disabled=${busy}>${busy ? 'Fetching…' : 'Show connection details'}</button>`
      : html`<dl class="facts connection">
          <div><dt>User</dt><dd><code>${creds.username}</code></dd></div>
          <div><dt>Password</dt><dd><code data-testid="password">${creds.password}</code></dd></div>
          <div><dt>Host and port</dt><dd><code>${creds.host}:${creds.port}</code></dd></div>
          <div><dt>Database</dt><dd><code>${creds.dbname}</code></dd></div>
          <div><dt>URI</dt><dd><code data-testid="uri">${creds.uri}</code> <${CopyButton} value=${creds.uri} label="URI" /></dd></div>
          <div><dt>JDBC</dt><dd><code>${creds.jdbc_uri}</code> <${CopyButton} value=${creds.jdbc_uri} label="JDBC URI" /></dd></div>
          <div><dt>psql</dt><dd><code>${psql}</code> <${CopyButton} value=${psql} label="psql command" /></dd></div>
        </dl>
        <button type="button" class="secondary" onClick=${() => setCreds(null)}>Hide connection details</button>`}
    <${ProblemMessage} problem=${problem} />
  </section>`;
}

function Edit({ db }) {
  const [editing, setEditing] = useState(false);
  const [base, setBase] = useState(db);
  const [form, setForm] = useState(formOf(db));
  const [errors, setErrors] = useState({});
  const [problem, setProblem] = useState(null);
  const [conflict, setConflict] = useState(null);
  const [done, setDone] = useState(null);
  const [busy, setBusy] = useState(false);

  // While not editing, the form follows the database as it changes.
  useEffect(() => {
    if (!editing) {
      setBase(db);
      setForm(formOf(db));
    }
  }, [db, editing]);

  const send = async (patch, revision) => {
    setBusy(true);
    setProblem(null);
    setErrors({});
    try {
      const r = await request('PATCH', `/databases/${db.name}`, {
        body: patch,
        contentType: 'application/merge-patch+json',
        headers: { 'If-Match': `"${revision}"` },
      });
      setConflict(null);
      setEditing(false);
      setDone(`Saved as revision ${r.body.revision}.`);
    } catch (p) {
      if (p.status === 412) {
        const current = (await request('GET', `/databases/${db.name}`)).body;
        let by = [];
        try {
          const revs = (await request('GET', `/databases/${db.name}/revisions?limit=20`)).body.items;
          by = revs.filter((r) => r.revision > revision).map((r) => `${r.by} (revision ${r.revision}, ${r.kind})`);
        } catch {
          // who made the change is a nicety; the diff is what matters
        }
        setConflict({ current, patch, by, from: revision, diff: specDiff(base, current) });
      } else if (p.status === 422) setErrors(p.fields);
      else setProblem(p);
    } finally {
      setBusy(false);
    }
  };

  const save = (e) => {
    e.preventDefault();
    setDone(null);
    const patch = patchOf(base, form);
    if (!Object.keys(patch).length) {
      setDone('Nothing to save: the form is what the database already has.');
      return;
    }
    send(patch, base.revision);
  };
  const applyOnTop = () => {
    setBase(conflict.current);
    send(conflict.patch, conflict.current.revision);
  };
  const drop = () => {
    setBase(conflict.current);
    setForm(formOf(conflict.current));
    setConflict(null);
    setEditing(false);
    setDone('Your edit was dropped; the form shows the database as it is now.');
  };
  const field = (key) => (value) => {
    setForm((f) => ({ ...f, [key]: value }));
    setEditing(true);
  };
  const rowErrors = (prefix) => Object.fromEntries(Object.entries(errors).filter(([f]) => f.startsWith(prefix)));

  return html`<section aria-labelledby="edit-title" class="edit">
    <h2 id="edit-title">Change</h2>
    <form onSubmit=${save} novalidate>
      <div class="row">
        <${Field} id="edit-instances" label="Instances" error=${errors.instances}>
          <input id="edit-instances" type="number" min="1" max="9" value=${form.instances}
            onInput=${(e) => field('instances')(e.target.value)} ...${described('edit-instances', errors.instances)} />
        </${Field}>
        <${Field} id="edit-storage" label="Storage" error=${errors.storage} hint="Grows only.">
          <input id="edit-storage" value=${form.storage} onInput=${(e) => field('storage')(e.target.value)}
            ...${described('edit-storage', errors.storage, true)} />
        </${Field}>
      </div>
      <${KeyValueRows} id="edit-parameters" legend="Parameters" prefix="parameters" rows=${form.parameters}
        onChange=${field('parameters')} errors=${rowErrors('parameters')} />
      <${KeyValueRows} id="edit-labels" legend="Labels" prefix="labels" keyLabel="Key" rows=${form.labels}
        onChange=${field('labels')} errors=${rowErrors('labels')} />
      ${conflict && html`<div class="conflict" role="alert">
        <h3>This database changed while you were editing</h3>
        <p>You edited revision ${conflict.from}; it is now at revision ${conflict.current.revision}${conflict.by.length ? `, changed by ${conflict.by.join(', ')}` : ''}.</p>
        ${conflict.diff.length ? html`<p>What changed meanwhile:</p><${Diff} rows=${conflict.diff} />` : html`<p>Nothing you can edit changed.</p>`}
        <p>Your edit: <code data-testid="my-patch">${JSON.stringify(conflict.patch)}</code></p>
        <div class="actions">
          <button type="button" onClick=${applyOnTop} disabled=${busy}>Apply my edit on top</button>
          <button type="button" class="secondary" onClick=${drop} disabled=${busy}>Drop my edit</button>
        </div>
      </div>`}
      <${ProblemMessage} problem=${problem} />
      ${done && html`<p class="notice" role="status">${done}</p>`}
      <div class="actions">
        <button type="submit" disabled=${busy || !!conflict}>${busy ? 'Saving…' : 'Save changes'}</button>
        ${editing && !conflict && html`<button type="button" class="secondary" onClick=${() => { setEditing(false); setForm(formOf(db)); setErrors({}); }}>Cancel</button>`}
      </div>
    </form>
  </section>`;
}

function Delete({ name }) {
  const [typed, setTyped] = useState('');
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const remove = async (e) => {
    e.preventDefault();
    if (typed !== name) return;
    setBusy(true);
    try {
      await request('DELETE', `/databases/${name}`);
      navigate('/');
    } catch (p) {
      setProblem(p);
      setBusy(false);
    }
  };
  return html`<section aria-labelledby="delete-title" class="danger">
    <h2 id="delete-title">Delete</h2>
    <p>Deleting removes every instance and its data. This cannot be undone.</p>
    <form onSubmit=${remove}>
      <${Field} id="delete-confirm" label=${`Type ${name} to confirm`}>
        <input id="delete-confirm" value=${typed} autocomplete="off" spellcheck="false" onInput=${(e) => setTyped(e.target.value)} />
      </${Field}>
      <button type="submit" class="danger" disabled=${typed !== name || busy}>Delete ${name}</button>
    </form>
    <${ProblemMessage} problem=${problem} />
  </section>`;
}
