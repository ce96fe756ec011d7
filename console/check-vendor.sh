#!/usr/bin/env bash
# Checks that the console's vendored files (api/assets/console/vendor) are
# byte for byte the files of the npm packages package-lock.json pins, as
# `npm ci` installs them (integrity-checked against the lock file).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
out=../api/assets/console/vendor
status=0
while read -r from to; do
  if ! cmp -s "node_modules/$from" "$out/$to"; then
    echo "check-vendor: $out/$to differs from the pinned package's $from; run console/vendor.sh" >&2
    status=1
  fi
done < vendored.txt
expected=$(awk '{print $2}' vendored.txt | sort)
present=$(cd "$out" && ls | sort)
if [ "$expected" != "$present" ]; then
  echo "check-vendor: $out holds files vendored.txt does not name (or lacks some)" >&2
  status=1
fi
[ "$status" = 0 ] && echo "check-vendor: $(wc -l < vendored.txt) vendored files equal the pinned npm packages"
exit "$status"
