// The web console's numbers, measured in headless Chromium on this
// machine (not asserted; recorded in loadtests/results/<date>/console.md):
//
//   1. first load: every byte transferred for the login page (the first
//      page anyone loads; it loads every module of the console),
//      as transferred (pgplane sends no Content-Encoding) and gzipped;
//   2. the list of 500 databases: from navigation to the first page of rows
//      on screen and answering input (the "Next page" click rendered);
//   3. a state change recorded by pgplane (its service event's `ts`) to
//      the badge changing in an open page, over 50 changes.
//
// 500 real PostgreSQL servers do not fit this 2-core machine, so pgplane
// runs its kubernetes backend against a real kube-apiserver and etcd (from
// ../shared/testbin, as the Rust tests start them): 500 real Cluster
// objects, created through pgplane's API, whose status this script writes
// as CloudNativePG would (no operator runs). Everything the console sees
// goes through pgplane's real watch, store and streams.
//
// Run (after `cargo build` and `npm ci --prefix console`):
//   node loadtests/console_bench.mjs [--runs 5] [--changes 50] [--databases 500]

import { gzipSync } from 'node:zlib';
import { apiClient, inParallel, launchChromium, startKube, startPgplane, until, USERS } from '../console/tests/harness.mjs';

const arg = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const RUNS = arg('runs', 5);
const CHANGES = arg('changes', 50);
const DATABASES = arg('databases', 500);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

const HEALTHY = 'Cluster in healthy state';
const SCALING = 'Creating a new replica';

async function main() {
  const kube = await startKube();
  let served;
  let browser;
  try {
    served = await startPgplane({ backend: 'kubernetes', env: { PGPLANE_KUBECONFIG: kube.kubeconfig, PGPLANE_LOG: 'warn' } });
    const api = apiClient(served.base);
    const names = Array.from({ length: DATABASES }, (_, i) => `db-${String(i).padStart(3, '0')}`);
    const seedStart = Date.now();
    await inParallel(names, 8, async (name) => {
      const r = await api.call('admin', 'POST', '/databases', { body: { name, instances: 1, labels: { team: `t${Number(name.slice(3)) % 7}` } } });
      if (r.status !== 202) throw new Error(`create ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    });
    await inParallel(names, 8, (name) => kube.playStatus(name, HEALTHY, 1, 1));
    await until(`${DATABASES} healthy databases`, async () => {
      const all = [];
      let cursor = null;
      do {
        const r = await api.call('admin', 'GET', `/databases?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        all.push(...r.body.items);
        cursor = r.body.next_cursor;
      } while (cursor);
      return all.length === DATABASES && all.every((d) => d.state === 'healthy');
    }, 120000, 500);
    const seedSecs = (Date.now() - seedStart) / 1000;

    browser = await launchChromium();
    const login = await (await fetch(`${served.base}/api/v1/auth/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: USERS.admin.password }),
    })).json();
    const session = { token: login.access_token, expiresAt: Date.now() + login.expires_in * 1000, username: 'admin', role: 'admin' };

    // 1. First load, every byte, in a fresh context (nothing cached).
    const firstLoad = [];
    let assets = [];
    for (let i = 0; i < RUNS; i++) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      const sizes = new Map();
      cdp.on('Network.responseReceived', (e) => sizes.set(e.requestId, { url: e.response.url, bytes: 0 }));
      cdp.on('Network.loadingFinished', (e) => { if (sizes.has(e.requestId)) sizes.get(e.requestId).bytes = e.encodedDataLength; });
      await page.goto(`${served.base}/`, { waitUntil: 'networkidle' });
      await page.getByLabel('Username').waitFor();
      const list = [...sizes.values()];
      firstLoad.push(list.reduce((n, r) => n + r.bytes, 0));
      assets = list;
      await context.close();
    }
    const gzipped = await Promise.all(assets.map(async (a) => {
      const body = Buffer.from(await (await fetch(a.url)).arrayBuffer());
      return { url: new URL(a.url).pathname.replace(/\/assets\/[0-9a-f]+\//, '/assets/<v>/'), transferred: a.bytes, raw: body.length, gzip: gzipSync(body, { level: 6 }).length };
    }));

    // 2. The list of 500: navigation to the first page of rows, and to the
    // page answering a click.
    const listTimes = [];
    const clickTimes = [];
    for (let i = 0; i < RUNS; i++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      await context.addInitScript((s) => sessionStorage.setItem('pgplane.session', JSON.stringify(s)), session);
      const page = await context.newPage();
      await page.goto(`${served.base}/`);
      await page.waitForFunction((n) => document.querySelectorAll('table.databases tbody tr').length === 50
        && document.querySelector('caption')?.textContent.includes(`of ${n}`), DATABASES, { polling: 'raf', timeout: 30000 });
      const shown = await page.evaluate(() => performance.now());
      listTimes.push(shown);
      const before = await page.evaluate(() => document.querySelector('table.databases tbody tr').dataset.database);
      const clicked = await page.evaluate(() => {
        const t0 = performance.now();
        document.querySelectorAll('.pager button')[1].click();
        return t0;
      });
      await page.waitForFunction((b) => document.querySelector('table.databases tbody tr')?.dataset.database !== b, before, { polling: 'raf' });
      const rendered = await page.evaluate(() => performance.now());
      clickTimes.push(shown + (rendered - clicked));
      await context.close();
    }

    // 3. State changes: pgplane records each (service event ts); the open
    // page shows it.
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.addInitScript((s) => sessionStorage.setItem('pgplane.session', JSON.stringify(s)), session);
    const page = await context.newPage();
    await page.goto(`${served.base}/`);
    await page.waitForFunction(() => document.querySelectorAll('table.databases tbody tr').length === 50, null, { timeout: 30000 });
    await page.evaluate(() => {
      window.__shown = [];
      new MutationObserver((records) => {
        const at = Date.now();
        for (const r of records) {
          const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
          const row = el?.closest?.('tr[data-database]');
          const badge = row?.querySelector('.badge');
          if (badge) window.__shown.push({ name: row.dataset.database, state: badge.dataset.state, at });
        }
      }).observe(document.querySelector('table.databases tbody'), { subtree: true, attributes: true, childList: true, characterData: true });
    });
    const onPage = names.slice(0, 50);
    const latencies = [];
    for (let i = 0; i < CHANGES; i++) {
      const name = onPage[i % onPage.length];
      const current = (await api.call('admin', 'GET', `/databases/${name}`)).body.state;
      const [phase, want] = current === 'healthy' ? [SCALING, 'scaling'] : [HEALTHY, 'healthy'];
      const seenBefore = (await api.call('admin', 'GET', `/databases/${name}/events?limit=1`)).body.items[0]?.ts;
      await kube.playStatus(name, phase, want === 'healthy' ? 1 : 0, 1);
      const event = await until(`the ${want} event of ${name}`, async () => {
        const e = (await api.call('admin', 'GET', `/databases/${name}/events?limit=1`)).body.items[0];
        return e && e.ts !== seenBefore && e.to === want ? e : null;
      }, 10000, 20);
      const shown = await until(`${name} shown ${want}`, async () =>
        (await page.evaluate(([n, s]) => window.__shown.find((x) => x.name === n && x.state === s), [name, want])), 10000, 20);
      await page.evaluate(() => (window.__shown = []));
      latencies.push(shown.at - Date.parse(event.ts));
    }
    await context.close();

    const sum = (xs) => xs.reduce((a, b) => a + b, 0);
    const result = {
      databases: DATABASES,
      runs: RUNS,
      seed_seconds: seedSecs,
      first_load_bytes_median: median(firstLoad),
      first_load_bytes_runs: firstLoad,
      first_load_gzip_bytes: sum(gzipped.map((a) => a.gzip)),
      first_load_requests: assets.length,
      assets: gzipped,
      list_shown_ms_median: median(listTimes),
      list_shown_ms_runs: listTimes.map(Math.round),
      list_interactive_ms_median: median(clickTimes),
      list_interactive_ms_runs: clickTimes.map(Math.round),
      change_ms_p50: pct(latencies, 50),
      change_ms_p95: pct(latencies, 95),
      change_ms_max: Math.max(...latencies),
      changes: latencies.length,
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await browser?.close();
    await served?.stop();
    await kube.stop();
  }
}

await main();
