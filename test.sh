#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Rust tests (against real
# PostgreSQL servers they start and stop themselves), schemathesis against
# a served pgplane, the web console in headless Chromium against a served
# pgplane, the static build the container image ships, and the offline
# checks of the deployment files.
# `.ci/run` installs the tools this needs on a fresh machine, then runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "dependencies: advisories, licences, sources (offline)"
scripts/deny.sh
step "cargo test (real PostgreSQL)"
cargo test --locked
step "schemathesis against /api/v1/openapi.json"
scripts/schemathesis.sh target/debug/pgplane
step "web console: vendored libraries, then Chromium against a served pgplane"
PGPLANE_BIN="$PWD/target/debug/pgplane" console/test.sh
step "static release build, as the Dockerfile's build stage runs it"
static_target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked --target "$static_target" -p pgplane
step "deployment checks"
PGPLANE_BIN="$PWD/target/debug/pgplane" \
  PGPLANE_STATIC_BIN="$PWD/target/$static_target/release/pgplane" \
  scripts/check-deploy.sh
step "all passed"
