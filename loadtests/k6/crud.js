// CRUD lifecycle: CRUD_VUS virtual users (default 10) for CRUD_SECONDS
// (default 120; 30 with LOADTEST_QUICK=1), each iteration the whole life of
// one database (see lifecycle.js). Every iteration owns one database at a
// time, so the run needs at most CRUD_VUS instances besides what already
// exists (PGPLANE_MAX_INSTANCES). Teardown checks that no database with the
// label loadtest=crud is left, deleting and counting any an interrupted
// iteration left behind.
//
// Thresholds: no failed check (each step is one), no unexpected HTTP status,
// the API calls themselves fast (create/patch/delete p95 <= 250 ms), each
// wait within CRUD_WAIT_SECONDS (a stuck reconciler fails the run rather
// than hanging it), and no database left behind by an iteration.

import { QUICK, envNumber, login } from './lib.js';
import { lifecycle, cleanup, lifecycleScenario, lifecycleTimeouts } from './lifecycle.js';

const VUS = envNumber('CRUD_VUS', 10);
const SECONDS = envNumber('CRUD_SECONDS', QUICK ? 30 : 120);
const WAIT_SECONDS = envNumber('CRUD_WAIT_SECONDS', 120);

export const options = {
  scenarios: {
    lifecycle: lifecycleScenario(VUS, SECONDS, WAIT_SECONDS),
  },
  ...lifecycleTimeouts(WAIT_SECONDS),
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    'http_req_duration{name:POST /databases}': ['p(95)<=250'],
    'http_req_duration{name:PATCH /databases/{name}}': ['p(95)<=250'],
    'http_req_duration{name:DELETE /databases/{name}}': ['p(95)<=250'],
    crud_create_to_healthy: [`max<${WAIT_SECONDS * 1000}`],
    crud_patch_to_healthy: [`max<${WAIT_SECONDS * 1000}`],
    crud_delete_to_gone: [`max<${WAIT_SECONDS * 1000}`],
    crud_lifecycles_completed: ['count>0'],
    crud_databases_left_by_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return { token: login() };
}

export default function ({ token }) {
  lifecycle(token, WAIT_SECONDS);
}

export function teardown({ token }) {
  cleanup(token, WAIT_SECONDS);
}
