#!/usr/bin/env python3
"""Create -> healthy through pgplane, against the bare PostgreSQL commands
doing the least that gives the same servers, on the same machine in the same
run, alternating so both see the same conditions. Also the RSS of an idle
`pgplane serve`.

Bare baseline, 1 instance: initdb (same flags as pgplane: --no-sync, scram,
pwfile, C locale) + the same small-memory settings + `pg_ctl start -w`.
2 instances: that, plus `pg_basebackup -R -X stream -c fast --no-sync` from
the primary and `pg_ctl start -w` of the standby.

pgplane is timed from sending POST /databases to the first GET that answers
`healthy` (polled every 10 ms), so it includes what the bare run does not:
roles and the `app` database, the replication slot, waiting until the
standby streams, and the records written durably.

Usage: loadtests/create_bench.py [--runs N] [--binary PATH] [--out DIR]
Writes create-bench.json and create-bench.md into --out.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PG_USER = "postgres"
SMALL = """shared_buffers = '16MB'
max_connections = 50
effective_cache_size = '64MB'
maintenance_work_mem = '16MB'
max_wal_size = '256MB'
min_wal_size = '32MB'
max_worker_processes = 4
max_parallel_workers = 2
max_parallel_workers_per_gather = 1
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 12
max_replication_slots = 12
hot_standby = on
"""


def bindir():
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_pg(args, **kw):
    """Runs a PostgreSQL program as the postgres account when we are root."""
    if os.geteuid() == 0:
        kw.setdefault("user", PG_USER)
        kw.setdefault("group", PG_USER)
    return subprocess.run(args, check=True, capture_output=True, **kw)


def bare_create(root, instances, bins):
    """Times the bare commands; returns (seconds, data dirs to stop)."""
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write("bench-password\n")
    os.chmod(pwfile, 0o644)
    primary = os.path.join(root, "p")
    standby = os.path.join(root, "s")
    pport, sport = free_port(), free_port()
    started = time.monotonic()
    as_pg([f"{bins}/initdb", "-D", primary, "-U", "postgres", "--auth=scram-sha-256",
           "--encoding=UTF8", "--locale=C", "--no-instructions", "--no-sync",
           f"--pwfile={pwfile}"])
    with open(os.path.join(primary, "postgresql.auto.conf"), "a") as f:
        f.write(SMALL + f"port = {pport}\n")
    with open(os.path.join(primary, "pg_hba.conf"), "a") as f:
        f.write("host replication postgres 127.0.0.1/32 scram-sha-256\n")
    as_pg([f"{bins}/pg_ctl", "start", "-D", primary, "-l", os.path.join(primary, "log"), "-w", "-s"])
    dirs = [primary]
    if instances == 2:
        env = dict(os.environ, PGPASSWORD="bench-password")
        as_pg([f"{bins}/pg_basebackup", "-D", standby, "-h", "127.0.0.1", "-p", str(pport),
               "-U", "postgres", "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"], env=env)
        with open(os.path.join(standby, "postgresql.auto.conf"), "a") as f:
            f.write(f"port = {sport}\n")
        as_pg([f"{bins}/pg_ctl", "start", "-D", standby, "-l", os.path.join(standby, "log"), "-w", "-s"])
        dirs.append(standby)
    return time.monotonic() - started, dirs


def bare_stop(dirs, bins):
    for d in reversed(dirs):
        as_pg([f"{bins}/pg_ctl", "stop", "-D", d, "-m", "immediate", "-w", "-s"])


class Pgplane:
    """`pgplane serve` on a free port over `root`, logged in as admin.
    Waits until `ready_path` answers 200, for at most `start_s` seconds."""

    def __init__(self, binary, root, extra_env=None, ready_path="/healthz", start_s=30):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/v1"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGPLANE_")}
        env.update(PGPLANE_DATA_DIR=os.path.join(root, "data"),
                   PGPLANE_LISTEN=f"127.0.0.1:{self.port}",
                   PGPLANE_ADMIN_PASSWORD="bench-admin-password",
                   PGPLANE_LOG="warn")
        env.update(extra_env or {})
        self.log = open(os.path.join(root, "pgplane.log"), "w")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + start_s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}{ready_path}", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("pgplane did not start; see " + self.log.name)
                time.sleep(0.02)
        self.token = self.call("POST", "/auth/login",
                               {"username": "admin", "password": "bench-admin-password"})[1]["access_token"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        if getattr(self, "token", None):
            req.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait(self, name, done, deadline_s=120):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            status, body = self.call("GET", f"/databases/{name}")
            if done(status, body):
                return
            if body and body.get("state") == "failed":
                raise SystemExit(f"{name} failed: {body}")
            time.sleep(0.01)
        raise SystemExit(f"{name}: deadline passed")

    def create(self, name, instances):
        started = time.monotonic()
        status, body = self.call("POST", "/databases", {"name": name, "instances": instances})
        assert status == 202, body
        self.wait(name, lambda s, b: b and b.get("state") == "healthy")
        return time.monotonic() - started

    def delete(self, name):
        self.call("DELETE", f"/databases/{name}")
        self.wait(name, lambda s, b: s == 404)

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def rss_kib(pid):
    """Resident memory of process `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def remove_root(root):
    """Stops what a failed run left, by the pid files under `root` only
    (SIGQUIT: PostgreSQL's immediate shutdown), then removes `root`."""
    for dirpath, _, files in os.walk(root):
        if "postmaster.pid" in files:
            try:
                with open(os.path.join(dirpath, "postmaster.pid")) as f:
                    os.kill(int(f.readline()), 3)
            except (OSError, ValueError):
                pass
    shutil.rmtree(root, ignore_errors=True)


def write_report(out, name, result, lines):
    """Writes `<name>.json` and `<name>.md` into `out`, and prints the markdown."""
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def summary(xs):
    xs = sorted(xs)
    return {"runs": len(xs), "median_s": round(statistics.median(xs), 3),
            "min_s": round(xs[0], 3), "max_s": round(xs[-1], 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--binary", default="target/release/pgplane")
    ap.add_argument("--out", default=f"loadtests/results/{time.strftime('%Y-%m-%d')}")
    args = ap.parse_args()
    bins = bindir()
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="pgplane-bench-", dir="/tmp")
    os.chmod(root, 0o711)
    app = None
    try:
        app = Pgplane(os.path.abspath(args.binary), root)
        time.sleep(1)  # settle after start-up before reading the idle RSS
        idle_rss = app.rss_kib()
        times = {("pgplane", 1): [], ("pgplane", 2): [], ("bare", 1): [], ("bare", 2): []}
        for run in range(args.runs):
            for instances in (1, 2):
                name = f"bench-{instances}-{run}"
                times[("pgplane", instances)].append(app.create(name, instances))
                app.delete(name)
                bare_root = os.path.join(root, f"bare-{instances}-{run}")
                os.mkdir(bare_root)
                if os.geteuid() == 0:
                    shutil.chown(bare_root, PG_USER, PG_USER)
                seconds, dirs = bare_create(bare_root, instances, bins)
                times[("bare", instances)].append(seconds)
                bare_stop(dirs, bins)
                shutil.rmtree(bare_root)
        busy_rss = app.rss_kib()
        result = {"machine": {"cores": os.cpu_count(), "postgres_bindir": bins},
                  "idle_rss_kib": idle_rss, "rss_after_runs_kib": busy_rss}
        for instances in (1, 2):
            p, b = summary(times[("pgplane", instances)]), summary(times[("bare", instances)])
            result[f"instances_{instances}"] = {"pgplane": p, "bare": b,
                                                "ratio_median": round(p["median_s"] / b["median_s"], 2)}
        lines = ["# Create -> healthy, pgplane against bare initdb + pg_ctl (+ pg_basebackup)", "",
                 f"`{' '.join(sys.argv)}` on {os.cpu_count()} cores, {args.runs} runs each, alternating.", "",
                 "| instances | pgplane median (min-max) | bare median (min-max) | ratio | goal |",
                 "|---|---|---|---|---|"]
        for instances in (1, 2):
            r = result[f"instances_{instances}"]
            p, b = r["pgplane"], r["bare"]
            lines.append(f"| {instances} | {p['median_s']} s ({p['min_s']}-{p['max_s']}) | "
                         f"{b['median_s']} s ({b['min_s']}-{b['max_s']}) | {r['ratio_median']}x | <= 1.3x |")
        lines += ["", f"Idle `pgplane serve` RSS: {idle_rss / 1024:.1f} MiB "
                      f"(after the runs: {busy_rss / 1024:.1f} MiB)."]
        write_report(args.out, "create-bench", result, lines)
    finally:
        if app:
            app.stop()
        remove_root(root)


if __name__ == "__main__":
    main()
