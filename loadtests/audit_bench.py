#!/usr/bin/env python3
"""The audit trail's cost, on the local store.

1. Its share of a create's latency: POST /databases answered by a pgplane
   whose audit store is the local journal (write ahead + fdatasync), against
   one whose audit store is Loki (the write ahead is a no-op there; the URL
   points nowhere, and nothing needs it for a create), alternating create by
   create so both see the same machine. Also against create -> healthy.
2. Query latency over 10,000 records: a journal of 10,000 records (100
   databases, 20 actors, every action) is written before pgplane starts; then
   each kind of query is asked 200 times over one keep-alive connection.

Usage: loadtests/audit_bench.py [--creates N] [--binary PATH] [--out DIR]
Writes audit-bench.json and audit-bench.md into --out.
"""

import argparse
import datetime
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_bench import Pgplane, remove_root, write_report  # noqa: E402

ACTIONS = ["auth.login", "auth.login_failed", "database.create", "database.update",
           "database.delete", "database.credentials_read"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x):
    return round(x * 1000, 2)


def create_share(binary, root, n):
    for d in ("local", "noop"):
        os.makedirs(os.path.join(root, d), mode=0o711)
    os.chmod(root, 0o711)
    local = Pgplane(binary, os.path.join(root, "local"))
    noop = Pgplane(binary, os.path.join(root, "noop"), {
        "PGPLANE_AUDIT_STORE": "loki", "PGPLANE_LOKI_URL": "http://127.0.0.1:9"})
    answer = {"local": [], "noop": []}
    healthy = {"local": [], "noop": []}
    try:
        for i in range(n):
            for name, p in (("local", local), ("noop", noop)) if i % 2 == 0 else (("noop", noop), ("local", local)):
                db = f"c{i}"
                started = time.monotonic()
                status, body = p.call("POST", "/databases", {"name": db, "instances": 1})
                answer[name].append(time.monotonic() - started)
                assert status == 202, body
                p.wait(db, lambda s, b: b and b.get("state") == "healthy")
                healthy[name].append(time.monotonic() - started)
        for p in (local, noop):
            for i in range(n):
                p.call("DELETE", f"/databases/c{i}")
            for i in range(n):
                p.wait(f"c{i}", lambda s, b: s == 404)
    finally:
        local.stop()
        noop.stop()
    a_local, a_noop = statistics.median(answer["local"]), statistics.median(answer["noop"])
    h_local = statistics.median(healthy["local"])
    write = max(0.0, a_local - a_noop)
    return {
        "creates_per_store": n,
        "answer_p50_ms": {"local": ms(a_local), "no_audit_write": ms(a_noop)},
        "answer_p99_ms": {"local": ms(pct(answer["local"], 99)), "no_audit_write": ms(pct(answer["noop"], 99))},
        "create_to_healthy_p50_s": round(h_local, 3),
        "audit_write_p50_ms": ms(write),
        "share_of_answer_p50": round(write / a_local, 3),
        "share_of_create_to_healthy_p50": round(write / h_local, 5),
    }


def synthetic_journal(path, n):
    now = datetime.datetime.now(datetime.timezone.utc)
    with open(path, "w") as f:
        for i in range(n):
            ts = now - datetime.timedelta(seconds=(n - i))
            action = ACTIONS[i % len(ACTIONS)]
            r = {"ts": ts.isoformat().replace("+00:00", "Z"), "log_type": "audit", "id": str(uuid.uuid4()),
                 "request_id": str(uuid.uuid4()), "actor": f"user-{i % 20:02d}", "role": "editor",
                 "action": action, "outcome": "success", "status": 202, "source_ip": "10.0.0.7"}
            if action.startswith("database."):
                r["database"] = f"db-{i % 100:03d}"
            if action == "database.update":
                r["changes"] = {"instances": [1, 2]}
            f.write(json.dumps(r) + "\n")
    return now


def query_latency(binary, root, n):
    os.makedirs(os.path.join(root, "data"), mode=0o711)
    os.chmod(root, 0o711)
    now = synthetic_journal(os.path.join(root, "data", "audit.jsonl"), n)
    p = Pgplane(binary, root)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", p.port)
        headers = {"authorization": f"Bearer {p.token}"}

        def get(path):
            conn.request("GET", "/api/v1" + path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (path, r.status, body[:300])
            return json.loads(body)

        deep = None
        path = "/audit?limit=100"
        for _ in range(50):
            deep = get(path)["next_cursor"]
            path = f"/audit?limit=100&cursor={deep}"
        since = (now - datetime.timedelta(seconds=n // 2)).isoformat().replace("+00:00", "Z")
        until = (now - datetime.timedelta(seconds=n // 4)).isoformat().replace("+00:00", "Z")
        queries = {
            "newest page of 100": "/audit?limit=100",
            "one database (indexed)": "/audit?database=db-042&limit=100",
            "actor and action (scan)": "/audit?actor=user-07&action=database.update&limit=100",
            "no match (full scan)": "/audit?actor=nobody&limit=100",
            "page 51 by cursor": f"/audit?limit=100&cursor={deep}",
            "per-database route, time window": f"/databases/db-042/audit?since={since}&until={until}",
            "largest page (1000)": "/audit?limit=1000",
        }
        out = {}
        for label, q in queries.items():
            times = []
            for _ in range(200):
                t = time.perf_counter()
                page = get(q)
                times.append(time.perf_counter() - t)
            out[label] = {"items": len(page["items"]), "p50_ms": ms(pct(times, 50)), "p99_ms": ms(pct(times, 99))}
        return {"records": n, "requests_per_query": 200, "queries": out}
    finally:
        p.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=15)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--binary", default="target/release/pgplane")
    ap.add_argument("--out", default=os.path.join("loadtests", "results", time.strftime("%Y-%m-%d")))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="pgplane-audit-bench-", dir="/tmp")
    os.chmod(root, 0o711)
    try:
        share = create_share(args.binary, os.path.join(root, "share"), args.creates)
        query = query_latency(args.binary, os.path.join(root, "query"), args.records)
    finally:
        remove_root(root)
    result = {"create": share, "query": query, "load_average": os.getloadavg()}
    lines = [
        "# Audit trail cost (local store)",
        "",
        f"Machine load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        f"## Share of a create ({share['creates_per_store']} creates per store, alternating)",
        "",
        "| | local journal | no audit write |",
        "|---|---|---|",
        f"| POST /databases p50 | {share['answer_p50_ms']['local']} ms | {share['answer_p50_ms']['no_audit_write']} ms |",
        f"| POST /databases p99 | {share['answer_p99_ms']['local']} ms | {share['answer_p99_ms']['no_audit_write']} ms |",
        "",
        f"Audit write p50: **{share['audit_write_p50_ms']} ms**, "
        f"**{share['share_of_answer_p50'] * 100:.1f}%** of the answer's p50 and "
        f"{share['share_of_create_to_healthy_p50'] * 100:.2f}% of create -> healthy "
        f"({share['create_to_healthy_p50_s']} s).",
        "",
        f"## Queries over {query['records']:,} records ({query['requests_per_query']} each, keep-alive)",
        "",
        "| query | items | p50 | p99 |",
        "|---|---|---|---|",
    ] + [f"| {k} | {v['items']} | {v['p50_ms']} ms | {v['p99_ms']} ms |" for k, v in query["queries"].items()]
    write_report(args.out, "audit-bench", result, lines)


if __name__ == "__main__":
    main()
