#!/usr/bin/env bash
# Copies the console's libraries from the npm packages pinned in
# package-lock.json into api/assets/console/vendor, unchanged, with their
# licences. Run after changing a version in package.json (`npm install`
# first); commit what it writes. pgplane's build never runs this: the
# copies are in git, and check-vendor.sh holds them to the pinned packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
out=../api/assets/console/vendor
mkdir -p "$out"
while read -r from to; do
  cp "node_modules/$from" "$out/$to"
done < vendored.txt
