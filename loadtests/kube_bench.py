#!/usr/bin/env python3
"""The kubernetes backend at 1,000 Clusters, against a real kube-apiserver
(v1.20.2 from ../shared/testbin) and etcd on loopback, with the CNPG CRDs.
No operator runs: this script plays CloudNativePG by writing `status`.

- reads from the cache: with 1,000 databases, k6 (--vus VUs for --duration)
  asks for single databases (GET /databases/{name}) and list pages
  (GET /databases?limit=50&cursor=...) while a writer changes one Cluster's
  status every 50 ms; k6 reports p99 of each kind;
- pgplane's RSS once the 1,000 are in the cache, and after the load;
- transition latency: --transitions status writes (alternating "Cluster in
  healthy state" and "Waiting for the instances to become active"), each
  timed from just before the PATCH of the status subresource is sent to the
  `ts` of the service_event pgplane records for it (same machine clock).

Usage: loadtests/kube_bench.py [--clusters N] [--transitions N] [--vus N]
       [--duration 30s] [--binary PATH] [--out DIR] [--report NAME]
Writes NAME.json and NAME.md (default kube-bench) into --out.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_bench import Pgplane, free_port, write_report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTBIN = os.environ.get("PGPLANE_TESTBIN", os.path.join(REPO, "..", "shared", "testbin"))
NAMESPACE = "databases"
JWT_SECRET = "bench-secret-bench-secret-bench-secret!"
HEALTHY = "Cluster in healthy state"
WAITING = "Waiting for the instances to become active"


def parse_ts(s):
    head, frac = s.rstrip("Z").split(".")
    return datetime.datetime.fromisoformat(f"{head}.{frac[:6]}+00:00")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


class KubeServer:
    """etcd + kube-apiserver on free loopback ports under `root` (the flags of
    ../shared/testbin/example-up.sh), the namespace and the CNPG CRDs."""

    def __init__(self, root):
        self.root = root
        self.procs = []
        etcd_port, peer_port, self.port = free_port(), free_port(), free_port()
        log = open(os.path.join(root, "etcd.log"), "w")
        etcd = shutil.which("etcd")
        if not etcd:
            raise SystemExit("etcd is not on PATH (apt-get install etcd-server)")
        self.procs.append(subprocess.Popen(
            [etcd, "--data-dir", os.path.join(root, "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-cluster", f"default=http://127.0.0.1:{peer_port}"],
            stdout=log, stderr=log))
        key = os.path.join(root, "sa.key")
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
        with open(os.path.join(root, "tokens.csv"), "w") as f:
            f.write("admin-token,admin,admin,system:masters\n")
        log = open(os.path.join(root, "apiserver.log"), "w")
        self.procs.append(subprocess.Popen(
            [os.path.join(TESTBIN, "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
             "--bind-address=127.0.0.1", f"--secure-port={self.port}", "--advertise-address=127.0.0.1",
             "--insecure-port=0", f"--cert-dir={root}/certs", f"--token-auth-file={root}/tokens.csv",
             "--authorization-mode=RBAC", f"--service-account-key-file={key}",
             f"--service-account-signing-key-file={key}",
             "--service-account-issuer=https://kubernetes.default.svc",
             "--service-cluster-ip-range=10.0.0.0/24"],
            stdout=log, stderr=log))
        self.kubeconfig = os.path.join(root, "admin.kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "https://127.0.0.1:{self.port}", insecure-skip-tls-verify: true}}}}]
users: [{{name: admin, user: {{token: admin-token}}}}]
contexts: [{{name: test, context: {{cluster: test, user: admin, namespace: {NAMESPACE}}}}}]
current-context: test
""")
        self.ssl = ssl.create_default_context()
        self.ssl.check_hostname = False
        self.ssl.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 60
        while True:
            try:
                self.call("GET", "/readyz")
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise SystemExit(f"kube-apiserver not ready; see {root}/apiserver.log")
                time.sleep(0.2)
        env = dict(os.environ, KUBECONFIG=self.kubeconfig)
        subprocess.run(["kubectl", "create", "namespace", NAMESPACE], env=env, check=True,
                       capture_output=True)
        subprocess.run(["kubectl", "create", "--validate=false", "-f",
                        os.path.join(TESTBIN, "cnpg-crds-k8s-1.20")], env=env, check=True,
                       capture_output=True)
        subprocess.run(["kubectl", "wait", "--for", "condition=established", "--timeout=30s",
                        "crd/clusters.postgresql.cnpg.io"], env=env, check=True, capture_output=True)

    def call(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", data=data, method=method)
        req.add_header("authorization", "Bearer admin-token")
        if data is not None:
            req.add_header("content-type", content_type)
        with urllib.request.urlopen(req, context=self.ssl, timeout=30) as r:
            return r.read()

    def play_status(self, name, phase, ready, instances):
        self.call("PATCH",
                  f"/apis/postgresql.cnpg.io/v1/namespaces/{NAMESPACE}/clusters/{name}/status",
                  {"status": {"phase": phase, "phaseReason": "played by kube_bench.py",
                              "instances": instances, "readyInstances": ready,
                              "currentPrimary": f"{name}-1"}},
                  content_type="application/merge-patch+json")

    def stop(self):
        for p in reversed(self.procs):
            p.kill()
            p.wait()


def serve(binary, root, kubeconfig):
    """pgplane on the kubernetes backend, ready once its caches are filled."""
    return Pgplane(binary, root, {
        "PGPLANE_BACKEND": "kubernetes",
        "PGPLANE_KUBECONFIG": kubeconfig,
        "PGPLANE_NAMESPACE": NAMESPACE,
        "PGPLANE_JWT_SECRET": JWT_SECRET,
    }, ready_path="/readyz", start_s=60)


K6_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
const base = __ENV.BASE, token = __ENV.TOKEN, n = parseInt(__ENV.CLUSTERS);
const cursors = JSON.parse(open(__ENV.CURSORS));
const params = (name) => ({ headers: { Authorization: `Bearer ${token}` }, tags: { name } });
export const options = {
  thresholds: { 'http_req_duration{name:get}': ['p(99)<5'], 'http_req_duration{name:list}': ['p(99)<5'],
                'checks': ['rate==1'] },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(99)', 'max'],
};
export default function () {
  const i = Math.floor(Math.random() * n);
  const r = http.get(`${base}/databases/db-${String(i).padStart(4, '0')}`, params('get'));
  check(r, { 'get 200': (x) => x.status === 200 });
  const c = cursors[Math.floor(Math.random() * cursors.length)];
  const l = http.get(`${base}/databases?limit=50${c ? '&cursor=' + c : ''}`, params('list'));
  check(l, { 'list 200': (x) => x.status === 200 && JSON.parse(x.body).items.length > 0 });
}
"""


def server_histogram(app):
    """pgplane's own `http_request_duration_seconds` buckets of the two read
    routes: {route: {le: count}} (server time, without the client's side)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{app.port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith("pgplane_http_request_duration_seconds_bucket{"):
            continue
        labels, value = line.rsplit(" ", 1)
        fields = dict(kv.split("=", 1) for kv in labels[labels.index("{") + 1:-1].split(","))
        fields = {k: v.strip('"') for k, v in fields.items()}
        if fields.get("method") != "GET":
            continue
        route = fields["route"]
        if route not in ("/api/v1/databases", "/api/v1/databases/{name}"):
            continue
        out.setdefault(route, {})[fields["le"]] = float(value)
    return out


def server_p99(before, after, route):
    """Upper bound of the bucket holding the 99th percentile, and the share of
    requests answered within 5 ms, between two scrapes."""
    b, a = before.get(route, {}), after[route]
    delta = {le: a[le] - b.get(le, 0) for le in a}
    total = delta["+Inf"]
    bounds = sorted((float(le), n) for le, n in delta.items() if le != "+Inf")
    p99 = next((le for le, n in bounds if n >= 0.99 * total), float("inf"))
    within_5ms = delta.get("0.005", 0) / total if total else 0
    return {"requests": int(total), "p99_at_most_ms": p99 * 1000, "within_5ms": round(within_5ms, 4)}


def snapshot_ms(base, token):
    """Milliseconds from sending `GET /databases?watch=true` to the end of
    its snapshot event, read off a plain socket; and the databases in it."""
    import socket
    import urllib.parse
    url = urllib.parse.urlparse(base)
    with socket.create_connection((url.hostname, url.port)) as sock:
        started = time.monotonic()
        sock.sendall((f"GET {url.path}/databases?watch=true HTTP/1.1\r\nHost: bench\r\n"
                      f"Authorization: Bearer {token}\r\n\r\n").encode())
        buf = b""
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("the stream ended before its snapshot")
            buf += chunk
            at = buf.find(b"event: snapshot\ndata: ")
            if at >= 0 and buf.find(b"\n\n", at) >= 0:
                elapsed = (time.monotonic() - started) * 1000
                data = buf[at + len(b"event: snapshot\ndata: "):buf.find(b"\n\n", at)]
                return elapsed, len(json.loads(data)["items"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--transitions", type=int, default=100)
    ap.add_argument("--vus", type=int, default=8)
    ap.add_argument("--snapshots", type=int, default=21, help="watch streams opened to time their snapshot")
    ap.add_argument("--duration", default="30s")
    ap.add_argument("--binary", default="target/release/pgplane")
    ap.add_argument("--out", default=f"loadtests/results/{time.strftime('%Y-%m-%d')}")
    ap.add_argument("--report", default="kube-bench", help="name of the JSON and markdown files")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="pgplane-kube-bench-", dir="/tmp")
    kube = app = None
    load_start = os.getloadavg()
    try:
        kube = KubeServer(root)
        app = serve(os.path.abspath(args.binary), root, kube.kubeconfig)
        names = [f"db-{i:04d}" for i in range(args.clusters)]
        create_s = []
        for i, name in enumerate(names):
            started = time.monotonic()
            status, body = app.call("POST", "/databases", {
                "name": name, "instances": 3, "storage": "10Gi",
                "parameters": {"max_connections": "200", "work_mem": "8MB"},
                "labels": {"team": f"team-{i % 10}", "tier": "gold" if i % 3 == 0 else "silver"}})
            create_s.append(time.monotonic() - started)
            assert status == 202, body
        # CNPG brings them all up.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: kube.play_status(n, HEALTHY, 3, 3), names))
        deadline = time.monotonic() + 120
        while True:
            _, body = app.call("GET", f"/databases/{names[-1]}")
            if body["state"] == "healthy":
                break
            if time.monotonic() > deadline:
                raise SystemExit("the last database never became healthy")
            time.sleep(0.05)
        time.sleep(2)
        rss_synced = app.rss_kib()
        # The first snapshot of a watch stream, with every Cluster in it.
        snapshots = []
        for _ in range(args.snapshots):
            ms, n = snapshot_ms(app.base, app.token)
            assert n == args.clusters, f"a snapshot of {n} databases, not {args.clusters}"
            snapshots.append(ms)
        cursors = [""]
        status, page = app.call("GET", "/databases?limit=50")
        while page["next_cursor"]:
            cursors.append(page["next_cursor"])
            status, page = app.call("GET", f"/databases?limit=50&cursor={page['next_cursor']}")
        with open(os.path.join(root, "cursors.json"), "w") as f:
            json.dump(cursors, f)
        with open(os.path.join(root, "reads.js"), "w") as f:
            f.write(K6_SCRIPT)

        # Status changes keep the watch busy during the read load.
        stop = threading.Event()
        churn = {"writes": 0}

        def churner():
            rng = random.Random(1)
            while not stop.is_set():
                name = rng.choice(names[: args.clusters // 2])
                kube.play_status(name, rng.choice([HEALTHY, WAITING]), 3, 3)
                churn["writes"] += 1
                stop.wait(0.05)
        t = threading.Thread(target=churner)
        hist_before = server_histogram(app)
        t.start()
        summary = os.path.join(root, "k6-summary.json")
        k6 = subprocess.run(
            ["k6", "run", "--quiet", "--vus", str(args.vus), "--duration", args.duration,
             "--summary-export", summary, os.path.join(root, "reads.js")],
            env=dict(os.environ, BASE=app.base, TOKEN=app.token, CLUSTERS=str(args.clusters),
                     CURSORS=os.path.join(root, "cursors.json")),
            capture_output=True, text=True)
        stop.set()
        t.join()
        hist_after = server_histogram(app)
        with open(summary) as f:
            metrics = json.load(f)["metrics"]
        rss_loaded = app.rss_kib()

        # Transition latency, one database, alternating healthy and degraded.
        target = names[-1]
        latency = []
        state = "healthy"
        for _ in range(args.transitions):
            phase, want, ready = (WAITING, "degraded", 2) if state == "healthy" else (HEALTHY, "healthy", 3)
            written = now()
            kube.play_status(target, phase, ready, 3)
            deadline = time.monotonic() + 10
            while True:
                _, body = app.call("GET", f"/databases/{target}/events?limit=1")
                e = body["items"][0] if body["items"] else None
                if e and e["to"] == want and parse_ts(e["ts"]) >= written:
                    latency.append((parse_ts(e["ts"]) - written).total_seconds())
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"no {want} event for {target}")
                time.sleep(0.002)
            state = want
        rss_end = app.rss_kib()

        def trend(name):
            m = metrics[name]
            return {k: round(m[k], 3) for k in ("avg", "med", "p(90)", "p(99)", "max")}
        result = {
            "machine": {"cores": os.cpu_count(),
                        "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)]},
            "clusters": args.clusters,
            "create_ms": {"p50": round(pct(create_s, 50) * 1000, 1), "p99": round(pct(create_s, 99) * 1000, 1)},
            "rss_kib": {"synced_idle": rss_synced, "after_read_load": rss_loaded, "end": rss_end},
            "reads": {"vus": args.vus, "duration": args.duration,
                      "requests": metrics["http_reqs"]["count"],
                      "requests_per_s": round(metrics["http_reqs"]["rate"], 1),
                      "checks_failed": metrics["checks"]["fails"],
                      "status_writes_during_load": churn["writes"],
                      "get_ms": trend("http_req_duration{name:get}"),
                      "list_page_ms": trend("http_req_duration{name:list}"),
                      "server_side": {
                          "get": server_p99(hist_before, hist_after, "/api/v1/databases/{name}"),
                          "list_page": server_p99(hist_before, hist_after, "/api/v1/databases")}},
            "transition_ms": {"n": len(latency), "p50": round(pct(latency, 50) * 1000, 1),
                              "p99": round(pct(latency, 99) * 1000, 1),
                              "max": round(max(latency) * 1000, 1)},
            "watch_snapshot_ms": {"n": len(snapshots), "p50": round(pct(snapshots, 50), 1),
                                  "max": round(max(snapshots), 1)},
            "k6_exit": k6.returncode,
        }
        r = result
        lines = ["# Kubernetes backend: 1,000 Clusters, reads from the cache, transition latency", "",
                 f"`{' '.join(sys.argv)}` on {os.cpu_count()} cores ({args.binary}); kube-apiserver "
                 "v1.20.2 and etcd on the same machine; k6 on the same machine too. 1-minute load average "
                 f"{result['machine']['loadavg_1m_start_end'][0]} at the start, "
                 f"{result['machine']['loadavg_1m_start_end'][1]} at the end (the machine is shared).", "",
                 "| measure | p50 | p99 | max | goal |", "|---|---|---|---|---|",
                 f"| GET /databases/{{name}} ({args.vus} VUs) | {r['reads']['get_ms']['med']} ms | "
                 f"{r['reads']['get_ms']['p(99)']} ms | {r['reads']['get_ms']['max']} ms | <= 5 ms p99 |",
                 f"| GET /databases?limit=50 page ({args.vus} VUs) | {r['reads']['list_page_ms']['med']} ms | "
                 f"{r['reads']['list_page_ms']['p(99)']} ms | {r['reads']['list_page_ms']['max']} ms | <= 5 ms p99 |",
                 f"| status write -> service_event ({len(latency)} transitions) | {r['transition_ms']['p50']} ms | "
                 f"{r['transition_ms']['p99']} ms | {r['transition_ms']['max']} ms | < 1 s p99 |",
                 f"| watch=true: first snapshot of {args.clusters} databases, at the client ({len(snapshots)} streams) | "
                 f"{r['watch_snapshot_ms']['p50']} ms | | {r['watch_snapshot_ms']['max']} ms | <= 50 ms |",
                 f"| POST /databases (create, sequential) | {r['create_ms']['p50']} ms | {r['create_ms']['p99']} ms | | |",
                 "",
                 "pgplane's own histogram of the same requests (`pgplane_http_request_duration_seconds`, "
                 "server time from its middleware; buckets 0.5, 1, 2.5, 5, 10 ms): GET p99 at most "
                 f"{r['reads']['server_side']['get']['p99_at_most_ms']} ms "
                 f"({r['reads']['server_side']['get']['within_5ms'] * 100:.2f}% within 5 ms), list page p99 at most "
                 f"{r['reads']['server_side']['list_page']['p99_at_most_ms']} ms "
                 f"({r['reads']['server_side']['list_page']['within_5ms'] * 100:.2f}% within 5 ms).", "",
                 f"Reads: {r['reads']['requests']} requests ({r['reads']['requests_per_s']}/s), "
                 f"{r['reads']['checks_failed']} failed checks, while {churn['writes']} status writes "
                 "changed Clusters underneath (one every 50 ms).", "",
                 f"pgplane RSS with {args.clusters} Clusters in the cache: {rss_synced / 1024:.1f} MiB idle, "
                 f"{rss_loaded / 1024:.1f} MiB after the read load, {rss_end / 1024:.1f} MiB at the end "
                 "(goal <= 100 MB).", "",
                 "Latency of a transition: from just before the PATCH of the Cluster's status subresource "
                 "to the `ts` of the service_event pgplane recorded (both on this machine's clock)."]
        write_report(args.out, args.report, result, lines)
        if k6.returncode not in (0, 99):  # 99: a threshold was crossed (reported above)
            print(k6.stdout, k6.stderr)
            raise SystemExit(f"k6 failed ({k6.returncode})")
    finally:
        if app:
            app.stop()
        if kube:
            kube.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
