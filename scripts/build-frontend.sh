#!/usr/bin/env bash
# Build the web frontend (attendance_api/frontend -> attendance_api/frontend/dist) only when
# its sources changed: a hash of package.json, package-lock.json, index.html, vite.config.js
# and src/ is kept in dist/.source-hash. `npm ci` runs only when the lock file changed (its
# hash is kept in node_modules/.lock-hash). Quiet unless something fails; --force rebuilds.
set -euo pipefail
cd "$(dirname "$0")/../attendance_api/frontend"

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
lock_hash=$(hash_of package.json package-lock.json)
source_hash=$(hash_of package.json package-lock.json index.html vite.config.js $(find src -type f | sort))

if [ "${1:-}" != --force ] && [ -f dist/index.html ] && [ "$(cat dist/.source-hash 2>/dev/null)" = "$source_hash" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "The web frontend needs Node.js 20 and npm to build (attendance_api/frontend)." >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ "$(cat node_modules/.lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  echo "Installing the frontend's packages (npm ci) ..."
  if ! npm ci --no-audit --no-fund >"$log" 2>&1; then cat "$log" >&2; exit 1; fi
  echo "$lock_hash" > node_modules/.lock-hash
fi
echo "Building the web frontend ..."
if ! npm run build >"$log" 2>&1; then cat "$log" >&2; exit 1; fi
echo "$source_hash" > dist/.source-hash
