// The console's one way to the API: the session (token and who it is),
// JSON requests whose failures are the API's problem+json, and the
// Server-Sent Event streams read with fetch (EventSource cannot send the
// bearer token).
//
// The token lives in sessionStorage: it survives a reload of the tab (the
// console is a set of client-side routes) but not the tab itself, it is
// never sent anywhere but the API's Authorization header, and it is
// dropped when it expires. Unlike localStorage it is not shared with other
// tabs nor kept for days; any script on the page could read either, which
// is why the Content-Security-Policy allows no script but the console's own.

const KEY = 'pgplane.session';
const listeners = new Set();
let session = load();
let expiryTimer = null;

function load() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    return s && s.expiresAt > Date.now() ? s : null;
  } catch {
    return null;
  }
}

/** The current session ({token, expiresAt, username, role}) or null. */
export function currentSession() {
  return session;
}

/** Calls `fn(session, message)` on every change of session. */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function set(next, message) {
  session = next;
  clearTimeout(expiryTimer);
  if (next) {
    sessionStorage.setItem(KEY, JSON.stringify(next));
    // The session ends when the token does, with a message, not with the
    // next request failing.
    expiryTimer = setTimeout(
      () => endSession('Your session has expired. Log in again to continue.'),
      Math.max(0, next.expiresAt - Date.now()),
    );
  } else {
    sessionStorage.removeItem(KEY);
  }
  for (const fn of listeners) fn(session, message);
}

if (session) set(session);

/** Ends the session, saying why (or not, for a logout). */
export function endSession(message) {
  if (session) set(null, message);
}

const ROLES = ['viewer', 'editor', 'admin'];

/** Whether the session's role is at least `role`. */
export function can(role) {
  return !!session && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

/** A failed request: the problem+json body (or one made up for it). */
export class Problem extends Error {
  constructor(status, body, headers) {
    super(body?.detail || body?.title || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.headers = headers;
  }

  /** Per-field messages, by field name. */
  get fields() {
    const out = {};
    for (const e of this.body.errors || []) {
      const f = e.field || '';
      out[f] = out[f] ? `${out[f]}; ${e.message}` : e.message;
    }
    return out;
  }
}

/** Logs in; throws Problem (401, 429 with Retry-After) on refusal. */
export async function login(username, password) {
  const token = await request('POST', '/auth/login', { body: { username, password }, anonymous: true });
  const me = await request('GET', '/auth/me', { token: token.body.access_token });
  set({
    token: token.body.access_token,
    expiresAt: Date.now() + token.body.expires_in * 1000,
    username: me.body.username,
    role: me.body.role,
  });
}

/**
 * One API request under /api/v1. Resolves to {status, headers, body} for
 * a 2xx; throws Problem otherwise. A 401 on a request with a token ends
 * the session (the token expired or the server no longer knows it).
 */
export async function request(method, path, opts = {}) {
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  const token = opts.token || session?.token;
  if (!opts.anonymous && token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = opts.contentType || 'application/json';
    body = JSON.stringify(opts.body);
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, { method, headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new Problem(0, { title: 'No answer', detail: 'pgplane did not answer; check your network and try again.' });
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { detail: text };
  }
  if (!response.ok) {
    if (response.status === 401 && !opts.anonymous && session) {
      endSession('Your session has ended (the token expired or was refused). Log in again to continue.');
    }
    throw new Problem(response.status, parsed, response.headers);
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/**
 * Follows a Server-Sent Events stream under /api/v1 until `signal` aborts:
 * `onEvent({event, data, id})` for each event, with `data` parsed as JSON.
 * A dropped connection is opened again after a short, growing wait; with
 * `resume`, the last `id:` seen is sent as Last-Event-ID so no event is
 * missed, else the stream starts over (a fresh snapshot). `expired` ends
 * the session; `resync` and `end` reconnect. A refusal that will not
 * change (a 4xx other than 408 and 429) ends the stream with
 * `onStatus('failed', status)`.
 */
export function follow(path, { onEvent, onStatus, resume = false, signal }) {
  let lastId = null;
  let wait = 250;
  (async () => {
    while (!signal.aborted) {
      if (!session) return;
      const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${session.token}` };
      if (resume && lastId) headers['Last-Event-ID'] = lastId;
      let closing = null;
      try {
        const response = await fetch(`/api/v1${path}`, { headers, signal });
        if (response.status === 401) {
          endSession('Your session has ended (the token expired or was refused). Log in again to continue.');
          return;
        }
        if (!response.ok) {
          // A refusal that asking again will not change (403, 404, 422):
          // said once, not retried. Overload and server errors are retried.
          const retried = response.status >= 500 || [408, 429].includes(response.status);
          if (!retried) {
            onStatus?.('failed', response.status);
            return;
          }
          throw new Error(`HTTP ${response.status}`);
        }
        onStatus?.('live');
        wait = 250;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let m;
          while ((m = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
            const frame = parseFrame(buffer.slice(0, m.index));
            buffer = buffer.slice(m.index + m[0].length);
            if (!frame) continue;
            if (frame.id) lastId = frame.id;
            if (frame.event === 'expired') {
              endSession('Your session has expired. Log in again to continue.');
              return;
            }
            if (['resync', 'end'].includes(frame.event)) closing = frame.event;
            else onEvent(frame);
          }
          if (closing) break;
        }
      } catch (e) {
        if (signal.aborted) return;
      }
      if (signal.aborted) return;
      onStatus?.('reconnecting');
      if (closing === 'resync') lastId = null;
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 5000);
    }
  })();
}

function parseFrame(text) {
  let event = 'message';
  let id = null;
  const data = [];
  for (const line of text.split(/\r\n|\n|\r/)) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  }
  if (!data.length && event === 'message') return null;
  let parsed = data.join('\n');
  try {
    parsed = parsed ? JSON.parse(parsed) : null;
  } catch {
    // not JSON: kept as text
  }
  return { event, data: parsed, id };
}
