#!/usr/bin/env python3
"""What idle databases cost on the local backend: the CPU time of pgplane
(its watcher) and of the PostgreSQL servers over a window in which nothing
is asked of them, for one or more pgplane binaries, alternating.

  idle_cost.py [--databases 20] [--instances 1] [--rounds 3] [--window 20] BIN...

One data directory under /tmp is seeded once (by the first binary) and
left to settle (--warmup); then, round after round, each binary in turn
(every other round in the reverse order) serves it (the servers outlive
pgplane and are adopted), and once every database is healthy and a few
seconds have passed, utime+stime are read from /proc at the start and end of
the window: pgplane's own, and the servers' (each postmaster with its
reaped children, cutime+cstime, plus its live children). Prints each
measurement and the median per binary, in CPU seconds per window and
percent of one core. Everything it started is stopped at the end, also on
failure: the databases are deleted through the API, then any postmaster
left under the data directory is stopped by the pid in its pid file.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
PASSWORD = "idle-" + os.urandom(8).hex()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, token=None, body=None):
    req = urllib.request.Request(base + "/api/v1" + path, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def until(what, check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise SystemExit(f"idle_cost.py: {what} not within {seconds} s")


class Served:
    """One pgplane serving the data directory."""

    def __init__(self, binary, data, max_instances):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ,
                   PGPLANE_DATA_DIR=data, PGPLANE_LISTEN=f"127.0.0.1:{self.port}",
                   PGPLANE_ADMIN_PASSWORD=PASSWORD, PGPLANE_MAX_INSTANCES=str(max_instances),
                   PGPLANE_LOG_FORMAT="json")
        self.log = open(os.path.join(os.path.dirname(data), "pgplane.log"), "a")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log, stderr=self.log)
        until("pgplane up", self.up, 30)
        self.token = until("login", self.login, 30)

    def up(self):
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as res:
                return res.status == 200
        except OSError:
            return False

    def login(self):
        status, body = call(self.base, "POST", "/auth/login",
                            body={"username": "admin", "password": PASSWORD})
        return body["access_token"] if status == 200 else None

    def states(self):
        _, page = call(self.base, "GET", "/databases?limit=500", self.token)
        return {d["name"]: d["state"] for d in page["items"]}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def postmasters(data):
    pids = []
    for root, _, files in os.walk(os.path.join(data, "databases")):
        if "postmaster.pid" in files:
            try:
                with open(os.path.join(root, "postmaster.pid")) as f:
                    pid = int(f.readline())
                os.kill(pid, 0)
                pids.append(pid)
            except (OSError, ValueError):
                pass
    return pids


def stat(pid):
    """(utime+stime, cutime+cstime, ppid) in seconds, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / TICK
    reaped = (int(fields[13]) + int(fields[14])) / TICK
    return own, reaped, ppid


def servers_cpu(data):
    masters = set(postmasters(data))
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        s = stat(int(entry))
        if s is None:
            continue
        own, reaped, ppid = s
        if int(entry) in masters:
            total += own + reaped
        elif ppid in masters:
            total += own
    return total


def measure(served, data, window):
    p0, s0 = stat(served.proc.pid)[0], servers_cpu(data)
    time.sleep(window)
    p1, s1 = stat(served.proc.pid)[0], servers_cpu(data)
    return p1 - p0, s1 - s0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--databases", type=int, default=20)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=20)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=30)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pgplane-idle.", dir="/tmp")
    os.chmod(work, 0o711)
    data = os.path.join(work, "data")
    names = [f"idle-{i:02d}" for i in range(args.databases)]
    wanted = args.databases * args.instances + 4
    results = {b: [] for b in args.binaries}
    served = None
    try:
        served = Served(args.binaries[0], data, wanted)
        for name in names:
            status, _ = call(served.base, "POST", "/databases", served.token,
                             {"name": name, "instances": args.instances, "storage": "1Gi"})
            assert status == 202, status
        until("every database healthy",
              lambda: all(s == "healthy" for s in served.states().values()), 300)
        # New servers are busy for a while (checkpoints, autovacuum's first rounds).
        time.sleep(args.warmup)
        for rnd in range(args.rounds):
            # Every other round backwards, so no binary always goes first.
            order = args.binaries if rnd % 2 == 0 else list(reversed(args.binaries))
            for binary in order:
                if served is None:
                    served = Served(binary, data, wanted)
                until("every database healthy",
                      lambda: all(s == "healthy" for s in served.states().values()), 300)
                time.sleep(args.settle)
                pg, sv = measure(served, data, args.window)
                results[binary].append((pg, sv))
                print(f"round {rnd + 1} {binary}: pgplane {pg:.2f} s, servers {sv:.2f} s "
                      f"per {args.window:.0f} s", flush=True)
                served.stop()
                served = None
        print(f"\n{args.databases} databases x {args.instances} instance(s), "
              f"medians of {args.rounds} windows of {args.window:.0f} s:")
        for binary, rows in results.items():
            pg = statistics.median(r[0] for r in rows)
            sv = statistics.median(r[1] for r in rows)
            print(f"  {binary}: pgplane {pg:.2f} s ({100 * pg / args.window:.1f} % of a core), "
                  f"servers {sv:.2f} s ({100 * sv / args.window:.1f} %)")
    finally:
        if served is None:
            served = Served(args.binaries[0], data, wanted)
        for name in names:
            call(served.base, "DELETE", f"/databases/{name}", served.token)
        try:
            until("every database deleted", lambda: not served.states(), 120)
        finally:
            served.stop()
            for pid in postmasters(data):
                os.kill(pid, signal.SIGTERM)
            subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    sys.exit(main())
