// What every scenario shares: where pgplane is, logging in, and polling a
// database until it reaches a state, always with a deadline.
//
// Environment (k6 passes the process environment through `__ENV`):
//   PGPLANE_URL       base URL of pgplane (default http://127.0.0.1:8080)
//   PGPLANE_USERNAME  user to log in as (default admin)
//   PGPLANE_PASSWORD  its password (required; never printed)
//   LOADTEST_QUICK    "1" for the short variant of each scenario

import http from 'k6/http';
import { check, fail, sleep } from 'k6';

export const BASE = (__ENV.PGPLANE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const API = `${BASE}/api/v1`;
export const QUICK = __ENV.LOADTEST_QUICK === '1';

/** A number from the environment, or `fallback`. */
export function envNumber(name, fallback) {
  const v = __ENV[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) fail(`${name} must be a number, got ${v}`);
  return n;
}

/**
 * Logs in and returns the bearer token. A 429 (the login rate limit, e.g.
 * right after the login storm) is waited out as its Retry-After says, up
 * to a deadline. Meant for `setup()`: one login per run, shared by all VUs.
 */
export function login(deadlineSeconds = 60) {
  const username = __ENV.PGPLANE_USERNAME || 'admin';
  const password = __ENV.PGPLANE_PASSWORD;
  if (!password) fail('PGPLANE_PASSWORD is not set');
  const body = JSON.stringify({ username, password });
  const until = Date.now() + deadlineSeconds * 1000;
  for (;;) {
    const res = http.post(`${API}/auth/login`, body, {
      headers: { 'content-type': 'application/json' },
      tags: { name: 'setup_login' },
      // Read even when the scenario discards bodies (the throughput mode).
      responseType: 'text',
      // A 429 here is expected and waited out; it is not an error of the run.
      responseCallback: http.expectedStatuses(200, 429),
    });
    if (res.status === 200) return res.json('access_token');
    if (res.status !== 429 || Date.now() > until) {
      fail(`login as ${username} answered ${res.status}`);
    }
    const wait = Number(res.headers['Retry-After'] || '1');
    sleep(Math.min(Math.max(wait, 0.2), 10));
  }
}

/** Request parameters carrying the token and a `name` tag for the route. */
export function authed(token, route, extra = {}) {
  return {
    ...extra,
    headers: { Authorization: `Bearer ${token}`, ...(extra.headers || {}) },
    tags: { name: route, ...(extra.tags || {}) },
  };
}

/**
 * Polls GET /databases/{name} every `intervalSeconds` until `done(res)` holds
 * or `deadlineSeconds` pass. Returns the last response and whether it held.
 */
export function waitFor(token, name, done, deadlineSeconds, intervalSeconds = 0.2) {
  const until = Date.now() + deadlineSeconds * 1000;
  for (;;) {
    const res = http.get(
      `${API}/databases/${name}`,
      authed(token, 'GET /databases/{name} (poll)', {
        responseCallback: http.expectedStatuses(200, 404),
      }),
    );
    if (done(res)) return { res, ok: true };
    if (Date.now() > until) return { res, ok: false };
    sleep(intervalSeconds);
  }
}

/** The state in a GET answer, or the status when there is no body. */
export function stateOf(res) {
  if (res.status !== 200) return `HTTP ${res.status}`;
  try {
    return res.json('state');
  } catch (_) {
    return 'unparsable';
  }
}

/** Names of the databases carrying `label` (k=v), all pages. */
export function namesWithLabel(token, label) {
  const names = [];
  let cursor = '';
  for (let page = 0; page < 100; page++) {
    const q = `limit=500&label=${encodeURIComponent(label)}` +
      (cursor ? `&cursor=${encodeURIComponent(cursor)}` : '');
    const res = http.get(`${API}/databases?${q}`, authed(token, 'GET /databases (teardown)'));
    if (!check(res, { 'list for cleanup answers 200': (r) => r.status === 200 })) return null;
    const body = res.json();
    for (const d of body.items) names.push(d.name);
    if (!body.next_cursor) return names;
    cursor = body.next_cursor;
  }
  return names;
}
