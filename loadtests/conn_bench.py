#!/usr/bin/env python3
"""Slow-header connections against a release pgplane: are they closed on
time, and what do they cost everyone else?

One pgplane (local backend, no databases, default PGPLANE_HEADER_TIMEOUT of
10 s unless --header-timeout). Rounds alternate two phases of the same
length, so both see the same machine:

- quiet: a client measures GET /healthz and an authenticated
  GET /api/v1/databases, one after the other on one keep-alive connection
  each, paced at --rate requests per second per route;
- slow: the same, while another process holds --slow connections that each
  sent `GET /healthz HTTP/1.1\r\nHost: x\r\n` and nothing more. The phase
  lasts until the last of them is closed, so the wave of 408s is inside
  the measured window. For each slow connection: when it was answered,
  whether the answer was `408` problem+json, when it was closed, all from
  its own connect.

Per phase, p50 and p99 of each route and the CPU time pgplane used. The
target is on the median over rounds of each round's ratio slow p99 /
quiet p99 (<= 2x): the two phases of a round are next to each other in
time, so load from neighbours on this shared machine, which comes and goes
over tens of seconds, mostly hits both or neither. The ratio of the
medians of all quiet and all slow p99s is reported beside it. Also
pgplane's open files during and after a slow phase (they must come back
down).

Usage: loadtests/conn_bench.py [--rounds N] [--slow N] [--rate R]
                               [--header-timeout S] [--binary PATH] [--out DIR]
Writes conn-bench.json and conn-bench.md into --out.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_bench import Pgplane, remove_root, write_report  # noqa: E402

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x):
    return round(x * 1000, 3)


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_s(pid):
    """User + system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hold_slow(port, n, deadline_s, ready, out):
    """In its own process: opens `n` connections, sends each a head that
    never ends, then waits until pgplane closes every one (or `deadline_s`
    passes). Sends back, per connection: seconds from its connect to the
    first byte answered and to the close, and the answer's first line and
    content type."""
    sel = selectors.DefaultSelector()
    conns = {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        started = time.monotonic()
        s.sendall(SLOW_HEAD)
        s.setblocking(False)
        conns[s] = {"connected": started, "answered": None, "closed": None, "data": b""}
        sel.register(s, selectors.EVENT_READ)
    ready.send(time.monotonic())
    until = time.monotonic() + deadline_s
    open_ = n
    while open_ and time.monotonic() < until:
        for key, _ in sel.select(timeout=0.5):
            s, c = key.fileobj, conns[key.fileobj]
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            now = time.monotonic()
            if chunk:
                c["data"] += chunk
                if c["answered"] is None:
                    c["answered"] = now
                continue
            c["closed"] = now
            sel.unregister(s)
            s.close()
            open_ -= 1
    results = []
    for s, c in conns.items():
        head = c["data"].split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        ctype = next((h.split(":", 1)[1].strip() for h in head[1:]
                      if h.lower().startswith("content-type:")), None)
        body = c["data"].split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in c["data"] else b""
        try:
            status = json.loads(body).get("status")
        except ValueError:
            status = None
        results.append({
            "closed_at": c["closed"],
            "answered_s": c["answered"] - c["connected"] if c["answered"] else None,
            "closed_s": c["closed"] - c["connected"] if c["closed"] else None,
            "status_line": head[0], "content_type": ctype, "body_status": status,
        })
        if c["closed"] is None:
            s.close()
    out.send(results)


class Route:
    """One route measured over its own keep-alive connection."""

    def __init__(self, port, path, token=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path = path
        self.headers = {"authorization": f"Bearer {token}"} if token else {}

    def get(self):
        """The request's latency, and when it started (time.monotonic)."""
        at = time.monotonic()
        started = time.perf_counter()
        self.conn.request("GET", self.path, headers=self.headers)
        r = self.conn.getresponse()
        r.read()
        elapsed = time.perf_counter() - started
        assert r.status == 200, (self.path, r.status)
        return at, elapsed


def measure(routes, rate, stop):
    """Each route at `rate` per second, in turn, until `stop()`. A request
    that is late starts at once (the pace is kept, not made up)."""
    samples = {name: [] for name in routes}
    gap = 1.0 / (rate * len(routes))
    next_at = time.perf_counter()
    while not stop():
        for name, route in routes.items():
            now = time.perf_counter()
            if next_at > now:
                time.sleep(next_at - now)
            next_at = max(next_at + gap, time.perf_counter() - gap)
            samples[name].append(route.get())
    return samples


def phase_stats(samples):
    stats = {}
    for name, timed in samples.items():
        xs = [latency for _, latency in timed]
        stats[name] = {"n": len(xs), "p50_ms": ms(pct(xs, 50)), "p99_ms": ms(pct(xs, 99)),
                       "max_ms": ms(max(xs))}
    return stats


def wave_stats(samples, conns):
    """The requests that started while the slow connections were being
    answered and closed (from 50 ms before the first close to 50 ms after
    the last): how many, and the slowest."""
    closes = [c["closed_at"] for c in conns if c["closed_at"] is not None]
    if not closes:
        return None
    start, end = min(closes) - 0.05, max(closes) + 0.05
    during = [latency for timed in samples.values() for at, latency in timed if start <= at <= end]
    return {"window_ms": ms(end - start), "requests": len(during),
            "max_ms": ms(max(during)) if during else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--rate", type=int, default=200, help="requests per second per route")
    ap.add_argument("--header-timeout", type=int, default=10)
    ap.add_argument("--binary", default="target/release/pgplane")
    ap.add_argument("--out", default=f"loadtests/results/{time.strftime('%Y-%m-%d')}")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="pgplane-conn-bench-", dir="/tmp")
    os.chmod(root, 0o711)
    app = None
    holders = []
    try:
        app = Pgplane(os.path.abspath(args.binary), root,
                      {"PGPLANE_HEADER_TIMEOUT": f"{args.header_timeout}s"})
        routes = {"GET /healthz": Route(app.port, "/healthz"),
                  "GET /api/v1/databases (token)": Route(app.port, "/api/v1/databases", app.token)}
        for route in routes.values():  # warm up: connections, caches
            for _ in range(200):
                route.get()
        files_idle = open_files(app.proc.pid)
        rounds = []
        for n in range(args.rounds):
            order = ("quiet", "slow") if n % 2 == 0 else ("slow", "quiet")
            result = {"loadavg_1m_at_start": round(os.getloadavg()[0], 2)}
            for phase in order:
                if phase == "quiet":
                    cpu_before = cpu_s(app.proc.pid)
                    until = time.monotonic() + args.header_timeout + 1
                    samples = measure(routes, args.rate, lambda: time.monotonic() > until)
                    result["quiet"] = phase_stats(samples)
                    result["quiet_pgplane_cpu_s"] = round(cpu_s(app.proc.pid) - cpu_before, 3)
                    continue
                ready_r, ready_w = multiprocessing.Pipe(duplex=False)
                out_r, out_w = multiprocessing.Pipe(duplex=False)
                holder = multiprocessing.Process(
                    target=hold_slow,
                    args=(app.port, args.slow, args.header_timeout + 30, ready_w, out_w))
                holders.append(holder)
                holder.start()
                ready_r.recv()  # all connected, each head sent
                files_held = open_files(app.proc.pid)
                cpu_before = cpu_s(app.proc.pid)
                samples = measure(routes, args.rate, out_r.poll)
                cpu_used = round(cpu_s(app.proc.pid) - cpu_before, 3)
                conns = out_r.recv()
                holder.join(10)
                wait_until = time.monotonic() + 5
                files_after = open_files(app.proc.pid)
                while files_after > files_idle and time.monotonic() < wait_until:
                    time.sleep(0.05)
                    files_after = open_files(app.proc.pid)
                closed = [c["closed_s"] for c in conns if c["closed_s"] is not None]
                answered = [c for c in conns if c["status_line"] == "HTTP/1.1 408 Request Timeout"
                            and c["content_type"] == "application/problem+json"
                            and c["body_status"] == 408]
                result["slow"] = phase_stats(samples)
                result["slow_pgplane_cpu_s"] = cpu_used
                result["during_the_408s"] = wave_stats(samples, conns)
                result["slow_connections"] = {
                    "opened": len(conns), "closed": len(closed),
                    "answered_408_problem_json": len(answered),
                    "closed_after_s_min": round(min(closed), 3) if closed else None,
                    "closed_after_s_median": round(statistics.median(closed), 3) if closed else None,
                    "closed_after_s_max": round(max(closed), 3) if closed else None,
                    "pgplane_open_files": {"before": files_idle, "held": files_held,
                                           "after": files_after},
                }
            rounds.append(result)
            print(json.dumps({"round": n + 1, **result}), flush=True)
        summary = {}
        for name in routes:
            q = [r["quiet"][name]["p99_ms"] for r in rounds]
            s = [r["slow"][name]["p99_ms"] for r in rounds]
            summary[name] = {
                "quiet_p50_ms": statistics.median(r["quiet"][name]["p50_ms"] for r in rounds),
                "slow_p50_ms": statistics.median(r["slow"][name]["p50_ms"] for r in rounds),
                "quiet_p99_ms": statistics.median(q), "slow_p99_ms": statistics.median(s),
                "ratio_p99_paired": round(statistics.median(b / a for a, b in zip(q, s)), 2),
                "ratio_p99_of_medians": round(statistics.median(s) / statistics.median(q), 2),
            }
        slow_all = [r["slow_connections"] for r in rounds]
        closed_max = max(c["closed_after_s_max"] or float("inf") for c in slow_all)
        every_closed = all(c["closed"] == c["opened"] == args.slow for c in slow_all)
        every_408 = all(c["answered_408_problem_json"] == args.slow for c in slow_all)
        files_back = all(c["pgplane_open_files"]["after"] <= files_idle for c in slow_all)
        load = os.getloadavg()
        result = {
            "command": " ".join(sys.argv),
            "machine": {"cores": os.cpu_count(), "loadavg_end": [round(x, 2) for x in load]},
            "settings": {"slow_connections": args.slow, "rate_per_route": args.rate,
                         "header_timeout_s": args.header_timeout, "rounds": args.rounds},
            "rounds": rounds, "summary": summary,
            "targets": {
                "every slow connection answered 408 problem+json and closed": every_closed and every_408,
                "closed within the header timeout (+1 s)": closed_max <= args.header_timeout + 1,
                "p99 of each route within 2x (median of the rounds' ratios)":
                    all(v["ratio_p99_paired"] <= 2 for v in summary.values()),
                "open files back to idle": files_back,
            },
        }
        lines = [
            "# Slow-header connections: closed on time, and their cost to other requests", "",
            f"`{result['command']}` on {os.cpu_count()} cores (load average at the end "
            f"{', '.join(str(x) for x in result['machine']['loadavg_end'])}): {args.rounds} rounds, "
            f"each a quiet and a slow phase (alternating which goes first) of about "
            f"{args.header_timeout + 1} s; {args.rate} req/s per route on one keep-alive "
            f"connection each; {args.slow} slow connections in the slow phase; "
            f"PGPLANE_HEADER_TIMEOUT={args.header_timeout}s.", "",
            "| route | p50 quiet | p50 slow | p99 quiet | p99 slow | p99 ratio, median of rounds (target <= 2x) | ratio of the medians |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in summary.items():
            lines.append(f"| {name} | {v['quiet_p50_ms']} ms | {v['slow_p50_ms']} ms | "
                         f"{v['quiet_p99_ms']} ms | {v['slow_p99_ms']} ms | "
                         f"**{v['ratio_p99_paired']}x** | {v['ratio_p99_of_medians']}x |")
        waves = [r["during_the_408s"] for r in rounds if r["during_the_408s"]]
        cpu_q = statistics.median(r["quiet_pgplane_cpu_s"] for r in rounds)
        cpu_s_ = statistics.median(r["slow_pgplane_cpu_s"] for r in rounds)
        lines += ["", "(p50 and p99: medians over the rounds of each phase's own)", "",
                  f"pgplane's CPU per phase, median: {cpu_q} s quiet, {cpu_s_} s slow. " + (
                      f"While the {args.slow} slow connections were answered and closed (a window of "
                      f"{statistics.median(w['window_ms'] for w in waves)} ms, median), "
                      f"{statistics.median(w['requests'] for w in waves)} measured requests started "
                      f"(median per round); the slowest of them took "
                      f"{statistics.median(w['max_ms'] for w in waves if w['max_ms'] is not None)} ms "
                      f"(median per round; worst "
                      f"{max(w['max_ms'] for w in waves if w['max_ms'] is not None)} ms)."
                      if waves else "No slow connection was closed by pgplane."), "",
                  "| round | load 1m | first | p99 quiet / slow, each route (ms) | pgplane CPU quiet / slow | "
                  "slow connections closed | answered 408 problem+json | closed after (min / median / max) | "
                  "pgplane open files before / held / after |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for i, (r, c) in enumerate(zip(rounds, slow_all), 1):
            f = c["pgplane_open_files"]
            p99s = "; ".join(f"{r['quiet'][name]['p99_ms']} / {r['slow'][name]['p99_ms']}" for name in routes)
            first = "quiet" if i % 2 == 1 else "slow"
            lines.append(f"| {i} | {r['loadavg_1m_at_start']} | {first} | {p99s} | {r['quiet_pgplane_cpu_s']} / {r['slow_pgplane_cpu_s']} s | "
                         f"{c['closed']} / {c['opened']} | {c['answered_408_problem_json']} | "
                         f"{c['closed_after_s_min']} / {c['closed_after_s_median']} / {c['closed_after_s_max']} s | "
                         f"{f['before']} / {f['held']} / {f['after']} |")
        lines += ["", "| target | met |", "|---|---|"]
        lines += [f"| {k} | {'yes' if v else 'no'} |" for k, v in result["targets"].items()]
        write_report(args.out, "conn-bench", result, lines)
        if not all(result["targets"].values()):
            sys.exit(1)
    finally:
        for h in holders:
            if h.is_alive():
                h.kill()
        if app:
            app.stop()
        remove_root(root)


if __name__ == "__main__":
    main()
