#!/usr/bin/env bash
# Fuzzes a real `pgplane serve` (local backend, real PostgreSQL) with
# schemathesis against its own /api/v1/openapi.json: no answer may be a 5xx,
# and every answer must match the document (status, content type, headers,
# body schema), with every check and the stateful phase; the false positives
# are listed, each with its reason, in scripts/schemathesis.toml. Then deletes
# what the run created and checks that no PostgreSQL server or file is left
# behind.
#
# Usage: scripts/schemathesis.sh [PGPLANE_BINARY]   (default target/debug/pgplane)
# Settings: SCHEMATHESIS_MAX_TIME (seconds of fuzzing, default 90).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/debug/pgplane}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-90}"
command -v st >/dev/null || { echo "schemathesis is missing: pip install schemathesis" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no pgplane binary at $BIN: run cargo build first" >&2; exit 1; }

# Under /tmp: the PostgreSQL account must be able to reach the data directory.
WORK="$(mktemp -d /tmp/pgplane-schemathesis.XXXXXX)"
chmod 711 "$WORK"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
PASSWORD="schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PID=""

# Postmasters whose pid file lies under our data directory: the only ones we touch.
postmasters() {
  find "$WORK/data" -name postmaster.pid -exec head -n1 {} \; 2>/dev/null |
    while read -r pid; do kill -0 "$pid" 2>/dev/null && echo "$pid"; done
}
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  for pid in $(postmasters); do kill -QUIT "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

PGPLANE_DATA_DIR="$WORK/data" PGPLANE_LISTEN="127.0.0.1:$PORT" \
  PGPLANE_ADMIN_PASSWORD="$PASSWORD" PGPLANE_MAX_INSTANCES=4 \
  "$BIN" serve >"$WORK/pgplane.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/pgplane.log" >&2; exit 1; }
  sleep 0.1
done
TOKEN="$(curl -fsS "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

status=0
# One worker: CPython before 3.11.8 / 3.12.2 keeps the AST recursion depth in
# global state (gh-106905), so hypothesis parsing lambda sources in two threads
# at once dies with "AST constructor recursion depth mismatch" (seen in CI).
st --config-file "$ROOT/scripts/schemathesis.toml" run "$BASE/api/v1/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all --exclude-checks use_after_free \
  --phases examples,coverage,fuzzing,stateful \
  --max-time "$MAX_TIME" --workers 1 --request-timeout 30 \
  --suppress-health-check too_slow \
  --report junit --report-dir "$WORK/report" || status=$?

# Delete whatever the run created, and wait until every database is gone.
names() {
  curl -fsS "$BASE/api/v1/databases?limit=500" -H "Authorization: Bearer $TOKEN" |
    python3 -c 'import json,sys; print("\n".join(d["name"] for d in json.load(sys.stdin)["items"]))'
}
for name in $(names); do
  curl -fsS -o /dev/null -X DELETE "$BASE/api/v1/databases/$name" -H "Authorization: Bearer $TOKEN"
done
for _ in $(seq 1 1200); do
  [ -z "$(names)" ] && break
  sleep 0.1
done
if [ -n "$(names)" ]; then echo "FAIL: databases left: $(names)" >&2; status=1; fi
if grep -q '"level":"ERROR"' "$WORK/pgplane.log"; then
  echo "FAIL: pgplane logged errors:" >&2; grep '"level":"ERROR"' "$WORK/pgplane.log" >&2; status=1
fi
kill "$PID"; wait "$PID" || true; PID=""
if [ -n "$(postmasters)" ]; then echo "FAIL: PostgreSQL servers left running" >&2; status=1; fi
if [ -n "$(ls -A "$WORK/data/databases")" ]; then echo "FAIL: files left in databases/" >&2; status=1; fi
[ "$status" = 0 ] && echo "schemathesis: no 5xx, every answer conforms, nothing left behind"
exit "$status"
