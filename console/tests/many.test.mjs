// The list with 500 databases, paged in the browser. 500 real PostgreSQL
// servers do not fit a test machine, so pgplane runs its kubernetes
// backend here, against a real kube-apiserver and etcd, with each
// Cluster's status written as CloudNativePG would: 500 real Cluster objects
// created through pgplane's API, seen through its real watch and stream.
// (How fast this is, is measured by loadtests/console_bench.mjs, not here.)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiClient, BIN, inParallel, launchChromium, logIn, startKube, startPgplane, until } from './harness.mjs';

const COUNT = 500;
const names = Array.from({ length: COUNT }, (_, i) => `db-${String(i).padStart(3, '0')}`);
let kube;
let served;
let browser;
let api;

before(async () => {
  kube = await startKube();
  served = await startPgplane({ backend: 'kubernetes', env: { PGPLANE_KUBECONFIG: kube.kubeconfig, PGPLANE_LOG: 'warn' } });
  api = apiClient(served.base);
  await inParallel(names, 8, async (name) => {
    const r = await api.call('admin', 'POST', '/databases', { body: { name, labels: { team: `t${Number(name.slice(3)) % 7}` } } });
    assert.equal(r.status, 202, `${name}: ${JSON.stringify(r.body)}`);
  });
  await inParallel(names, 8, (name) => kube.playStatus(name, 'Cluster in healthy state', 1, 1));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await served?.stop();
  await kube?.stop();
});

test('500 databases page, filter and change live in the browser', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await logIn(page, served.base, 'victor');
  const caption = page.locator('table.databases caption');
  const shown = () => page.locator('table.databases tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.database));
  await until('all 500 healthy in the list', async () =>
    (await caption.textContent()) === 'Databases 1–50 of 500'
    && (await page.locator('table.databases tbody .badge[data-state="healthy"]').count()) === 50, 60000, 100);
  // Only one page of rows is in the document, whatever the count.
  assert.deepEqual(await shown(), names.slice(0, 50));
  const next = page.getByRole('button', { name: 'Next page' });
  for (let p = 1; p < 10; p++) {
    await next.click();
    assert.equal(await caption.textContent(), `Databases ${p * 50 + 1}–${p * 50 + 50} of 500`);
    assert.deepEqual(await shown(), names.slice(p * 50, p * 50 + 50));
  }
  assert.ok(await next.isDisabled(), 'no page after the last');
  await page.getByRole('button', { name: 'Previous page' }).click();
  assert.equal(await caption.textContent(), 'Databases 401–450 of 500');

  await page.getByLabel('Per page').selectOption('100');
  assert.equal(await caption.textContent(), 'Databases 1–100 of 500');
  await page.getByText('Page 1 of 5').waitFor();
  await page.getByLabel('Labels').fill('team=t3');
  const t3 = names.filter((n) => Number(n.slice(3)) % 7 === 3);
  assert.equal(await caption.textContent(), `Databases 1–${t3.length} of ${t3.length} (500 in all)`);
  assert.deepEqual(await shown(), t3);

  // A change on a page other than the first shows live where it is.
  await page.getByLabel('Labels').fill('');
  await page.getByLabel('Per page').selectOption('50');
  await next.click();
  await next.click();
  assert.deepEqual(await shown(), names.slice(100, 150));
  await kube.playStatus('db-120', 'Creating a new replica', 0, 1);
  await page.locator('tr[data-database="db-120"] .badge[data-state="scaling"]').waitFor({ timeout: 5000 });
  // Sorting by state puts it first, the other 499 after it.
  await page.getByLabel('Sort by').selectOption('state');
  await page.getByRole('button', { name: 'Previous page' }).click();
  await page.getByRole('button', { name: 'Previous page' }).click();
  assert.equal((await shown())[0], 'db-120');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a database declared in git says where, and offers no control that changes it', async () => {
  // Rendered as scripts/render-databases.sh does and applied as Argo CD would.
  const dir = mkdtempSync(join(tmpdir(), 'pgplane-console-git-'));
  writeFileSync(join(dir, 'ledger.yaml'), 'name: ledger\ninstances: 2\nlabels: {team: finance}\n');
  const rendered = execFileSync(BIN, ['render', join(dir, 'ledger.yaml'), '--declared-in', 'gitops/databases/ledger.yaml',
    '--namespace', 'databases']).toString();
  kube.kubectl(['apply', '--server-side', '--field-manager', 'argocd-controller', '-f', '-'], rendered);
  await until('ledger in the cache', async () => (await api.call('admin', 'GET', '/databases/ledger')).status === 200, 10000);
  await kube.playStatus('ledger', 'Cluster in healthy state', 2, 2);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await logIn(page, served.base, 'alice');
  await page.goto(`${served.base}/databases/ledger`);
  await page.getByTestId('declared-in-git').waitFor();
  assert.match(await page.getByTestId('declared-in-git').textContent(), /gitops\/databases\/ledger\.yaml/);
  assert.equal(await page.getByTestId('source').textContent(), 'git');
  await page.locator('.badge[data-state="healthy"]').first().waitFor();
  // An editor may read its credentials, but not change or delete it.
  await page.getByRole('button', { name: 'Show connection details' }).waitFor();
  for (const name of ['Save changes', 'Delete ledger']) {
    assert.equal(await page.getByRole('button', { name }).count(), 0, `${name} shown for a database in git`);
  }
  assert.equal(await page.getByRole('heading', { name: 'Change' }).count(), 0);
  await page.goto(`${served.base}/databases/ledger/history`);
  await page.getByRole('heading', { name: 'Revisions' }).waitFor();
  assert.equal(await page.getByRole('button', { name: /^Roll back/ }).count(), 0);
  // And the server refuses the change anyway.
  const refused = await api.call('alice', 'PATCH', '/databases/ledger', { body: { instances: 3 }, contentType: 'application/merge-patch+json' });
  assert.equal(refused.status, 409);
  await context.close();
});
