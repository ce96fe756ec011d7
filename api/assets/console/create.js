// Creating a database: a field for every part of the create body, the
// CloudNativePG manifest it becomes (rendered by the server, the same as
// `pgplane render`), and the server's message for each bad field beside it.

import { useEffect, useRef, useState } from 'preact/hooks';
import { request } from './api.js';
import { described, Field, html, KeyValueRows, navigate, ProblemMessage, rowsToObject, useTitle } from './ui.js';

function bodyOf(form) {
  const body = { name: form.name.trim() };
  if (form.version) body.postgres_version = Number(form.version);
  const instances = form.instances.trim();
  if (instances) body.instances = /^\d+$/.test(instances) ? Number(instances) : instances;
  if (form.storage.trim()) body.storage = form.storage.trim();
  const parameters = rowsToObject(form.parameters);
  if (Object.keys(parameters).length) body.parameters = parameters;
  const labels = rowsToObject(form.labels);
  if (Object.keys(labels).length) body.labels = labels;
  return body;
}

export function CreatePage() {
  useTitle('New database');
  const [versions, setVersions] = useState(null);
  const [form, setForm] = useState({ name: '', version: '', instances: '1', storage: '1Gi', parameters: [], labels: [] });
  const [touched, setTouched] = useState(new Set());
  const [submitted, setSubmitted] = useState(false);
  const [errors, setErrors] = useState({});
  const [preview, setPreview] = useState(null);
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const seq = useRef(0);

  useEffect(() => {
    request('GET', '/versions').then(
      (r) => {
        setVersions(r.body);
        setForm((f) => ({ ...f, version: String(r.body.default) }));
      },
      (p) => setProblem(p),
    );
  }, []);

  // The preview follows the form, a moment after the last keystroke; an
  // older answer never replaces a newer one.
  useEffect(() => {
    if (!versions) return undefined;
    const mine = ++seq.current;
    const t = setTimeout(async () => {
      try {
        const r = await request('POST', '/render', { body: bodyOf(form) });
        if (mine !== seq.current) return;
        setPreview({ yaml: r.body.yaml });
        setErrors({});
      } catch (p) {
        if (mine !== seq.current) return;
        if (p.status === 422) {
          setPreview({ invalid: true });
          setErrors(p.fields);
        } else setProblem(p);
      }
    }, 250);
    return () => clearTimeout(t);
  }, [form, versions]);

  const set = (key) => (value) => {
    setForm((f) => ({ ...f, [key]: value }));
    setTouched((t) => new Set(t).add(key));
  };
  const shownError = (field) => {
    const key = field.split('.')[0];
    return submitted || touched.has(key) ? errors[field] : undefined;
  };
  const rowErrors = (prefix) => {
    const out = {};
    for (const [f, m] of Object.entries(errors)) if (f === prefix || f.startsWith(`${prefix}.`)) out[f] = shownError(f);
    return out;
  };

  const submit = async (e) => {
    e.preventDefault();
    setSubmitted(true);
    setProblem(null);
    setBusy(true);
    try {
      const r = await request('POST', '/databases', { body: bodyOf(form) });
      navigate(`/databases/${r.body.name}`);
    } catch (p) {
      if (p.status === 422) {
        setErrors(p.fields);
        // The first bad field gets the focus, so its message is read out.
        setTimeout(() => document.querySelector('[aria-invalid="true"]')?.focus(), 0);
      } else if (p.status === 409) setErrors({ name: p.message });
      else setProblem(p);
    } finally {
      setBusy(false);
    }
  };

  const nameError = shownError('name');
  const versionError = shownError('postgres_version');
  const instancesError = shownError('instances');
  const storageError = shownError('storage');
  const bodyError = submitted ? errors[''] : undefined;
  return html`<section class="create">
    <h1>New database</h1>
    <div class="create-grid">
      <form onSubmit=${submit} novalidate>
        <${Field} id="name" label="Name" error=${nameError} hint="Lowercase letters, digits and dashes; 1 to 50 characters.">
          <input id="name" value=${form.name} autocomplete="off" spellcheck="false" required
            onInput=${(e) => set('name')(e.target.value)} ...${described('name', nameError, true)} />
        </${Field}>
        <${Field} id="version" label="PostgreSQL version" error=${versionError}>
          <select id="version" value=${form.version} onChange=${(e) => set('version')(e.target.value)} ...${described('version', versionError)}>
            ${(versions?.postgres_versions || []).map((v) => html`<option value=${v}>${v}${v === versions.default ? ' (default)' : ''}</option>`)}
          </select>
        </${Field}>
        <${Field} id="instances" label="Instances" error=${instancesError} hint="1 to 9: one primary, the rest streaming standbys.">
          <input id="instances" type="number" min="1" max="9" inputmode="numeric" value=${form.instances}
            onInput=${(e) => set('instances')(e.target.value)} ...${described('instances', instancesError, true)} />
        </${Field}>
        <${Field} id="storage" label="Storage" error=${storageError} hint="A Kubernetes quantity, at least 1Gi; it can grow later, never shrink.">
          <input id="storage" value=${form.storage} autocomplete="off" spellcheck="false"
            onInput=${(e) => set('storage')(e.target.value)} ...${described('storage', storageError, true)} />
        </${Field}>
        <${KeyValueRows} id="parameters" legend="Parameters" prefix="parameters" rows=${form.parameters}
          onChange=${set('parameters')} errors=${rowErrors('parameters')} />
        <${KeyValueRows} id="labels" legend="Labels" prefix="labels" keyLabel="Key" rows=${form.labels}
          onChange=${set('labels')} errors=${rowErrors('labels')} />
        ${bodyError && html`<p class="problem" role="alert">${bodyError}</p>`}
        <${ProblemMessage} problem=${problem} />
        <div class="actions">
          <button type="submit" disabled=${busy || !versions}>${busy ? 'Creating…' : 'Create database'}</button>
        </div>
      </form>
      <section class="preview" aria-labelledby="preview-title">
        <h2 id="preview-title">CloudNativePG manifest</h2>
        <p class="muted">What the kubernetes backend applies for this form (as <code>pgplane render</code> prints it).</p>
        ${preview?.yaml
          ? html`<pre tabindex="0" aria-label="Manifest preview" data-testid="manifest"><code>${preview.yaml}</code></pre>`
          : html`<p class="muted" role="status">${preview?.invalid ? 'The preview shows once the form is valid.' : 'Rendering…'}</p>`}
      </section>
    </div>
  </section>`;
}
