// One database's whole life, shared by the CRUD and mixed scenarios:
// create (1 instance, 1Gi, label loadtest=crud) -> wait until healthy ->
// PATCH a parameter with If-Match -> wait until healthy again (applied) ->
// DELETE -> wait until GET answers 404. Each step is one check.

import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { API, authed, waitFor, stateOf, namesWithLabel } from './lib.js';

export const LABEL = 'loadtest=crud';

const toHealthy = new Trend('crud_create_to_healthy', true);
const patchToHealthy = new Trend('crud_patch_to_healthy', true);
const deleteToGone = new Trend('crud_delete_to_gone', true);
const lifecycles = new Counter('crud_lifecycles_completed');
const leftovers = new Counter('crud_databases_left_by_iterations');

/**
 * `vus` users running lifecycles back to back for `seconds` (as `exec`, when
 * given). An iteration still running at the end finishes, and so deletes
 * its database: each of its three waits may take `waitSeconds`.
 */
export function lifecycleScenario(vus, seconds, waitSeconds, exec) {
  return {
    executor: 'constant-vus',
    ...(exec ? { exec } : {}),
    vus,
    duration: `${seconds}s`,
    gracefulStop: `${3 * waitSeconds}s`,
  };
}

/** Time for setup (a login) and for teardown's cleanup of what was left. */
export function lifecycleTimeouts(waitSeconds) {
  return { setupTimeout: '120s', teardownTimeout: `${2 * waitSeconds}s` };
}

/** One lifecycle; every wait gives up after `waitSeconds`. */
export function lifecycle(token, waitSeconds) {
  const name = `k6-crud-${exec.vu.idInTest}-${exec.vu.iterationInScenario}-${Date.now().toString(36)}`;

  let t0 = Date.now();
  const created = http.post(
    `${API}/databases`,
    JSON.stringify({ name, instances: 1, storage: '1Gi', labels: { loadtest: 'crud' } }),
    authed(token, 'POST /databases', { headers: { 'content-type': 'application/json' } }),
  );
  if (!check(created, { 'create: 202': (r) => r.status === 202 })) {
    console.error(`create ${name}: ${created.status} ${created.body}`);
    return;
  }

  let waited = waitFor(token, name, (r) => stateOf(r) === 'healthy', waitSeconds);
  toHealthy.add(Date.now() - t0);
  if (!check(waited.res, { 'create: healthy': () => waited.ok })) {
    console.error(`${name} not healthy after ${waitSeconds}s: ${stateOf(waited.res)}`);
  } else {
    t0 = Date.now();
    const patched = http.patch(
      `${API}/databases/${name}`,
      JSON.stringify({ parameters: { work_mem: '8MB' }, labels: { loadtest: 'crud', patched: 'yes' } }),
      authed(token, 'PATCH /databases/{name}', {
        headers: {
          'content-type': 'application/merge-patch+json',
          'If-Match': waited.res.headers.Etag,
        },
      }),
    );
    const accepted = check(patched, {
      'patch: 202': (r) => r.status === 202,
      'patch: revision 2': (r) => r.status === 202 && r.json('revision') === 2,
    });
    if (accepted) {
      waited = waitFor(token, name, (r) => stateOf(r) === 'healthy', waitSeconds);
      patchToHealthy.add(Date.now() - t0);
      check(waited.res, {
        'patch: healthy again': () => waited.ok,
        'patch: applied': (r) => r.status === 200 && r.json('parameters.work_mem') === '8MB',
      });
    }
  }

  t0 = Date.now();
  const deleted = http.del(`${API}/databases/${name}`, null, authed(token, 'DELETE /databases/{name}'));
  check(deleted, { 'delete: 202': (r) => r.status === 202 });
  const gone = waitFor(token, name, (r) => r.status === 404, waitSeconds);
  deleteToGone.add(Date.now() - t0);
  if (check(gone.res, { 'delete: gone (404)': () => gone.ok })) lifecycles.add(1);
}

/** Deletes what interrupted iterations left and checks that nothing is left. */
export function cleanup(token, waitSeconds) {
  const left = namesWithLabel(token, LABEL);
  if (left === null) return;
  leftovers.add(left.length);
  for (const name of left) {
    http.del(`${API}/databases/${name}`, null, authed(token, 'DELETE /databases/{name} (teardown)'));
  }
  const until = Date.now() + waitSeconds * 1000;
  let remaining = left;
  while (remaining !== null && remaining.length > 0 && Date.now() < until) {
    sleep(0.5);
    remaining = namesWithLabel(token, LABEL);
  }
  check(remaining, { 'teardown: no database of the run is left': (r) => r !== null && r.length === 0 });
}
