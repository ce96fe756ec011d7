#!/usr/bin/env bash
# The console's checks: the vendored libraries are the pinned npm packages'
# files, then the browser tests (console/tests/) against the debug binary,
# which must be built already (`cargo build`). Needs `npm ci` in console/
# (playwright-core and @axe-core/playwright; no browser is downloaded) and
# Debian's chromium at /usr/bin/chromium (or CHROMIUM=...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/@axe-core/playwright ]; then
  echo "console/test.sh: run 'npm ci' in console/ first" >&2
  exit 1
fi
./check-vendor.sh
node --test --test-concurrency=1 --test-reporter=spec tests/
