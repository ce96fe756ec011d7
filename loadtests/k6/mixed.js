// Mixed: what a busy day looks like, all at once for MIXED_SECONDS (default
// 60; 30 with LOADTEST_QUICK=1):
//   reads       GET /databases/{name} at 200/s and the seeded list at 50/s
//   events      GET /databases/{name}/events at 20/s
//   credentials GET /databases/{name}/credentials at 5/s (audited: each one
//               is a record flushed to disk before the answer)
//   writers     MIXED_WRITERS virtual users (default 2) running the CRUD
//               lifecycle (lifecycle.js) back to back
//   logins      one good login every 10 s (under the per-user limit)
//
// Thresholds: no failed check and no unexpected status; reads p99 <= 25 ms
// and credentials p99 <= 100 ms while databases are being created, patched
// and deleted beside them; no database of the run left behind.

import http from 'k6/http';
import { check } from 'k6';
import { API, QUICK, envNumber, login, authed } from './lib.js';
import { lifecycle, cleanup, lifecycleScenario, lifecycleTimeouts } from './lifecycle.js';

const SECONDS = envNumber('MIXED_SECONDS', QUICK ? 30 : 60);
const WRITERS = envNumber('MIXED_WRITERS', 2);
const SEEDED = envNumber('READ_SEEDED', 50);
const WAIT_SECONDS = 120;

function arrivals(exec, rate, timeUnit = '1s') {
  return {
    executor: 'constant-arrival-rate',
    exec,
    rate,
    timeUnit,
    duration: `${SECONDS}s`,
    preAllocatedVUs: 10,
    maxVUs: 100,
  };
}

export const options = {
  scenarios: {
    get: arrivals('getOne', 200),
    list: arrivals('listSeeded', 50),
    events: arrivals('events', 20),
    credentials: arrivals('credentials', 5),
    logins: arrivals('goodLogin', 1, '10s'),
    writers: lifecycleScenario(WRITERS, SECONDS, WAIT_SECONDS, 'write'),
  },
  ...lifecycleTimeouts(WAIT_SECONDS),
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    'http_req_duration{name:GET /databases/{name}}': ['p(95)<=10', 'p(99)<=25'],
    'http_req_duration{name:GET /databases}': ['p(95)<=10', 'p(99)<=25'],
    'http_req_duration{name:GET /databases/{name}/events}': ['p(95)<=10', 'p(99)<=25'],
    'http_req_duration{name:GET /databases/{name}/credentials}': ['p(99)<=100'],
    'http_req_duration{name:POST /auth/login}': ['p(99)<=1000'],
    crud_lifecycles_completed: ['count>0'],
    crud_databases_left_by_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

/** One of the seeded databases, spread over all of them. */
function seeded() {
  return `seed-${String(Math.floor(Math.random() * SEEDED)).padStart(2, '0')}`;
}

export function setup() {
  return { token: login() };
}

export function getOne({ token }) {
  const res = http.get(`${API}/databases/${seeded()}`, authed(token, 'GET /databases/{name}'));
  check(res, { 'get: 200': (r) => r.status === 200 });
}

export function listSeeded({ token }) {
  const res = http.get(
    `${API}/databases?limit=100&label=${encodeURIComponent('loadtest=seed')}`,
    authed(token, 'GET /databases'),
  );
  check(res, { 'list: 200': (r) => r.status === 200 });
}

export function events({ token }) {
  const res = http.get(
    `${API}/databases/${seeded()}/events?limit=20`,
    authed(token, 'GET /databases/{name}/events'),
  );
  check(res, { 'events: 200 with the creation': (r) => r.status === 200 && r.json('items.#') > 0 });
}

export function credentials({ token }) {
  const res = http.get(
    `${API}/databases/${seeded()}/credentials`,
    authed(token, 'GET /databases/{name}/credentials'),
  );
  check(res, { 'credentials: 200 with a URI': (r) => r.status === 200 && !!r.json('uri') });
}

export function goodLogin() {
  const res = http.post(
    `${API}/auth/login`,
    JSON.stringify({ username: __ENV.PGPLANE_USERNAME || 'admin', password: __ENV.PGPLANE_PASSWORD }),
    { headers: { 'content-type': 'application/json' }, tags: { name: 'POST /auth/login' } },
  );
  check(res, { 'login: 200 with a token': (r) => r.status === 200 && !!r.json('access_token') });
}

export function write({ token }) {
  lifecycle(token, WAIT_SECONDS);
}

export function teardown({ token }) {
  cleanup(token, WAIT_SECONDS);
}
