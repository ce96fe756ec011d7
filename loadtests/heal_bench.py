#!/usr/bin/env python3
"""How fast the local watcher sees and heals failures, on real PostgreSQL.

- detection: SIGKILL of a standby's postmaster -> the `degraded` service
  event's timestamp (both on this machine's clock), over --kills kills;
- heal: the same kill -> the following `healthy` event;
- failover: SIGKILL of the primary plus removal of its data directory ->
  `healthy` again with the standby promoted and the old primary rebuilt.

Usage: loadtests/heal_bench.py [--kills N] [--binary PATH] [--out DIR]
Writes heal-bench.json and heal-bench.md into --out.
"""

import argparse
import datetime
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_bench import Pgplane, remove_root, write_report  # noqa: E402  (same way of running pgplane)


def parse_ts(s):
    # RFC 3339 with nanoseconds: keep microseconds for datetime.
    head, frac = s.rstrip("Z").split(".")
    return datetime.datetime.fromisoformat(f"{head}.{frac[:6]}+00:00")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def postmaster(root, db, ordinal):
    path = os.path.join(root, "data", "databases", db, f"{db}-{ordinal}", "pgdata")
    with open(os.path.join(path, "postmaster.pid")) as f:
        return int(f.readline()), path


def wait_event(app, db, to, after, deadline_s=120):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        _, body = app.call("GET", f"/databases/{db}/events?limit=50")
        for e in body["items"]:
            if e["to"] == to and parse_ts(e["ts"]) >= after:
                return e
        time.sleep(0.005)
    raise SystemExit(f"no {to} event for {db}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--binary", default="target/release/pgplane")
    ap.add_argument("--out", default=f"loadtests/results/{time.strftime('%Y-%m-%d')}")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="pgplane-heal-", dir="/tmp")
    os.chmod(root, 0o711)
    app = None
    try:
        app = Pgplane(os.path.abspath(args.binary), root)
        app.create("heal", 2)
        detect, heal = [], []
        for _ in range(args.kills):
            pid, _ = postmaster(root, "heal", 2)
            killed = now()
            os.kill(pid, signal.SIGKILL)
            degraded = wait_event(app, "heal", "degraded", killed)
            healthy = wait_event(app, "heal", "healthy", parse_ts(degraded["ts"]))
            detect.append((parse_ts(degraded["ts"]) - killed).total_seconds())
            heal.append((parse_ts(healthy["ts"]) - killed).total_seconds())
        failover = []
        for _ in range(args.failovers):
            _, body = app.call("GET", "/databases/heal")
            primary = int(body["primary"].rsplit("-", 1)[1])
            pid, pgdata = postmaster(root, "heal", primary)
            killed = now()
            os.kill(pid, signal.SIGKILL)
            shutil.rmtree(pgdata)
            fo = wait_event(app, "heal", "failing_over", killed)
            healthy = wait_event(app, "heal", "healthy", parse_ts(fo["ts"]))
            failover.append((parse_ts(healthy["ts"]) - killed).total_seconds())
        app.delete("heal")

        def stats(xs):
            return {"n": len(xs), "p50_ms": round(pct(xs, 50) * 1000, 1),
                    "p99_ms": round(pct(xs, 99) * 1000, 1), "max_ms": round(max(xs) * 1000, 1),
                    "mean_ms": round(statistics.mean(xs) * 1000, 1)}
        result = {"detection": stats(detect), "standby_kill_to_healthy": stats(heal),
                  "failover_kill_to_healthy": stats(failover)}
        lines = ["# Watcher: detection, healing and failover (local backend)", "",
                 f"`{' '.join(sys.argv)}` on {os.cpu_count()} cores, release build.", "",
                 "| measure | n | p50 | p99 | max | goal |", "|---|---|---|---|---|---|"]
        goals = {"detection": "< 1 s (the Go reference polls every 15 s)",
                 "standby_kill_to_healthy": "", "failover_kill_to_healthy": ""}
        for k, v in result.items():
            lines.append(f"| {k.replace('_', ' ')} | {v['n']} | {v['p50_ms']} ms | {v['p99_ms']} ms | "
                         f"{v['max_ms']} ms | {goals[k]} |")
        lines += ["", "Failover: SIGKILL of the primary and removal of its data directory, until "
                      "`healthy` with the standby promoted and the old primary rebuilt as a standby."]
        write_report(args.out, "heal-bench", result, lines)
    finally:
        if app:
            app.stop()
        remove_root(root)


if __name__ == "__main__":
    main()
