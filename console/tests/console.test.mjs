// The console in a real browser (Debian's Chromium, headless) against a
// real `pgplane serve` on the local backend: the whole journey of an
// editor, a viewer's, the admin's audit trail, an expired token, a change
// by another client shown within a second, keyboard-only use and a
// phone's width, with an axe-core scan of every page. Screenshots of each
// page go to target/console-screenshots/ (CONSOLE_SCREENSHOTS=docs/console
// refreshes the README's).
//
// Run: console/test.sh (after `cargo build` and `npm ci` in console/);
// ./test.sh runs it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AxeBuilder } from '@axe-core/playwright';
import { apiClient, launchChromium, logIn, SHOTS, signToken, startPgplane, until, USERS } from './harness.mjs';

const run = promisify(execFile);
let served;
let browser;
let api;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  served = await startPgplane();
  api = apiClient(served.base);
  browser = await launchChromium();
  // A database the viewer and the live-change test look at, made by
  // "another client" while the journey runs.
  for (const [name, labels] of [['shared', { team: 'platform' }], ['inventory', { team: 'logistics', tier: 'gold' }], ['analytics', { team: 'data' }]]) {
    const r = await api.call('admin', 'POST', '/databases', { body: { name, instances: 1, labels } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
  }
});

// Interrupted (Ctrl-C, a CI timeout): the servers are stopped all the same.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await served?.stop();
    process.exit(130);
  });
}

after(async () => {
  await browser?.close();
  await served?.stop();
});

/** No serious or critical accessibility violation on the page as it is. */
async function axe(page, what) {
  const result = await new AxeBuilder({ page }).analyze();
  const bad = result.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`),
    [],
    `axe on ${what}`,
  );
  return result.violations.length;
}

async function shot(page, name, { fullPage = true } = {}) {
  // The focus ring of the last control used is not part of the picture.
  await page.evaluate(() => document.activeElement?.blur?.());
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    // A refused request shows in the console as a failed resource: that is
    // the page working (a 401/403/412/422 it handles), not an error of it.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  return { context, page, errors };
}

const row = (page, name) => page.locator(`tr[data-database="${name}"]`);
const badge = (scope) => scope.locator('.badge[data-state]').first();

async function stateOf(scope) {
  return badge(scope).getAttribute('data-state');
}

test('the whole journey of an editor, in one browser', async () => {
  const { context, page, errors } = await newPage();
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: served.base });

  // Log in: a wrong password first.
  await page.goto(`${served.base}/`);
  await axe(page, 'login');
  await shot(page, 'login');
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('not her password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();
  await page.getByLabel('Password').fill(USERS.alice.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Databases' }).waitFor();
  // Nothing below reloads the page: this mark would be gone.
  await page.evaluate(() => (window.__sameDocument = true));

  // Create: the server's per-field errors beside the fields, the preview.
  await page.getByRole('link', { name: 'New database' }).first().click();
  await page.getByRole('heading', { name: 'New database' }).waitFor();
  const options = page.getByLabel('PostgreSQL version').locator('option');
  await until('the versions the server offers', async () => (await options.count()) > 0);
  const versions = await options.allTextContents();
  assert.ok(versions.length >= 1 && versions.some((v) => v.includes('(default)')), versions.join());
  await page.getByLabel('Name', { exact: true }).fill('Orders_1');
  await page.getByLabel('Instances').fill('12');
  await page.getByRole('button', { name: 'Create database' }).click();
  await page.locator('#name-error').waitFor();
  await page.locator('#instances-error').waitFor();
  assert.equal(await page.getByLabel('Name', { exact: true }).getAttribute('aria-invalid'), 'true');
  await page.getByLabel('Name', { exact: true }).fill('orders');
  await page.getByLabel('Instances').fill('2');
  // A parameter pgplane manages itself: the server's reason, beside its row.
  await page.getByRole('button', { name: 'Add parameter' }).click();
  await page.getByLabel('Parameters: name 1').fill('port');
  await page.getByLabel('Parameters: value 1').fill('5433');
  await page.getByRole('button', { name: 'Create database' }).click();
  await page.locator('#parameters-0-error').waitFor();
  assert.equal(await page.locator('#name-error').count(), 0, 'the name error went with the fix');
  await page.getByLabel('Parameters: name 1').fill('work_mem');
  await page.getByLabel('Parameters: value 1').fill('8MB');
  await page.getByRole('button', { name: 'Add label' }).click();
  await page.getByLabel('Labels: key 1').fill('team');
  await page.getByLabel('Labels: value 1').fill('payments');
  const manifest = page.getByTestId('manifest');
  await until('the preview to show the form', async () => {
    const text = (await manifest.textContent({ timeout: 1000 })) || '';
    return text.includes('instances: 2') && text.includes('work_mem: 8MB') && text.includes('team: payments');
  });
  assert.equal(await page.locator('#parameters-0-error').count(), 0, 'the parameter error went with the fix');
  await axe(page, 'create');
  await shot(page, 'create');
  await page.getByRole('button', { name: 'Create database' }).click();

  // Its page: it turns healthy live, with both instances.
  await page.waitForURL(`${served.base}/databases/orders`);
  await page.getByRole('heading', { name: 'orders', exact: true }).waitFor();
  await until('orders to be healthy with 2 of 2 ready', async () =>
    (await stateOf(page.locator('.page-head'))) === 'healthy' && (await page.getByTestId('ready').textContent()) === '2/2', 120000, 100);
  const instances = page.locator('table.instances tbody tr');
  await until('two instances listed', async () => (await instances.count()) === 2);
  const roles = await page.locator('table.instances td[data-label="Role"]').allTextContents();
  assert.deepEqual(roles.sort(), ['primary', 'standby']);
  assert.match(await page.locator('.phase').textContent(), /Phase: .+/);
  assert.ok(await page.evaluate(() => window.__sameDocument), 'no reload');
  await axe(page, 'database');
  await shot(page, 'database');

  // Connection details: asked for, copied, used outside the browser.
  assert.equal(await page.getByTestId('password').count(), 0, 'the password is not shown before it is asked for');
  const readsBefore = (await api.call('admin', 'GET', '/databases/orders/audit?action=database.credentials_read')).body.items.length;
  await page.getByRole('button', { name: 'Show connection details' }).click();
  await page.getByTestId('uri').waitFor();
  const readsAfter = (await api.call('admin', 'GET', '/databases/orders/audit?action=database.credentials_read')).body.items.length;
  assert.equal(readsAfter, readsBefore + 1, 'the reveal is one audited credentials read');
  await page.getByRole('button', { name: 'Copy URI' }).click();
  await page.getByRole('button', { name: 'Copy URI' }).filter({ hasText: 'Copied' }).waitFor();
  const uri = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(uri, /^postgres(ql)?:\/\//);
  await run('psql', [uri, '-Atc', 'CREATE TABLE kept (id int); INSERT INTO kept VALUES (42);']);
  const { stdout } = await run('psql', [uri, '-Atc', 'SELECT id FROM kept']);
  assert.equal(stdout.trim(), '42');
  await page.getByRole('button', { name: 'Copy psql command' }).click();
  assert.match(await page.evaluate(() => navigator.clipboard.readText()), /^psql '/);
  await page.getByRole('button', { name: 'Copy JDBC URI' }).click();
  assert.match(await page.evaluate(() => navigator.clipboard.readText()), /^jdbc:postgresql:\/\//);
  await page.getByRole('button', { name: 'Hide connection details' }).click();

  // Edit instances (revision 2), sent with If-Match.
  await page.getByRole('spinbutton', { name: 'Instances' }).fill('1');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved as revision 2.' }).waitFor();
  await until('orders to be healthy with 1 of 1', async () =>
    (await stateOf(page.locator('.page-head'))) === 'healthy' && (await page.getByTestId('ready').textContent()) === '1/1', 60000, 100);

  // A concurrent change through the API while the user edits: the 412 is
  // shown with what changed, and the edit is applied on top.
  await page.getByRole('spinbutton', { name: 'Instances' }).fill('2');
  await page.getByRole('textbox', { name: 'Storage' }).fill('2Gi');
  const concurrent = await api.call('admin', 'PATCH', '/databases/orders', {
    body: { labels: { tier: 'gold' } },
    contentType: 'application/merge-patch+json',
    headers: { 'If-Match': '"2"' },
  });
  assert.equal(concurrent.status, 202, JSON.stringify(concurrent.body));
  await until('the page to see revision 3', async () => (await page.getByTestId('revision').textContent()) === '3');
  await page.getByRole('button', { name: 'Save changes' }).click();
  const conflict = page.locator('.conflict');
  await conflict.waitFor();
  const told = await conflict.textContent();
  assert.match(told, /changed while you were editing/);
  assert.match(told, /revision 3, changed by admin/);
  assert.match(told, /labels/);
  assert.match(told, /tier/);
  await axe(page, 'database with a conflict');
  await shot(page, 'conflict');
  await page.getByRole('button', { name: 'Apply my edit on top' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved as revision 4.' }).waitFor();
  const now = (await api.call('admin', 'GET', '/databases/orders')).body;
  assert.equal(now.instances, 2);
  assert.equal(now.storage, '2Gi');
  assert.deepEqual(now.labels, { team: 'payments', tier: 'gold' }, 'the concurrent change is kept');
  await until('orders to be healthy with 2 of 2 again', async () =>
    (await stateOf(page.locator('.page-head'))) === 'healthy' && (await page.getByTestId('ready').textContent()) === '2/2', 120000, 100);

  // History: transitions (live), revisions, rollback with what it changes
  // and what it keeps, the audit trail.
  await page.getByRole('link', { name: 'History' }).click();
  await page.getByRole('heading', { name: 'orders: history' }).waitFor();
  const timeline = page.locator('ol.timeline li');
  await until('the transitions so far', async () => (await timeline.count()) >= 3);
  const revisions = page.locator('ol.revisions > li');
  await until('four revisions', async () => (await revisions.count()) === 4);
  const audit = page.locator('table.audit tbody tr');
  // alice's two updates, her refused one (412) and admin's concurrent one.
  await until('the audit trail', async () => (await page.locator('table.audit tr[data-action="database.update"]').count()) === 4);
  for (const action of ['database.create', 'database.credentials_read']) {
    assert.ok((await page.locator(`table.audit tr[data-action="${action}"]`).count()) >= 1, action);
  }
  await axe(page, 'history');
  await shot(page, 'history');
  const transitionsBefore = await timeline.count();
  await page.getByRole('button', { name: 'Roll back to revision 2' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  const plan = await dialog.textContent();
  assert.match(plan, /What will change:.*instances.*2.*→.*1/s);
  assert.match(plan, /labels/);
  assert.match(plan, /What is kept:.*storage 2Gi \(revision's 1Gi: storage never shrinks\)/s);
  await axe(page, 'rollback confirmation');
  await shot(page, 'rollback', { fullPage: false });
  await dialog.getByRole('button', { name: 'Roll back' }).click();
  await page.getByRole('status').filter({ hasText: 'Rolled back to revision 2, as revision 5.' }).waitFor();
  await until('a rollback record in the audit trail', async () => (await page.locator('table.audit tr[data-action="database.rollback"]').count()) === 1);
  await until('five revisions', async () => (await revisions.count()) === 5);
  await until('the rollback\'s transitions to appear live', async () => {
    const states = await page.locator('ol.timeline li').evaluateAll((lis) => lis.map((li) => li.dataset.to));
    return states.length >= transitionsBefore + 2 && states[0] === 'healthy';
  }, 60000, 100);
  const rolled = (await api.call('admin', 'GET', '/databases/orders')).body;
  assert.equal(rolled.instances, 1);
  assert.equal(rolled.storage, '2Gi', 'storage kept');
  assert.deepEqual(rolled.labels, { team: 'payments' });
  assert.ok(audit, 'audit rows seen');

  // Delete by typing the name; it disappears from the list live.
  await page.getByRole('link', { name: 'Back to orders' }).click();
  const del = page.getByRole('button', { name: 'Delete orders' });
  assert.ok(await del.isDisabled(), 'no delete before the name is typed');
  await page.getByLabel('Type orders to confirm').fill('order');
  assert.ok(await del.isDisabled(), 'nor with a wrong name');
  await page.getByLabel('Type orders to confirm').fill('orders');
  await del.click();
  await page.waitForURL(`${served.base}/`);
  await until('orders to disappear from the list', async () => (await row(page, 'orders').count()) === 0, 60000, 100);
  assert.ok(await page.evaluate(() => window.__sameDocument), 'no reload in the whole journey');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a viewer sees no controls that change anything, and the server refuses them anyway', async () => {
  await until('shared to be healthy', async () => (await api.call('admin', 'GET', '/databases/shared')).body.state === 'healthy', 60000, 200);
  const { context, page, errors } = await newPage();
  await logIn(page, served.base, 'victor');
  await row(page, 'shared').waitFor();
  assert.equal(await page.getByRole('link', { name: 'New database' }).count(), 0);
  assert.equal(await page.getByRole('link', { name: 'Audit trail' }).count(), 0);
  await axe(page, 'list as a viewer');
  await page.getByRole('link', { name: 'shared' }).click();
  await page.getByRole('heading', { name: 'shared', exact: true }).waitFor();
  await page.getByRole('heading', { name: 'Endpoints' }).waitFor();
  for (const name of ['Connection', 'Change', 'Delete']) {
    assert.equal(await page.getByRole('heading', { name, exact: true }).count(), 0, `no ${name} section`);
  }
  assert.equal(await page.getByRole('button').filter({ hasText: /Show connection|Save|Delete/ }).count(), 0);
  await axe(page, 'database as a viewer');
  await shot(page, 'database-viewer');
  await page.getByRole('link', { name: 'History' }).click();
  await page.locator('ol.revisions > li').first().waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Audit trail' }).count(), 0);
  assert.equal(await page.getByRole('button', { name: /Roll back/ }).count(), 0);
  await page.goto(`${served.base}/create`);
  await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
  await axe(page, 'not allowed');

  // The same calls made by hand with the viewer's own token.
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('pgplane.session')).token);
  const byHand = async (method, path, body, contentType = 'application/json') =>
    (await fetch(`${served.base}/api/v1${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': contentType } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })).status;
  assert.equal(await byHand('GET', '/databases/shared'), 200, 'the token works');
  assert.equal(await byHand('POST', '/databases', { name: 'byhand' }), 403);
  assert.equal(await byHand('PATCH', '/databases/shared', { instances: 2 }, 'application/merge-patch+json'), 403);
  assert.equal(await byHand('DELETE', '/databases/shared'), 403);
  assert.equal(await byHand('GET', '/databases/shared/credentials'), 403);
  assert.equal(await byHand('GET', '/databases/shared/audit'), 403);
  assert.equal(await byHand('POST', '/databases/shared/rollback', { revision: 1 }), 403);
  assert.equal(await byHand('GET', '/audit'), 403);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the admin pages through the whole audit trail with its filters', async () => {
  const { context, page, errors } = await newPage();
  await logIn(page, served.base, 'admin');
  await page.getByRole('link', { name: 'Audit trail' }).click();
  await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
  await page.locator('table.audit tbody tr').first().waitFor();
  await axe(page, 'admin audit');
  await shot(page, 'audit');
  const rows = page.locator('table.audit tbody tr');
  const cell = (label) => page.locator(`table.audit td[data-label="${label}"]`);

  await page.getByLabel('Actor').fill('alice');
  await page.getByLabel('Action').selectOption('database.update');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await until('only alice\'s updates', async () => {
    const actors = await cell('Actor').allTextContents();
    const actions = await cell('Action').allTextContents();
    return actors.length >= 2 && actors.every((a) => a.startsWith('alice')) && actions.every((a) => a === 'database.update');
  });
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.getByLabel('Database').fill('orders');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await until('only orders', async () => {
    const dbs = await cell('Database').allTextContents();
    return dbs.length > 5 && dbs.every((d) => d === 'orders');
  });
  // A time range that ends before anything happened selects nothing.
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.getByLabel('Until').fill('2020-01-01T00:00');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.getByRole('status').filter({ hasText: 'Page 1: 0 records' }).waitFor();
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.getByLabel('From').fill('2020-01-01T00:00');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await until('records since 2020', async () => (await rows.count()) > 0);

  // Paging: more than a page of records exists after these logins.
  for (let i = 0; i < 50; i++) await api.call('admin', 'GET', '/databases/shared/credentials');
  await page.getByRole('button', { name: 'Clear' }).click();
  await until('a full first page', async () => (await rows.count()) === 50);
  const ids = () => rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
  const firstPage = await ids();
  assert.equal(new Set(firstPage).size, 50);
  await page.getByRole('button', { name: 'Older' }).click();
  await page.getByRole('status').filter({ hasText: /^Page 2: \d+ records/ }).waitFor();
  const secondPage = await ids();
  assert.ok(secondPage.length > 0);
  assert.ok(secondPage.every((id) => !firstPage.includes(id)), 'page 2 holds older records only');
  await page.getByRole('button', { name: 'Newer' }).click();
  await page.getByRole('status').filter({ hasText: /^Page 1: 50 records/ }).waitFor();
  assert.deepEqual(await ids(), firstPage);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the list filters by label and sorts by name, state and age', async () => {
  const { context, page, errors } = await newPage();
  await logIn(page, served.base, 'victor');
  const names = () => page.locator('table.databases tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.database));
  await until('the three databases', async () => (await names()).length === 3);
  assert.deepEqual(await names(), ['analytics', 'inventory', 'shared'], 'by name');
  await page.getByLabel('Sort by').selectOption('age');
  const created = Object.fromEntries((await api.call('admin', 'GET', '/databases')).body.items.map((d) => [d.name, d.created_at]));
  const newestFirst = Object.keys(created).sort((a, b) => Date.parse(created[b]) - Date.parse(created[a]) || a.localeCompare(b));
  assert.deepEqual(await names(), newestFirst, 'by age, newest first');
  await page.getByLabel('Labels').fill('team=logistics');
  assert.deepEqual(await names(), ['inventory']);
  await page.getByLabel('Labels').fill('tier');
  assert.deepEqual(await names(), ['inventory'], 'a key alone selects who has it');
  await page.getByLabel('Labels').fill('team=nobody');
  assert.deepEqual(await names(), []);
  await page.getByText('No database matches the filters.').waitFor();
  await page.getByLabel('Labels').fill('');
  // Trouble first: the healthy ones last, by name among themselves.
  await page.getByLabel('Sort by').selectOption('state');
  const states = await page.locator('table.databases tbody .badge').evaluateAll((bs) => bs.map((b) => b.dataset.state));
  const order = ['failed', 'degraded', 'failing_over', 'unknown', 'deleting', 'creating', 'scaling', 'updating', 'healthy'];
  assert.deepEqual([...states].sort((a, b) => order.indexOf(a) - order.indexOf(b)), states);
  assert.equal((await names()).length, 3);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a state change made by another client shows in an open list within a second', async () => {
  const { context, page, errors } = await newPage();
  await logIn(page, served.base, 'admin');
  await row(page, 'shared').waitFor();
  assert.equal(await stateOf(row(page, 'shared')), 'healthy');
  // Every state the row shows, with when it showed it.
  await page.evaluate(() => {
    window.__seen = [];
    const note = () => {
      const b = document.querySelector('tr[data-database="shared"] .badge');
      const s = b?.dataset.state;
      if (s && window.__seen.at(-1)?.state !== s) window.__seen.push({ state: s, at: Date.now() });
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    note();
  });
  const r = await api.call('admin', 'PATCH', '/databases/shared', { body: { instances: 2 }, contentType: 'application/merge-patch+json' });
  const answered = Date.now();
  assert.equal(r.status, 202);
  const seen = await until('a state other than healthy', async () => {
    const s = await page.evaluate(() => window.__seen);
    return s.find((x) => x.state !== 'healthy');
  }, 1500, 20);
  assert.ok(seen.at - answered <= 1000, `shown ${seen.at - answered} ms after the change was accepted`);
  await until('shared healthy with 2 of 2', async () =>
    (await stateOf(row(page, 'shared'))) === 'healthy' && (await row(page, 'shared').locator('td[data-label="Ready"]').textContent()) === '2/2', 60000, 100);
  await axe(page, 'list');
  await shot(page, 'list');
  assert.deepEqual(errors, []);
  await context.close();
});

test('the streams come back on their own after pgplane restarts, and miss nothing', async () => {
  const { context, page, errors } = await newPage();
  await logIn(page, served.base, 'admin');
  // Another tab: it has its own session (sessionStorage is per tab).
  const list = await context.newPage();
  await logIn(list, served.base, 'admin');
  await row(list, 'shared').waitFor();
  await page.goto(`${served.base}/databases/shared/history`);
  const stored = async () => (await api.call('admin', 'GET', '/databases/shared/events?limit=1000')).body.items.map((e) => e.ts);
  const shown = () => page.locator('ol.timeline > li time').evaluateAll((ts) => ts.map((t) => t.getAttribute('datetime')));
  const before = await stored();
  assert.ok(before.length >= 2, 'shared has transitions');
  await until('the stored transitions, newest first', async () => JSON.stringify(await shown()) === JSON.stringify(before));

  // Stopping pgplane ends every stream (`end`); the pages reconnect to the
  // new process by themselves, the timeline from its last event id.
  await served.restart();
  const r = await api.call('admin', 'PATCH', '/databases/shared', { body: { instances: 1 }, contentType: 'application/merge-patch+json' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  await until('shared scaled down and healthy', async () => {
    const d = (await api.call('admin', 'GET', '/databases/shared')).body;
    return d.state === 'healthy' && d.ready_instances === 1;
  }, 60000, 200);
  const after = await stored();
  assert.ok(after.length > before.length, 'the scale-down made transitions');
  await until('every transition shown once, the new ones too', async () => JSON.stringify(await shown()) === JSON.stringify(after), 10000);
  await until('the list, live again, shows 1/1', async () =>
    (await row(list, 'shared').locator('td[data-label="Ready"]').textContent()) === '1/1', 10000);
  assert.equal(await list.locator('.live').textContent(), 'Live');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a session ends with a message when its token expires, also mid-stream', async () => {
  const { context, page, errors } = await newPage();
  const plant = async (token) => {
    await page.goto(`${served.base}/login`);
    // The console believes the session is good for an hour: only the
    // server can tell it is over.
    await page.evaluate((t) => sessionStorage.setItem('pgplane.session', JSON.stringify({
      token: t, expiresAt: Date.now() + 3600000, username: 'admin', role: 'admin',
    })), token);
  };
  const now = Math.floor(Date.now() / 1000);
  // A token that expires a few seconds into the session: the list's open
  // stream is ended by the server (`expired`), and the page says so.
  await plant(signToken(served.secret, 'admin', now, now + 4));
  await page.goto(`${served.base}/`);
  await row(page, 'shared').waitFor();
  await page.getByRole('status').filter({ hasText: 'Your session has expired' }).waitFor({ timeout: 20000 });
  await page.getByLabel('Username').waitFor();
  // An already expired token: the first request is refused with 401.
  await plant(signToken(served.secret, 'admin', now - 120, now - 60));
  await page.goto(`${served.base}/databases/shared`);
  await page.getByRole('status').filter({ hasText: 'Your session has ended' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('pgplane.session')), null, 'the token is dropped');
  assert.match(page.url(), /\/login$/);
  await shot(page, 'session-expired');
  // Logging in again returns to the page that was asked for.
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill(USERS.admin.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${served.base}/databases/shared`);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a rate-limited login says when to try again', async () => {
  const { context, page } = await newPage();
  await page.goto(`${served.base}/`);
  await page.getByLabel('Username').fill('mallory');
  const alert = page.getByRole('alert');
  let limited = null;
  for (let i = 0; i < 15 && !limited; i++) {
    await page.getByLabel('Password').fill(`guess-${i}`);
    await page.getByRole('button', { name: 'Log in' }).click();
    await alert.waitFor();
    await until('an answer', async () => !(await page.getByRole('button', { name: /Logging in/ }).count()));
    const text = await alert.textContent();
    if (text.includes('Too many')) limited = text;
  }
  assert.ok(limited, 'the login was rate limited');
  assert.match(limited, /Too many login attempts\. Try again in \d+ seconds?, at \d/);
  assert.ok(await page.getByRole('button', { name: /wait \d+ s/ }).isDisabled(), 'the button waits');
  await shot(page, 'login-rate-limited');
  await context.close();
});

test('every control is reachable with the keyboard, and the pages work at a phone\'s width', async () => {
  const { context, page, errors } = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  // Log in with the keyboard alone.
  await page.goto(`${served.base}/`);
  await page.keyboard.press('Tab');
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  await page.keyboard.type(USERS.alice.password);
  await page.keyboard.press('Enter');
  await row(page, 'shared').waitFor();

  // Tabbing from the top reaches every enabled control of the page.
  const reachesAll = async (what) => {
    const controls = await page.evaluate(() => {
      const all = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex="0"]')];
      return all.filter((e) => !e.disabled && e.getClientRects().length).length;
    });
    await page.evaluate(() => {
      window.__reached = new Set();
      document.addEventListener('focusin', (e) => window.__reached.add(e.target));
      document.activeElement?.blur();
    });
    for (let i = 0; i < controls + 5; i++) await page.keyboard.press('Tab');
    const missed = await page.evaluate(() => {
      const all = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex="0"]')];
      return all
        .filter((e) => !e.disabled && e.getClientRects().length && !window.__reached.has(e))
        .map((e) => e.outerHTML.slice(0, 80));
    });
    assert.deepEqual(missed, [], `controls of ${what} the keyboard cannot reach`);
  };
  await reachesAll('the list');
  await axe(page, 'list at a phone\'s width');
  await shot(page, 'phone-list');
  // The list's link opens a database with Enter.
  await page.getByRole('link', { name: 'shared' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'shared', exact: true }).waitFor();
  await page.getByRole('heading', { name: 'Change' }).waitFor();
  await reachesAll('a database');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`);
  await axe(page, 'database at a phone\'s width');
  await shot(page, 'phone-database');
  await page.getByRole('link', { name: 'History' }).click();
  await page.locator('ol.revisions > li').first().waitFor();
  await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
  await reachesAll('the history');
  await axe(page, 'history at a phone\'s width');
  await page.goto(`${served.base}/create`);
  await page.getByLabel('Name', { exact: true }).waitFor();
  await reachesAll('the create form');
  await axe(page, 'create at a phone\'s width');
  assert.deepEqual(errors, []);
  await context.close();
});
