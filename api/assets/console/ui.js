// What every page uses: the template tag, client-side navigation, and the
// small pieces that look the same everywhere (state badge, field with its
// server error, key/value rows, copy button, problem message).

import { h } from 'preact';
import { useState, useEffect, useRef } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

const routeListeners = new Set();

/** Goes to a client-side route without reloading the page. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  for (const fn of routeListeners) fn();
}

window.addEventListener('popstate', () => {
  for (const fn of routeListeners) fn();
});

/** The current path, re-rendering on navigation. */
export function usePath() {
  const [path, setPath] = useState(location.pathname + location.search);
  useEffect(() => {
    const fn = () => setPath(location.pathname + location.search);
    routeListeners.add(fn);
    return () => routeListeners.delete(fn);
  }, []);
  return path;
}

/** A link that navigates in place (and still opens in a new tab). */
export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return html`<a href=${href} onClick=${onClick} ...${rest}>${children}</a>`;
}

/** The coloured badge of a database state; the word is always shown too. */
export function StateBadge({ state }) {
  return html`<span class=${`badge state-${state}`} data-state=${state}>${state.replace('_', ' ')}</span>`;
}

/** "3m", "2h", "5d": how long ago `iso` was. */
export function age(iso, now = Date.now()) {
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function time(iso) {
  const d = new Date(iso);
  return html`<time datetime=${iso} title=${iso}>${d.toLocaleString()}</time>`;
}

/** A labelled input and, beside it, the server's message for its field. */
export function Field({ id, label, error, hint, children }) {
  return html`<div class=${`field${error ? ' invalid' : ''}`}>
    <label for=${id}>${label}</label>
    ${children}
    ${hint && html`<small id=${`${id}-hint`} class="hint">${hint}</small>`}
    ${error && html`<small id=${`${id}-error`} class="error" role="alert">${error}</small>`}
  </div>`;
}

/** The aria attributes tying an input to its hint and error. */
export function described(id, error, hint) {
  const ids = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(' ');
  return { 'aria-invalid': error ? 'true' : undefined, 'aria-describedby': ids || undefined };
}

/**
 * Editable key/value rows (parameters, labels): `rows` is a list of
 * [key, value]; `errors` maps `prefix.key` (as the server names fields)
 * to a message.
 */
export function KeyValueRows({ id, legend, rows, onChange, errors = {}, prefix, keyLabel = 'Name', valueLabel = 'Value' }) {
  const update = (i, which, v) => {
    const next = rows.map((r) => [...r]);
    next[i][which] = v;
    onChange(next);
  };
  const groupError = errors[prefix];
  return html`<fieldset class="kv" id=${id}>
    <legend>${legend}</legend>
    ${rows.length === 0 && html`<p class="muted">None.</p>`}
    ${rows.map(([k, v], i) => {
      const err = errors[`${prefix}.${k}`];
      return html`<div class="kv-row" key=${i}>
        <input id=${`${id}-key-${i}`} aria-label=${`${legend}: ${keyLabel.toLowerCase()} ${i + 1}`} value=${k}
          onInput=${(e) => update(i, 0, e.target.value)} autocomplete="off" spellcheck="false"
          ...${described(`${id}-${i}`, err)} />
        <span aria-hidden="true">=</span>
        <input id=${`${id}-value-${i}`} aria-label=${`${legend}: ${valueLabel.toLowerCase()} ${i + 1}`} value=${v}
          onInput=${(e) => update(i, 1, e.target.value)} autocomplete="off" spellcheck="false" />
        <button type="button" class="secondary" aria-label=${`Remove ${legend.toLowerCase()} row ${i + 1}`}
          onClick=${() => onChange(rows.filter((_, j) => j !== i))}>Remove</button>
        ${err && html`<small id=${`${id}-${i}-error`} class="error kv-error" role="alert">${err}</small>`}
      </div>`;
    })}
    <button type="button" class="secondary" onClick=${() => onChange([...rows, ['', '']])}>Add ${legend.toLowerCase().replace(/s$/, '')}</button>
    ${groupError && html`<small class="error" role="alert">${groupError}</small>`}
  </fieldset>`;
}

/** Rows as an object, leaving out rows with no key. */
export function rowsToObject(rows) {
  const out = {};
  for (const [k, v] of rows) if (k.trim()) out[k.trim()] = v;
  return out;
}

export function objectToRows(obj) {
  return Object.entries(obj || {});
}

/**
 * Puts `value` on the clipboard. The Clipboard API needs a secure context
 * (https, or localhost); over plain http from another host the older
 * copy command is used instead.
 */
async function toClipboard(value) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(value);
    return;
  }
  const area = document.createElement('textarea');
  area.value = value;
  area.setAttribute('readonly', '');
  area.className = 'offscreen';
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error('copy refused');
}

/** Copies `value` to the clipboard and says so (or that it could not). */
export function CopyButton({ value, label }) {
  const [said, setSaid] = useState('Copy');
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  const copy = async () => {
    let outcome = 'Copied';
    try {
      await toClipboard(value);
    } catch {
      outcome = 'Copy failed: select the text instead';
    }
    setSaid(outcome);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setSaid('Copy'), 2000);
  };
  return html`<button type="button" class="secondary copy" onClick=${copy} aria-label=${`Copy ${label}`}>${said}</button>`;
}

/** A failure, told plainly. */
export function ProblemMessage({ problem }) {
  if (!problem) return null;
  return html`<div class="problem" role="alert">
    <strong>${problem.body?.title || 'Error'}</strong>${problem.status ? ` (${problem.status})` : ''}: ${problem.message}
  </div>`;
}

/** Labels as chips. */
export function Labels({ labels }) {
  const entries = Object.entries(labels || {});
  if (!entries.length) return html`<span class="muted">none</span>`;
  return html`<ul class="labels">${entries.map(([k, v]) => html`<li key=${k}>${k}=${v}</li>`)}</ul>`;
}

/** Sets the document title (what a screen reader announces first). */
export function useTitle(title) {
  useEffect(() => {
    document.title = `${title} · pgplane`;
  }, [title]);
}
