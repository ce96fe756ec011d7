#!/usr/bin/env python3
"""The CLI's own cost, side by side with the API in the same run.

1. Create -> healthy, 2 instances (local backend, real PostgreSQL):
   `pgplane db create NAME --instances 2 --wait` timed from its start to its
   exit, against the same create made at the API by a client that POSTs and
   then reads the `watch=true` stream until the database is healthy (no
   polling either side), alternating which goes first, --runs times each.
   The server's own figure is reported too: the `ts` of the creating ->
   healthy service event less the database's `created_at`.
2. `pgplane db list -o json` of --databases databases (kubernetes backend
   against a real kube-apiserver from ../shared/testbin, where 500
   databases cost no servers), timed from start to exit, against one
   `GET /databases?limit=500` from this script.

Usage: loadtests/cli_bench.py [--runs 7] [--databases 500] [--lists 21]
       [--binary target/release/pgplane] [--out DIR] [--report cli-bench]
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_bench import Pgplane, remove_root, write_report  # noqa: E402
from kube_bench import KubeServer, parse_ts, serve as serve_kube  # noqa: E402


def cli_env(config_dir, app):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPLANE_")}
    env.update(XDG_CONFIG_HOME=config_dir,
               PGPLANE_SERVER=app.base.rsplit("/api/v1", 1)[0],
               PGPLANE_TOKEN=app.token)
    return env


def api_create_wait(app, name, instances):
    """POST, then the watch stream until `name` is healthy: seconds."""
    host, port = "127.0.0.1", app.port
    started = time.monotonic()
    status, body = app.call("POST", "/databases", {"name": name, "instances": instances})
    assert status == 202, body
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request("GET", "/api/v1/databases?watch=true",
                 headers={"authorization": f"Bearer {app.token}", "accept": "text/event-stream"})
    r = conn.getresponse()
    assert r.status == 200, r.status
    data = []
    while True:
        line = r.fp.readline().decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line or not data:
            continue
        event = json.loads("\n".join(data))
        data = []
        items = event.get("items", [event])
        for db in items:
            if db.get("name") != name:
                continue
            if db["state"] == "failed":
                raise SystemExit(f"{name} failed: {db}")
            if db["state"] == "healthy" and db["ready_instances"] >= instances:
                elapsed = time.monotonic() - started
                conn.close()
                return elapsed


def cli_create_wait(binary, env, name, instances):
    started = time.monotonic()
    out = subprocess.run([binary, "db", "create", name, "--instances", str(instances),
                          "--wait", "-o", "json"], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"pgplane db create {name}: exit {out.returncode}: {out.stderr}")
    db = json.loads(out.stdout)
    assert db["state"] == "healthy" and db["ready_instances"] == instances, db
    return elapsed


def server_seconds(app, name):
    """created_at to the `ts` of the creating -> healthy event, as pgplane recorded them."""
    _, db = app.call("GET", f"/databases/{name}")
    _, events = app.call("GET", f"/databases/{name}/events")
    healthy = [e for e in events["items"] if e["from"] == "creating" and e["to"] == "healthy"]
    return (parse_ts(healthy[-1]["ts"]) - parse_ts(db["created_at"])).total_seconds()


def med(xs):
    return round(statistics.median(xs), 4)


def create_part(binary, runs, root):
    app = Pgplane(binary, root)
    try:
        env = cli_env(os.path.join(root, "config"), app)
        api, cli, server_api, server_cli = [], [], [], []
        # One of each first, not measured: the first initdb reads the binaries from disk.
        api_create_wait(app, "warm-api", 2)
        cli_create_wait(binary, env, "warm-cli", 2)
        for name in ("warm-api", "warm-cli"):
            app.delete(name)
        for i in range(runs):
            order = ["api", "cli"] if i % 2 == 0 else ["cli", "api"]
            for side in order:
                name = f"{side}-{i}"
                if side == "api":
                    api.append(api_create_wait(app, name, 2))
                    server_api.append(server_seconds(app, name))
                else:
                    cli.append(cli_create_wait(binary, env, name, 2))
                    server_cli.append(server_seconds(app, name))
                app.delete(name)
        # What each client adds to the server's own time, run by run: the
        # machine's noise moves both together, so this is the steadier figure.
        over_api = [a - s for a, s in zip(api, server_api)]
        over_cli = [c - s for c, s in zip(cli, server_cli)]
        return {"api_s": api, "cli_s": cli, "server_api_s": server_api, "server_cli_s": server_cli,
                "overhead_api_s": over_api, "overhead_cli_s": over_cli,
                "ratio": round(med(cli) / med(api), 3),
                "ratio_same_server_time": round((med(server_cli) + med(over_cli))
                                                / (med(server_cli) + med(over_api)), 4)}
    finally:
        app.stop()


def list_part(binary, databases, lists, root):
    kube = app = None
    try:
        kube = KubeServer(root)
        app = serve_kube(binary, root, kube.kubeconfig)
        for i in range(databases):
            status, body = app.call("POST", "/databases", {
                "name": f"db-{i:04d}", "instances": 1,
                "labels": {"team": f"team-{i % 10}"}, "parameters": {"work_mem": "8MB"}})
            assert status == 202, body
        deadline = time.monotonic() + 60
        while True:
            _, page = app.call("GET", "/databases?limit=500")
            if len(page["items"]) == databases:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the cache never held every database")
            time.sleep(0.1)
        env = cli_env(os.path.join(root, "config"), app)
        api, cli_json, cli_table = [], [], []
        for i in range(lists):
            started = time.monotonic()
            status, page = app.call("GET", "/databases?limit=500")
            api.append(time.monotonic() - started)
            assert len(page["items"]) == databases
            started = time.monotonic()
            out = subprocess.run([binary, "db", "list", "-o", "json"], env=env, capture_output=True)
            cli_json.append(time.monotonic() - started)
            assert out.returncode == 0, out.stderr
            assert len(json.loads(out.stdout)["items"]) == databases
            started = time.monotonic()
            out = subprocess.run([binary, "db", "list"], env=env, capture_output=True)
            cli_table.append(time.monotonic() - started)
            assert out.returncode == 0 and out.stdout.count(b"\n") == databases + 1, out.stderr
        return {"api_s": api, "cli_json_s": cli_json, "cli_table_s": cli_table}
    finally:
        if app:
            app.stop()
        if kube:
            kube.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--databases", type=int, default=500)
    ap.add_argument("--lists", type=int, default=21)
    ap.add_argument("--binary", default="target/release/pgplane")
    ap.add_argument("--out", default=f"loadtests/results/{time.strftime('%Y-%m-%d')}")
    ap.add_argument("--report", default="cli-bench")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    os.makedirs(args.out, exist_ok=True)
    result = {"command": " ".join(["loadtests/cli_bench.py"] + sys.argv[1:]),
              "load_before": os.getloadavg()}
    root = tempfile.mkdtemp(prefix="pgplane-cli-bench-", dir="/tmp")
    os.chmod(root, 0o711)  # the PostgreSQL account must reach the data directory
    try:
        os.makedirs(os.path.join(root, "local"))
        result["create"] = create_part(binary, args.runs, os.path.join(root, "local"))
    finally:
        remove_root(os.path.join(root, "local"))
    kube_root = os.path.join(root, "kube")
    os.makedirs(kube_root, exist_ok=True)
    try:
        result["list"] = list_part(binary, args.databases, args.lists, kube_root)
    finally:
        remove_root(root)
    c, l = result["create"], result["list"]
    ms = lambda xs: f"{med(xs) * 1000:.1f} ms"  # noqa: E731
    p95 = lambda xs: sorted(xs)[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]  # noqa: E731
    lines = [
        f"# CLI bench ({time.strftime('%Y-%m-%d %H:%M')})", "",
        f"Command: `{result['command']}`; load average before: {result['load_before'][0]:.2f}", "",
        f"## `pgplane db create NAME --instances 2 --wait` against the API ({args.runs} runs each, alternating)", "",
        "| | median | min | max |", "|---|---|---|---|",
        f"| API: POST, then the watch stream until healthy | {ms(c['api_s'])} | {min(c['api_s'])*1000:.1f} ms | {max(c['api_s'])*1000:.1f} ms |",
        f"| CLI: process start to exit | {ms(c['cli_s'])} | {min(c['cli_s'])*1000:.1f} ms | {max(c['cli_s'])*1000:.1f} ms |",
        f"| server's own record (created_at to the healthy event), API runs | {ms(c['server_api_s'])} | | |",
        f"| server's own record, CLI runs | {ms(c['server_cli_s'])} | | |",
        f"| what the API client adds to the server's time, per run | {ms(c['overhead_api_s'])} | {min(c['overhead_api_s'])*1000:.1f} ms | {max(c['overhead_api_s'])*1000:.1f} ms |",
        f"| what the CLI adds to the server's time, per run | {ms(c['overhead_cli_s'])} | {min(c['overhead_cli_s'])*1000:.1f} ms | {max(c['overhead_cli_s'])*1000:.1f} ms |",
        "", f"CLI / API, medians of the wall times: **{c['ratio']}×**; for the same server time "
        f"(the CLI's overhead against the API client's): **{c['ratio_same_server_time']}×** (target ≤ 1.05×)", "",
        f"## `pgplane db list -o json` of {args.databases} databases ({args.lists} runs)", "",
        "| | median | p95 | max |", "|---|---|---|---|",
        f"| `GET /databases?limit=500` from this script | {ms(l['api_s'])} | {p95(l['api_s'])*1000:.1f} ms | {max(l['api_s'])*1000:.1f} ms |",
        f"| `pgplane db list -o json`, process start to exit | {ms(l['cli_json_s'])} | {p95(l['cli_json_s'])*1000:.1f} ms | {max(l['cli_json_s'])*1000:.1f} ms |",
        f"| `pgplane db list` (table) | {ms(l['cli_table_s'])} | {p95(l['cli_table_s'])*1000:.1f} ms | {max(l['cli_table_s'])*1000:.1f} ms |",
        "", "Target: `db list -o json` of 500 ≤ 100 ms.",
    ]
    write_report(args.out, args.report, result, lines)


if __name__ == "__main__":
    main()
