#!/usr/bin/env python3
"""Change streams at scale on the local backend (real PostgreSQL):
--streams concurrent `GET /databases?watch=true` streams, held by
--procs client processes (asyncio, raw HTTP/1.1).

- delivery latency: --changes label PATCHes of one database, one every
  --gap seconds; each stream's arrival of the `changed` event carrying the
  new label, minus the database's `updated_at` in the PATCH answer (the
  moment pgplane recorded the change, same machine clock);
- pgplane's RSS (VmRSS) before the streams, with all of them open, and
  after the changes;
- pgplane's CPU (utime+stime) over --idle seconds with no changes, before
  the streams are opened and with all of them open.

Usage: loadtests/stream_bench.py [--streams N] [--procs P] [--changes K]
       [--binary PATH] [--out DIR] [--report NAME]
"""

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_bench import Pgplane, write_report  # noqa: E402
from kube_bench import parse_ts, pct  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME = re.compile(rb"event: (\w+)\ndata: (.*?)\n\n", re.S)
BENCH_LABEL = re.compile(rb'"bench":"(\d+)"')
TICK = os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def hold(port, token, n, opened, results, stop):
    """Opens n streams; records (label value, arrival) of each changed event."""
    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET /api/v1/databases?watch=true HTTP/1.1\r\nHost: bench\r\n"
                      f"Authorization: Bearer {token}\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0], head
        buf = b""
        snapshot = False
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            arrived = time.time()
            buf += chunk
            end = 0
            for m in FRAME.finditer(buf):
                end = m.end()
                if m.group(1) == b"snapshot" and not snapshot:
                    snapshot = True
                    opened.put(1)
                elif m.group(1) == b"changed":
                    # A regex, not a JSON parse: the client's own work per
                    # event is kept small, since it counts in the latency.
                    label = BENCH_LABEL.search(m.group(2))
                    results.append((label and label.group(1).decode(), arrived))
            buf = buf[end:]
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()


def worker(port, token, n, opened, stop, out):
    results = []
    try:
        asyncio.run(hold(port, token, n, opened, results, stop))
    finally:
        out.put(results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.5)
    ap.add_argument("--idle", type=float, default=20)
    ap.add_argument("--binary", default=os.path.join(REPO, "target/release/pgplane"))
    ap.add_argument("--out", default=os.path.join(REPO, "loadtests/results",
                                                  datetime.date.today().isoformat()))
    ap.add_argument("--report", default="stream-bench")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="pgplane-stream-bench.", dir="/tmp")
    os.chmod(root, 0o711)
    pg = Pgplane(args.binary, root, {"PGPLANE_MAX_STREAMS": str(args.streams + 10)})
    procs = []
    try:
        pg.create("watched", 1)
        # Let the creation's work settle before measuring.
        time.sleep(3)
        c0, t0 = cpu_s(pg.proc.pid), time.monotonic()
        time.sleep(args.idle)
        idle_before = (cpu_s(pg.proc.pid) - c0) / (time.monotonic() - t0)
        rss_before = rss_kb(pg.proc.pid)

        opened, out = multiprocessing.Queue(), multiprocessing.Queue()
        stop = multiprocessing.Event()
        per = [args.streams // args.procs + (i < args.streams % args.procs) for i in range(args.procs)]
        for n in per:
            p = multiprocessing.Process(target=worker, args=(pg.port, pg.token, n, opened, stop, out))
            p.start()
            procs.append(p)
        started = time.monotonic()
        for _ in range(args.streams):
            opened.get(timeout=120)
        open_s = time.monotonic() - started
        time.sleep(2)
        rss_open = rss_kb(pg.proc.pid)
        c0, t0 = cpu_s(pg.proc.pid), time.monotonic()
        time.sleep(args.idle)
        idle_open = (cpu_s(pg.proc.pid) - c0) / (time.monotonic() - t0)

        recorded = {}
        for i in range(args.changes):
            req_body = {"labels": {"bench": str(i)}}
            req = urllib.request.Request(pg.base + "/databases/watched", method="PATCH",
                                         data=json.dumps(req_body).encode())
            req.add_header("content-type", "application/merge-patch+json")
            req.add_header("authorization", f"Bearer {pg.token}")
            with urllib.request.urlopen(req, timeout=30) as r:
                body = json.loads(r.read())
            recorded[str(i)] = parse_ts(body["updated_at"]).timestamp()
            time.sleep(args.gap)
        time.sleep(2)
        rss_after = rss_kb(pg.proc.pid)
        stop.set()
        arrivals = []
        for _ in procs:
            arrivals.extend(out.get(timeout=60))
        for p in procs:
            p.join(timeout=30)
        lat_ms = [(at - recorded[v]) * 1000 for v, at in arrivals if v in recorded]
        expected = args.changes * args.streams
        result = {
            "command": "loadtests/stream_bench.py " + " ".join(sys.argv[1:]),
            "streams": args.streams, "changes": args.changes,
            "deliveries": len(lat_ms), "expected_deliveries": expected,
            "open_all_s": round(open_s, 2),
            "latency_ms": {"p50": round(pct(lat_ms, 50), 1), "p99": round(pct(lat_ms, 99), 1),
                           "max": round(max(lat_ms), 1)},
            "rss_mb": {"before": round(rss_before / 1024, 1), "open": round(rss_open / 1024, 1),
                       "after_changes": round(rss_after / 1024, 1),
                       "growth_open": round((rss_open - rss_before) / 1024, 1),
                       "growth_after": round((rss_after - rss_before) / 1024, 1)},
            "idle_cpu_share": {"no_streams": round(idle_before, 4), "streams_open": round(idle_open, 4)},
        }
        lines = [f"# Change streams: {args.streams} watch=true streams, local backend",
                 "", f"Command: `{result['command']}`", "",
                 "| measure | value | target |", "|---|---|---|",
                 f"| changes delivered | {len(lat_ms)} of {expected} | all |",
                 f"| delivery latency p50 / p99 / max | {result['latency_ms']['p50']} / "
                 f"**{result['latency_ms']['p99']}** / {result['latency_ms']['max']} ms | p99 ≤ 100 ms |",
                 f"| pgplane RSS before / open / after changes | {result['rss_mb']['before']} / "
                 f"{result['rss_mb']['open']} / {result['rss_mb']['after_changes']} MB "
                 f"(growth **{result['rss_mb']['growth_open']}** / {result['rss_mb']['growth_after']} MB) | ≤ 30 MB |",
                 f"| pgplane CPU with no changes, share of a core: no streams / streams open | "
                 f"{result['idle_cpu_share']['no_streams']} / {result['idle_cpu_share']['streams_open']} | "
                 "no more than keep-alives |",
                 f"| all streams open in | {result['open_all_s']} s | |"]
        write_report(args.out, args.report, result, lines)
    finally:
        stop_all = [p for p in procs if p.is_alive()]
        for p in stop_all:
            p.terminate()
        pg.call("DELETE", "/databases/watched")
        try:
            pg.wait("watched", lambda s, b: s == 404, 60)
        except SystemExit:
            pass
        pg.proc.terminate()
        pg.proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
