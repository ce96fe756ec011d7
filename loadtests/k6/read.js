// Read-heavy: GET one database, and the list of the seeded databases.
//
// READ_MODE=latency (default), the open model the latency targets are about:
//   `get`  GET /databases/{name} at READ_RATE requests/s, then
//   `list` GET /databases?label=loadtest=seed (the 50 seeded databases, one
//          page) at READ_RATE requests/s; each measured alone.
//   Thresholds: p95 <= 5 ms and p99 <= 10 ms for each, under 0.1 % errors
//   and failed checks, and fewer than 1 % of the arrivals dropped (k6 could
//   not keep the rate, so the latencies would flatter the server).
// READ_MODE=throughput, the closed model that measures the most requests/s:
//   READ_VUS virtual users each GET /databases/{name} back to back. Run
//   against pgplane and against the bare axum server (loadtests/baseline),
//   whose ratio run.sh reports. Thresholds: only errors and failed checks.
//
// Environment: see lib.js, plus READ_DB (the database to GET, default
// seed-00), READ_SEEDED (how many seeded databases the list must show,
// default 50), READ_RATE (default 1000), READ_SECONDS, READ_VUS (default 20).

import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { API, QUICK, envNumber, login, authed } from './lib.js';

const MODE = __ENV.READ_MODE || 'latency';
const DB = __ENV.READ_DB || 'seed-00';
const SEEDED = envNumber('READ_SEEDED', 50);
const RATE = envNumber('READ_RATE', 1000);
const SECONDS = envNumber('READ_SECONDS', QUICK ? 15 : 60);
const VUS = envNumber('READ_VUS', 20);

const arrivals = (exec_, startTime) => ({
  executor: 'constant-arrival-rate',
  exec: exec_,
  rate: RATE,
  timeUnit: '1s',
  duration: `${SECONDS}s`,
  startTime,
  preAllocatedVUs: 40,
  maxVUs: 200,
});

const latency = {
  scenarios: {
    get: arrivals('getOne', '0s'),
    list: arrivals('listSeeded', `${SECONDS + 2}s`),
  },
  thresholds: {
    'http_req_duration{scenario:get}': ['p(95)<=5', 'p(99)<=10'],
    'http_req_duration{scenario:list}': ['p(95)<=5', 'p(99)<=10'],
    'http_req_failed{scenario:get}': ['rate<0.001'],
    'http_req_failed{scenario:list}': ['rate<0.001'],
    checks: ['rate>0.999'],
    // Both scenarios together should make 2 * RATE * SECONDS arrivals.
    dropped_iterations: [`count<${Math.ceil(0.01 * 2 * RATE * SECONDS)}`],
  },
};

const throughput = {
  // Bodies are not read: the checks look at the status only, for both servers alike.
  discardResponseBodies: true,
  scenarios: {
    closed: {
      executor: 'constant-vus',
      exec: 'getOne',
      vus: VUS,
      duration: `${SECONDS}s`,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    checks: ['rate>0.999'],
  },
};

export const options = {
  ...(MODE === 'throughput' ? throughput : latency),
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'max'],
};

export function setup() {
  return { token: login() };
}

export function getOne({ token }) {
  const res = http.get(`${API}/databases/${DB}`, authed(token, 'GET /databases/{name}'));
  if (MODE === 'throughput') {
    check(res, { 'get: 200': (r) => r.status === 200 });
    return;
  }
  // Parsing every answer would cost k6 more CPU than pgplane spends; one in 50 is read in full.
  const full = exec.scenario.iterationInTest % 50 === 0;
  check(res, {
    'get: 200': (r) => r.status === 200,
    'get: ETag': (r) => !!r.headers.Etag,
    'get: the database asked for': (r) => !full || r.json('name') === DB,
  });
}

export function listSeeded({ token }) {
  const res = http.get(
    `${API}/databases?limit=100&label=${encodeURIComponent('loadtest=seed')}`,
    authed(token, 'GET /databases'),
  );
  const full = exec.scenario.iterationInTest % 50 === 0;
  check(res, {
    'list: 200': (r) => r.status === 200,
    [`list: the ${SEEDED} seeded databases`]: (r) => !full || r.json('items.#') === SEEDED,
  });
}
