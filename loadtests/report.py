#!/usr/bin/env python3
"""Turns the k6 summaries run.sh wrote (PREFIX-<scenario>.json, k6's
--summary-export format) and its step log into PREFIX-report.md,
PREFIX-latency.png and PREFIX-run.json, and checks the targets of issue 8:

  - authenticated GET of one database >= 50 % of the bare axum baseline's
    throughput (closed model, median of the alternating rounds)
  - list of the seeded databases p99 <= 10 ms at 1,000 requests/s
  - CRUD lifecycle: 0 failed checks, every database deleted, no stray server
  - login storm: each probed route's p99 within 2x of its quiet p99

Exit status 1 when a target is missed or something was left behind.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
from datetime import datetime, timezone

GET = "GET /databases/{name}"
LIST = "GET /databases"


def load(out, prefix, name):
    path = os.path.join(out, f"{prefix}-{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def metric(summary, key):
    return (summary or {}).get("metrics", {}).get(key)


def crossed(summary):
    """Thresholds k6 reports as crossed: ["metric: expression", ...]."""
    out = []
    for key, m in (summary or {}).get("metrics", {}).items():
        for expr, failed in (m.get("thresholds") or {}).items():
            if failed:
                out.append(f"{key}: {expr}")
    return sorted(out)


def checks(summary):
    """(passes, fails) over every check of the run."""
    m = metric(summary, "checks") or {}
    return m.get("passes", 0), m.get("fails", 0)


def failed_checks(summary):
    names = []

    def walk(group):
        for c in group.get("checks", {}).values():
            if c.get("fails"):
                names.append(f"{c['name']} ({c['fails']} of {c['passes'] + c['fails']})")
        for g in group.get("groups", {}).values():
            walk(g)

    walk((summary or {}).get("root_group", {}))
    return names


def ms(v):
    if v is None:
        return "-"
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


def git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        # The results this run is writing do not make the tree dirty.
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--", "..",
                                ":(exclude)results"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--k6", default="k6")
    ap.add_argument("--target", default="local")
    ap.add_argument("--log", default="", help="pgplane's JSON log, for server-side durations")
    ap.add_argument("--binary", default="", help="the pgplane binary, when not built from this tree")
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--failed", default="")
    ap.add_argument("--read-seconds", type=float, required=True)
    ap.add_argument("--throughput-seconds", type=float, required=True)
    ap.add_argument("--quick", default="0")
    a = ap.parse_args()
    quick = a.quick == "1"
    local = a.target == "local"

    with open(a.meta) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    k6_steps = {s["name"]: s for s in steps if s["step"] == "k6"}
    step = {s["step"]: s for s in steps if s["step"] != "k6"}
    runs = {name: load(a.out, a.prefix, name) for name in k6_steps}

    targets = []  # (target, measured, met: True/False/None)

    # 1. Throughput against the bare axum server.
    rounds = sorted({int(n.rsplit("-", 1)[1]) for n in runs if n.startswith("throughput-")})
    rps = {"baseline": [], "pgplane": []}
    for r in rounds:
        for who in rps:
            m = metric(runs.get(f"throughput-{who}-{r}"), "iterations")
            if m:
                rps[who].append(m["rate"])
    # Server CPU per request, from /proc: what each server itself spends,
    # whatever share of the cores k6 takes.
    cpu_us = {"baseline": [], "pgplane": []}
    for r in rounds:
        for who, field in (("baseline", "baseline_cpu_seconds"), ("pgplane", "pgplane_cpu_seconds")):
            m = metric(runs.get(f"throughput-{who}-{r}"), "iterations")
            s = k6_steps.get(f"throughput-{who}-{r}", {})
            if m and m.get("count") and s.get(field):
                cpu_us[who].append(s[field] / m["count"] * 1e6)
    ratio = None
    if rps["baseline"] and rps["pgplane"]:
        ratio = statistics.median(rps["pgplane"]) / statistics.median(rps["baseline"])
        targets.append((
            "authenticated GET >= 50 % of bare axum throughput",
            f"{ratio:.0%} ({statistics.median(rps['pgplane']):.0f} vs "
            f"{statistics.median(rps['baseline']):.0f} req/s, median of {len(rounds)} alternating rounds)",
            ratio >= 0.5,
        ))
    elif local:
        targets.append(("authenticated GET >= 50 % of bare axum throughput",
                        "no throughput summary (a run failed)", False))
    else:
        targets.append(("authenticated GET >= 50 % of bare axum throughput",
                        "not measured (no local baseline with --target)", None))

    # 2. The list at 1,000 requests/s.
    read = runs.get("read")
    lst = metric(read, "http_req_duration{scenario:list}")
    list_count = (metric(read, "http_req_failed{scenario:list}") or {})
    list_n = list_count.get("passes", 0) + list_count.get("fails", 0)
    dropped = (metric(read, "dropped_iterations") or {}).get("count", 0)
    if lst:
        achieved = list_n / a.read_seconds
        targets.append((
            "list of 50 databases p99 <= 10 ms at 1,000 req/s",
            f"p99 {ms(lst['p(99)'])} (p95 {ms(lst['p(95)'])}) at {achieved:.0f} req/s achieved; "
            f"{dropped} arrivals dropped in the whole read run",
            lst["p(99)"] <= 10 and achieved >= 990,
        ))
    else:
        targets.append(("list of 50 databases p99 <= 10 ms at 1,000 req/s", "no read summary", False))

    # 3. CRUD lifecycle.
    crud = runs.get("crud")
    if crud:
        passes, fails = checks(crud)
        done = (metric(crud, "crud_lifecycles_completed") or {}).get("count", 0)
        left = (metric(crud, "crud_databases_left_by_iterations") or {}).get("count", 0)
        after = step.get("after-crud", {})
        stopped = step.get("stopped", {})
        unseed = step.get("unseed", {})
        stray = after.get("postmasters", after.get("expected", 0)) - after.get("expected", 0)
        ok = (fails == 0 and done > 0 and left == 0
              and unseed.get("crud_databases_left", 0) == 0 and stray == 0)
        shape = "10 VUs x 30 s (quick)" if quick else "10 VUs x 120 s"
        measured = (f"{shape}: {done} lifecycles, {fails} failed checks of {passes + fails}, "
                    f"{left} databases left by iterations, {unseed.get('crud_databases_left', '?')} "
                    f"with the crud label at the end")
        if local:
            measured += (f"; servers after the CRUD run {after.get('postmasters', '?')} "
                         f"(= the {after.get('expected', '?')} seeds expected)")
        targets.append(("CRUD lifecycle, 0 failed checks, all deleted, no stray process", measured, ok))
    else:
        targets.append(("CRUD lifecycle, 0 failed checks, all deleted, no stray process", "no summary", False))

    # 4. The login storm.
    storm = runs.get("storm")
    storm_rows = []
    storm_ok = bool(storm)
    for route in (GET, LIST):
        q = metric(storm, f"http_req_duration{{name:{route},phase:quiet}}")
        s = metric(storm, f"http_req_duration{{name:{route},phase:storm}}")
        if not (q and s):
            storm_ok = False
            continue
        r = s["p(99)"] / q["p(99)"]
        storm_rows.append((route, q["p(99)"], s["p(99)"], r))
        storm_ok = storm_ok and r <= 2.0
    limited = metric(storm, "storm_login_rate_limited") or {}
    limited_share = limited.get("value")
    if storm_rows:
        targets.append((
            "under the login storm, other routes' p99 within 2x of unloaded",
            "; ".join(f"{route}: {ms(q)} quiet, {ms(s)} storm ({r:.2f}x)" for route, q, s, r in storm_rows)
            + (f"; {limited_share:.1%} of storm logins answered 429" if limited_share is not None else ""),
            storm_ok,
        ))
    else:
        targets.append(("under the login storm, other routes' p99 within 2x of unloaded", "no summary", False))

    # Cleanup checks (local only).
    cleanup = []
    if local:
        stopped = step.get("stopped", {})
        cleanup = [
            ("servers left after deleting every database", stopped.get("postmasters_before_stop")),
            ("servers left after pgplane stopped", stopped.get("postmasters_after_stop")),
            ("database directories left", stopped.get("database_dirs_left")),
        ]
    cleanup_ok = all(v == 0 for _, v in cleanup)

    server_side = server_durations(a.log, k6_steps) if a.log else {}
    plot(a, runs, rps)
    write_report(a, quick, local, steps, k6_steps, runs, targets, storm_rows, cleanup, rps, ratio, cpu_us,
                 server_side)
    record = {
        "command": a.command, "quick": quick, "target": a.target, "k6": a.k6,
        "commit": git_commit(), "binary": a.binary or None, "machine": machine(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": a.seconds, "steps": steps,
        "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets],
        "throughput_rps": rps, "throughput_ratio": ratio, "server_cpu_us_per_request": cpu_us,
        "server_side_ms": server_side,
        "storm_p99_ms": [{"route": r, "quiet": q, "storm": s, "ratio": x} for r, q, s, x in storm_rows],
    }
    with open(os.path.join(a.out, f"{a.prefix}-run.json"), "w") as f:
        json.dump(record, f, indent=2)
    missed = [t for t, _, ok in targets if ok is False]
    for t in missed:
        print(f"report.py: target missed: {t}")
    if not cleanup_ok:
        print("report.py: something was left behind (see the report)")
    return 1 if missed or not cleanup_ok else 0


def server_durations(log, k6_steps):
    """Percentiles of pgplane's own request durations (its JSON request log)
    per route, within the read and storm runs' windows."""
    windows = {n: (s["from"], s["until"]) for n, s in k6_steps.items()
               if n in ("read", "storm") and "from" in s}
    found = {n: {} for n in windows}
    try:
        with open(log) as f:
            for line in f:
                if '"message":"request"' not in line:
                    continue
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                for n, (lo, hi) in windows.items():
                    if lo <= j.get("timestamp", "") <= hi:
                        route = j.get("span", {}).get("route", "?")
                        found[n].setdefault(route, []).append(j.get("duration_ms", 0.0))
    except OSError:
        return {}
    out = {}
    for n, routes in found.items():
        out[n] = {}
        for route, v in routes.items():
            if len(v) < 100:
                continue
            v.sort()
            pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
            out[n][route] = {"count": len(v), "med": pick(0.5), "p(95)": pick(0.95), "p(99)": pick(0.99),
                             "p(99.9)": pick(0.999), "max": v[-1]}
    return out


def plot(a, runs, rps):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = ["med", "p(90)", "p(95)", "p(99)", "p(99.9)", "max"]
    labels = ["p50", "p90", "p95", "p99", "p99.9", "max"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))

    def curves(ax, title, series):
        for label, m, style in series:
            if not m:
                continue
            xs = [i for i, s in enumerate(stats) if s in m]
            ax.plot(xs, [m[stats[i]] for i in xs], style, marker="o", label=label)
        ax.set_xticks(range(len(stats)), labels)
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    read = runs.get("read")
    ax = axes[0][0]
    curves(ax, "read: 1,000 req/s each, measured alone", [
        ("GET one database", metric(read, "http_req_duration{scenario:get}"), "-"),
        ("list of the 50 seeds", metric(read, "http_req_duration{scenario:list}"), "-"),
    ])
    ax.axhline(10, color="red", linestyle=":", label="target p99 10 ms")
    ax.legend(fontsize=8)

    storm = runs.get("storm")
    curves(axes[0][1], "login storm: probes, quiet vs storm phases", [
        ("GET one, quiet", metric(storm, f"http_req_duration{{name:{GET},phase:quiet}}"), "-"),
        ("GET one, storm", metric(storm, f"http_req_duration{{name:{GET},phase:storm}}"), "--"),
        ("list, quiet", metric(storm, f"http_req_duration{{name:{LIST},phase:quiet}}"), "-"),
        ("list, storm", metric(storm, f"http_req_duration{{name:{LIST},phase:storm}}"), "--"),
        ("storm logins answered 429",
         metric(storm, "http_req_duration{name:POST /auth/login (storm),status:429}"), ":"),
    ])

    mixed = runs.get("mixed")
    curves(axes[1][0], "mixed: reads beside creates, patches and deletes", [
        (r, metric(mixed, f"http_req_duration{{name:{r}}}"), "-")
        for r in (GET, LIST, "GET /databases/{name}/events", "GET /databases/{name}/credentials",
                  "POST /auth/login")
    ])

    ax = axes[1][1]
    if rps["baseline"] or rps["pgplane"]:
        names = [n for n in ("baseline", "pgplane") if rps[n]]
        values = [statistics.median(rps[n]) for n in names]
        bars = ax.bar(["bare axum hello" if n == "baseline" else "pgplane GET one (authenticated)"
                       for n in names], values, color=["#999", "#336"][:len(names)])
        for b, v in zip(bars, values):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.0f}/s", ha="center", va="bottom")
        ax.set_ylabel("requests/s (closed model, median of rounds)")
        ax.set_title("throughput, same k6 script, same machine")
    else:
        ax.axis("off")
    fig.suptitle(f"pgplane k6 run, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, f"{a.prefix}-latency.png"), dpi=90)


def write_report(a, quick, local, steps, k6_steps, runs, targets, storm_rows, cleanup, rps, ratio, cpu_us,
                 server_side):
    p = a.prefix
    lines = [
        f"# k6 load test of pgplane{' (quick)' if quick else ''}",
        "",
        f"`{a.command}` against {'a local pgplane (local backend, real PostgreSQL 15)' if local else a.target}, "
        f"finished {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {a.seconds} s.",
        f"Machine: {machine()}. {a.k6}. "
        + (f"pgplane binary `{a.binary}` (not built from this tree)." if a.binary
           else f"pgplane built from commit {git_commit()}."),
        "",
        f"![latency]({p}-latency.png)",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for t, m, ok in targets:
        lines.append(f"| {t} | {m} | {'yes' if ok else ('n/a' if ok is None else '**no**')} |")

    lines += ["", "## Runs and the machine's load", "",
              "Load averages (1, 5, 15 min) from `/proc/loadavg` before and after each k6 run; "
              "the machine is shared, so a high load before a run means other work competed with it. "
              "CPU seconds from /proc during the run: pgplane's process, and its PostgreSQL servers "
              "alive at both ends with their reaped backends." if local
              else "Load averages of the machine running k6.",
              "",
              "| run | k6 exit | seconds | load before | load after | pgplane CPU s | its servers' CPU s "
              "| crossed thresholds / failed checks |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in k6_steps.items():
        bad = crossed(runs.get(name)) + failed_checks(runs.get(name))
        lines.append(f"| {name} | {s['exit']} | {s['seconds']} | {s['load_before']} | {s['load_after']} | "
                     f"{s['pgplane_cpu_seconds'] if local else '-'} | {s['servers_cpu_seconds'] if local else '-'} "
                     f"| {'<br>'.join(bad) or 'none'} |")

    def route_table(title, summary, keys):
        out = ["", f"### {title}", "", "| requests | count | p50 | p95 | p99 | p99.9 | max |",
               "|---|---|---|---|---|---|---|"]
        for label, key, count_key in keys:
            m = metric(summary, key)
            if not m:
                continue
            c = metric(summary, count_key) or {}
            n = c.get("passes", 0) + c.get("fails", 0) if c else "-"
            out.append(f"| {label} | {n} | {ms(m.get('med'))} | {ms(m.get('p(95)'))} | {ms(m.get('p(99)'))} "
                       f"| {ms(m.get('p(99.9)'))} | {ms(m.get('max'))} |")
        return out

    lines += ["", "## Scenarios"]
    lines += route_table("read (open model, 1,000 req/s each, one after the other)", runs.get("read"), [
        ("GET one database", "http_req_duration{scenario:get}", "http_req_failed{scenario:get}"),
        ("list of the seeded databases", "http_req_duration{scenario:list}", "http_req_failed{scenario:list}"),
    ])
    read_server = server_side.get("read")
    if read_server:
        lines += ["", "Server side, the same requests as pgplane's request log times them (from routing "
                  "to the answer; not the time a request waits for a core before pgplane reads it):", "",
                  "| route | count | p50 | p95 | p99 | p99.9 | max |", "|---|---|---|---|---|---|---|"]
        for route, m in read_server.items():
            lines.append(f"| {route} | {m['count']} | {ms(m['med'])} | {ms(m['p(95)'])} | {ms(m['p(99)'])} "
                         f"| {ms(m['p(99.9)'])} | {ms(m['max'])} |")
    if rps["pgplane"]:
        lines += ["", "### throughput (closed model: 20 VUs back to back, GET one database)", "",
                  "| server | requests/s per round | median | server CPU per request (median) |",
                  "|---|---|---|---|"]
        for who in ("baseline", "pgplane"):
            if rps[who]:
                cpu = f"{statistics.median(cpu_us[who]):.0f} µs" if cpu_us[who] else "-"
                lines.append(f"| {'bare axum hello' if who == 'baseline' else 'pgplane, authenticated'} | "
                             f"{', '.join(f'{v:.0f}' for v in rps[who])} | {statistics.median(rps[who]):.0f} | {cpu} |")
        if ratio is not None:
            lines.append(f"\npgplane / baseline: **{ratio:.0%}** of the requests/s. k6 runs on the same two "
                         "cores and needs more CPU per request than either server, so it caps both; the CPU "
                         "each server process spent per request (from /proc) says what pgplane's "
                         "authentication, lookup, JSON, metrics and request log cost on top of bare axum.")
    storm = runs.get("storm")
    if storm:
        lines += ["", "### login storm (probes at 200 req/s per route; storm 300 logins/s)", "",
                  "| route | quiet p99 | storm p99 | ratio (target <= 2) |", "|---|---|---|---|"]
        for route, q, s, r in storm_rows:
            lines.append(f"| {route} | {ms(q)} | {ms(s)} | {r:.2f}x |")
        limited = metric(storm, "storm_login_rate_limited") or {}
        tl = metric(storm, "http_req_duration{name:POST /auth/login (storm),status:429}") or {}
        lines.append(f"\nStorm logins answered 429: {limited.get('passes', 0)} of "
                     f"{limited.get('passes', 0) + limited.get('fails', 0)} "
                     f"({(limited.get('value') or 0):.1%}); the others were checked (argon2) and "
                     f"refused with 401. The 429s took p99 {ms(tl.get('p(99)'))}.")
    lines += route_table("mixed", runs.get("mixed"), [
        (r, f"http_req_duration{{name:{r}}}", None) for r in
        (GET, LIST, "GET /databases/{name}/events", "GET /databases/{name}/credentials", "POST /auth/login",
         "POST /databases", "PATCH /databases/{name}", "DELETE /databases/{name}")
    ])
    crud = runs.get("crud")
    if crud:
        lines += route_table("CRUD lifecycle: API calls", crud, [
            (r, f"http_req_duration{{name:{r}}}", None) for r in
            ("POST /databases", "PATCH /databases/{name}", "DELETE /databases/{name}")
        ])
        lines += ["", "| step of the lifecycle | p50 | p95 | max |", "|---|---|---|---|"]
        for label, key in (("create -> healthy", "crud_create_to_healthy"),
                           ("patch -> healthy (applied)", "crud_patch_to_healthy"),
                           ("delete -> 404", "crud_delete_to_gone")):
            m = metric(crud, key) or {}
            lines.append(f"| {label} | {ms(m.get('med'))} | {ms(m.get('p(95)'))} | {ms(m.get('max'))} |")
        done = (metric(crud, "crud_lifecycles_completed") or {}).get("count", 0)
        lines.append(f"\n{done} whole lifecycles completed.")

    if local:
        seed = next((s for s in steps if s["step"] == "seed"), {})
        idle = next((s for s in steps if s["step"] == "idle"), None)
        lines += ["", "## Seeds, idle cost and cleanup", "",
                  f"{seed.get('databases', '?')} databases seeded (1 instance each) and healthy in "
                  f"{seed.get('seconds', '?')} s."]
        settle = next((s for s in steps if s["step"] == "settle"), None)
        if settle:
            lines.append(f"The runs began once the machine was {settle['idle_share']:.0%} idle "
                         f"(load {settle['load']}).")
        if idle:
            used = idle["pgplane_cpu_seconds"] + idle["servers_cpu_seconds"]
            lines.append(f"Idle, with {idle['postmasters']} servers running: pgplane used "
                         f"{idle['pgplane_cpu_seconds']:.2f} CPU s and its servers "
                         f"{idle['servers_cpu_seconds']:.2f} CPU s in {idle['seconds']} s "
                         f"({used / idle['seconds']:.0%} of one core; load {idle['load']}).")
        lines += ["", "| cleanup check | value |", "|---|---|"]
        for label, v in cleanup:
            lines.append(f"| {label} | {v} {'(ok)' if v == 0 else '**(left behind)**'} |")
        stopped = next((s for s in steps if s["step"] == "stopped"), {})
        lines.append(f"| ERROR lines in pgplane's log | {stopped.get('log_errors', '?')} |")
        lines.append(f"| WARN lines in pgplane's log | {stopped.get('log_warnings', '?')} |")

    lines += ["", f"Raw k6 summaries: `{p}-<run>.json` (k6 `--summary-export`) and `{p}-<run>.txt` "
              f"(k6's own end-of-test summary); this run's steps and targets: `{p}-run.json`.", ""]
    with open(os.path.join(a.out, f"{p}-report.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
