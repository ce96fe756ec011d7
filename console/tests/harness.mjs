// What the browser tests stand on: a real `pgplane serve` (the debug
// binary; local backend with real PostgreSQL, or kubernetes backend on a
// real kube-apiserver) in a temporary data directory on a free port, with
// users of each role; Debian's Chromium driven by playwright-core; waits on
// conditions with deadlines. `stop()` kills pgplane and stops every
// PostgreSQL server it started (the servers outlive pgplane by design);
// the tests call it from `after`, which runs also when a test failed.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const BIN = process.env.PGPLANE_BIN || join(ROOT, 'target/debug/pgplane');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Polls `check` until it returns a truthy value or `ms` pass. */
export async function until(what, check, ms = 10000, every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e;
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.unref();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function hash(password) {
  return new Promise((ok, fail) => {
    const child = spawn(BIN, ['hash-password'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    // 'close', not 'exit': the output may still be in flight at exit.
    child.on('close', (code) => (code === 0 ? ok(out.trim()) : fail(new Error(`hash-password exited ${code}`))));
    child.stdin.end(password);
  });
}

/** Each test user: name, role and a password made up for this run. */
export const USERS = {
  admin: { role: 'admin', password: `admin-${randomBytes(6).toString('hex')}` },
  alice: { role: 'editor', password: `alice-${randomBytes(6).toString('hex')}` },
  victor: { role: 'viewer', password: `victor-${randomBytes(6).toString('hex')}` },
};

/** Every directory under `dir` holding a running PostgreSQL server. */
function serverDirs(dir) {
  const out = [];
  const walk = (d) => {
    let entries;
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      if (e === 'postmaster.pid') out.push(d);
      else {
        try {
          if (statSync(p).isDirectory()) walk(p);
        } catch {
          // gone meanwhile
        }
      }
    }
  };
  walk(dir);
  return out;
}

/**
 * Starts pgplane. `env` adds settings. Resolves once /readyz answers 200.
 */
export async function startPgplane({ env = {}, backend = 'local' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'pgplane-console-'));
  // The PostgreSQL servers run as their own account when pgplane runs as
  // root: it must be able to reach the data directory.
  chmodSync(dir, 0o755);
  const users = await Promise.all(
    Object.entries(USERS).map(async ([name, u]) => `- {username: ${name}, role: ${u.role}, password_hash: '${await hash(u.password)}'}`),
  );
  writeFileSync(join(dir, 'users.yaml'), `users:\n${users.join('\n')}\n`);
  const secret = randomBytes(32).toString('hex');
  const port = await freePort();
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PGPLANE_')));
  const data = join(dir, 'data');
  const base = `http://127.0.0.1:${port}`;
  // The running pgplane: its process, whether it exited, what it said.
  let run = null;
  const launch = () => {
    const child = spawn(BIN, ['serve'], {
      env: {
        ...clean,
        PGPLANE_BACKEND: backend,
        PGPLANE_DATA_DIR: data,
        PGPLANE_LISTEN: `127.0.0.1:${port}`,
        PGPLANE_USERS_FILE: join(dir, 'users.yaml'),
        PGPLANE_JWT_SECRET: secret,
        PGPLANE_LOG_FORMAT: 'json',
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const r = { child, exited: null, stderr: '' };
    child.stderr.on('data', (d) => (r.stderr += d));
    child.on('exit', (code, signal) => (r.exited = { code, signal }));
    run = r;
  };
  const ready = () =>
    until(
      'pgplane to be ready',
      async () => {
        if (run.exited) throw Object.assign(new Error(`pgplane exited (${JSON.stringify(run.exited)}): ${run.stderr}`), { fatal: true });
        return (await fetch(`${base}/readyz`)).ok;
      },
      60000,
      100,
    );
  const kill = async () => {
    if (run.exited) return;
    run.child.kill('SIGTERM');
    try {
      await until('pgplane to exit', () => run.exited, 10000);
    } catch {
      run.child.kill('SIGKILL');
      await until('pgplane to exit after SIGKILL', () => run.exited, 5000);
    }
  };
  const served = {
    base,
    dir,
    data,
    secret,
    /** pgplane stopped (SIGTERM) and started again, on the same port and data. */
    async restart() {
      await kill();
      launch();
      await ready();
    },
    async stop() {
      await kill();
      // SIGQUIT to each postmaster is what `pg_ctl stop -m immediate`
      // sends; pg_ctl itself refuses to run as root, which CI may be.
      const pids = [];
      for (const d of serverDirs(data)) {
        const pid = Number(readFileSync(join(d, 'postmaster.pid'), 'utf8').split('\n')[0]);
        try {
          process.kill(pid, 'SIGQUIT');
          pids.push(pid);
        } catch {
          // not running any more
        }
      }
      const alive = (pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      await until('the PostgreSQL servers to stop', () => pids.every((pid) => !alive(pid)), 20000);
      if (!process.env.KEEP_DATA) rmSync(dir, { recursive: true, force: true });
    },
  };
  launch();
  try {
    await ready();
  } catch (e) {
    await served.stop();
    throw e;
  }
  return served;
}

/** An API client for the tests' own calls ("another client"). */
export function apiClient(base) {
  const tokens = {};
  const call = async (user, method, path, { body, headers = {}, contentType } = {}) => {
    if (!tokens[user]) {
      const r = await fetch(`${base}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: user, password: USERS[user].password }),
      });
      if (!r.ok) throw new Error(`login of ${user}: ${r.status}`);
      tokens[user] = (await r.json()).access_token;
    }
    const h = { Authorization: `Bearer ${tokens[user]}`, ...headers };
    if (body !== undefined) h['Content-Type'] = contentType || 'application/json';
    const r = await fetch(`${base}/api/v1${path}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: r.status, headers: r.headers, body: json };
  };
  return { call };
}

/** An HS256 JWT as pgplane issues them, signed with `secret`. */
export function signToken(secret, sub, iat, exp) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, iss: 'pgplane', iat, exp })}`;
  return `${head}.${createHmac('sha256', Buffer.from(secret)).update(head).digest('base64url')}`;
}

export async function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/** Logs in through the login page. */
export async function logIn(page, base, user) {
  await page.goto(`${base}/`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(USERS[user].password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/**
 * Where the tests put their screenshots: target/console-screenshots, or
 * with CONSOLE_SCREENSHOTS=docs/console the README's pictures, refreshed
 * (so a plain run leaves the tree as it was).
 */
export const SHOTS = resolve(ROOT, process.env.CONSOLE_SCREENSHOTS || 'target/console-screenshots');

/** Runs `fn` over `items`, `width` at a time. */
export async function inParallel(items, width, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

export const TESTBIN = resolve(process.env.PGPLANE_TESTBIN || join(ROOT, '../shared/testbin'));

/**
 * etcd (Debian's, on PATH) and kube-apiserver (from ../shared/testbin) on
 * free loopback ports, with namespace `databases` and the CNPG CRDs, for
 * pgplane's kubernetes backend: what the Rust tests start (api/tests/
 * support/kube.rs). No operator runs; `playStatus` writes a Cluster's
 * status as CloudNativePG would. `stop()` ends both, by their handles.
 */
export async function startKube() {
  const dir = mkdtempSync(join(tmpdir(), 'pgplane-console-kube-'));
  chmodSync(dir, 0o755);
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const children = [];
  const etcd = spawn('etcd', [
    '--data-dir', join(dir, 'etcd'),
    '--listen-client-urls', `http://127.0.0.1:${etcdPort}`, '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `default=http://127.0.0.1:${peerPort}`,
  ], { stdio: 'ignore' });
  children.push(etcd);
  writeFileSync(join(dir, 'sa.key'), execFileSync('openssl', ['genrsa', '2048'], { stdio: ['ignore', 'pipe', 'ignore'] }));
  writeFileSync(join(dir, 'tokens.csv'), 'admin-token,admin,admin,system:masters\n');
  const apiserver = spawn(join(TESTBIN, 'kube-apiserver'), [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`, '--bind-address=127.0.0.1', `--secure-port=${apiPort}`,
    '--advertise-address=127.0.0.1', '--insecure-port=0', `--cert-dir=${join(dir, 'certs')}`,
    `--token-auth-file=${join(dir, 'tokens.csv')}`, '--authorization-mode=RBAC',
    `--service-account-key-file=${join(dir, 'sa.key')}`, `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
    '--service-account-issuer=https://kubernetes.default.svc', '--service-cluster-ip-range=10.0.0.0/24',
  ], { stdio: 'ignore' });
  children.push(apiserver);
  const kubeconfig = join(dir, 'admin.kubeconfig');
  writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "https://127.0.0.1:${apiPort}", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: admin-token}}]
contexts: [{name: bench, context: {cluster: bench, user: admin, namespace: databases}}]
current-context: bench
`);
  const stop = async () => {
    for (const c of [...children].reverse()) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    }
    const gone = () => children.every((c) => c.exitCode !== null || c.signalCode !== null);
    try {
      await until('etcd and kube-apiserver to exit', gone, 10000);
    } catch {
      // kube-apiserver may wait out its open watches first; not worth waiting for.
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await until('etcd and kube-apiserver to exit after SIGKILL', gone, 5000);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const kubectl = (...args) => execFileSync('kubectl', ['--kubeconfig', kubeconfig, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await until('kube-apiserver to be ready', () => { kubectl('get', '--raw', '/readyz'); return true; }, 60000, 200);
    kubectl('create', 'namespace', 'databases');
    kubectl('create', '--validate=false', '-f', join(TESTBIN, 'cnpg-crds-k8s-1.20'));
    kubectl('wait', '--for', 'condition=established', '--timeout=30s', 'crd/clusters.postgresql.cnpg.io');
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    kubeconfig,
    /** Runs kubectl against this API server; its standard output. */
    kubectl(args, input) {
      return execFileSync('kubectl', ['--kubeconfig', kubeconfig, ...args], { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
    },
    /** Writes a Cluster's status as CloudNativePG would. */
    playStatus(name, phase, ready, instances) {
      const body = JSON.stringify({ status: {
        phase, phaseReason: 'written by a console test, playing CloudNativePG', instances, readyInstances: ready,
        currentPrimary: `${name}-1`,
      } });
      return new Promise((ok, fail) => {
        const req = httpsRequest({
          host: '127.0.0.1', port: apiPort, method: 'PATCH', rejectUnauthorized: false,
          path: `/apis/postgresql.cnpg.io/v1/namespaces/databases/clusters/${name}/status`,
          headers: { Authorization: 'Bearer admin-token', 'Content-Type': 'application/merge-patch+json', 'Content-Length': Buffer.byteLength(body) },
        }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? ok() : fail(new Error(`status of ${name}: ${res.statusCode}`))));
        });
        req.on('error', fail);
        req.end(body);
      });
    },
    stop,
  };
}

