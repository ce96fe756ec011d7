#!/usr/bin/env python3
"""Seeds and removes the databases the k6 scenarios read, and waits on
pgplane, always with a deadline. Credentials come from the environment
(PGPLANE_URL, PGPLANE_USERNAME, PGPLANE_PASSWORD) and are never printed.

  seed.py wait-up SECONDS            until GET /healthz answers 200
  seed.py seed N CREATED_FILE        creates seed-00.. (1 instance, 1Gi, label
                                     loadtest=seed) that do not exist yet,
                                     writes the names it created, waits until
                                     all N are healthy
  seed.py unseed CREATED_FILE        deletes the names in the file and waits
                                     until they are gone
  seed.py count LABEL                prints how many databases carry LABEL
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ.get("PGPLANE_URL", "http://127.0.0.1:8080").rstrip("/")
API = BASE + "/api/v1"
DEADLINE = 300


def call(method, path, token=None, body=None, ok=(200,)):
    """Returns (status, parsed body or None); raises on a status not in ok."""
    req = urllib.request.Request(API + path, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=30) as res:
            status, raw = res.status, res.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if status not in ok:
        raise SystemExit(f"seed.py: {method} {path} answered {status}: {raw[:300]!r}")
    return status, (json.loads(raw) if raw else None)


def login():
    password = os.environ.get("PGPLANE_PASSWORD")
    if not password:
        raise SystemExit("seed.py: PGPLANE_PASSWORD is not set")
    body = {"username": os.environ.get("PGPLANE_USERNAME", "admin"), "password": password}
    until = time.monotonic() + 60
    while True:
        status, answer = call("POST", "/auth/login", body=body, ok=(200, 429))
        if status == 200:
            return answer["access_token"]
        if time.monotonic() > until:
            raise SystemExit("seed.py: login still rate limited after 60 s")
        time.sleep(1)


def names_with(token, label):
    names, cursor = [], None
    while True:
        q = {"limit": "500", "label": label}
        if cursor:
            q["cursor"] = cursor
        _, page = call("GET", "/databases?" + urllib.parse.urlencode(q), token)
        names += [d["name"] for d in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return names


def wait_up(seconds):
    until = time.monotonic() + float(seconds)
    while time.monotonic() < until:
        try:
            with urllib.request.urlopen(BASE + "/healthz", timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"seed.py: {BASE}/healthz did not answer within {seconds} s")


def seed(n, created_file):
    token = login()
    wanted = [f"seed-{i:02d}" for i in range(int(n))]
    existing = set(names_with(token, "loadtest=seed"))
    created = []
    with open(created_file, "w") as f:
        for name in wanted:
            if name in existing:
                continue
            body = {"name": name, "instances": 1, "storage": "1Gi", "labels": {"loadtest": "seed"}}
            call("POST", "/databases", token, body, ok=(202,))
            created.append(name)
            f.write(name + "\n")
            f.flush()
    until = time.monotonic() + DEADLINE
    while True:
        states = {}
        for name in wanted:
            _, db = call("GET", f"/databases/{name}", token)
            states[name] = db["state"]
        waiting = sorted(n for n, s in states.items() if s != "healthy")
        if not waiting:
            break
        if time.monotonic() > until:
            raise SystemExit(f"seed.py: not healthy after {DEADLINE} s: {waiting[:5]} ...")
        time.sleep(0.5)
    print(f"seeded {len(wanted)} databases ({len(created)} created by this run), all healthy")


def unseed(created_file):
    try:
        with open(created_file) as f:
            names = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return
    if not names:
        return
    token = login()
    for name in names:
        call("DELETE", f"/databases/{name}", token, ok=(202, 204))
    until = time.monotonic() + DEADLINE
    left = names
    while left:
        if time.monotonic() > until:
            raise SystemExit(f"seed.py: still there after {DEADLINE} s: {left[:5]} ...")
        time.sleep(0.5)
        left = [n for n in left if call("GET", f"/databases/{n}", token, ok=(200, 404))[0] == 200]
    print(f"deleted the {len(names)} seeded databases")


def count(label):
    print(len(names_with(login(), label)))


if __name__ == "__main__":
    commands = {"wait-up": wait_up, "seed": seed, "unseed": unseed, "count": count}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
