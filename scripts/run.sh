#!/usr/bin/env bash
# Install and run the whole system on its embedded defaults: pusherd (in-memory, the
# development app) on 127.0.0.1:8080 and attendance_api (SQLite, demo data) on
# 127.0.0.1:8000, publishing to pusherd over the Pusher HTTP API. Ctrl-C stops both.
# Override ports with PUSHERD_PORT / ATTENDANCE_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

PUSHERD_PORT=${PUSHERD_PORT:-8080}
ATTENDANCE_PORT=${ATTENDANCE_PORT:-8000}

echo "Installing into .venv (log: .venv/install.log) ..."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if ! { .venv/bin/python -m pip install --upgrade pip &&
       .venv/bin/python -m pip install -r requirements/pusherd.txt -r requirements/attendance.txt &&
       .venv/bin/python -m pip install --no-deps -e . ; } > .venv/install.log 2>&1; then
  tail -30 .venv/install.log
  echo "Installation failed: see .venv/install.log" >&2
  exit 1
fi

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT INT TERM

.venv/bin/python -m pusherd --host 127.0.0.1 --port "$PUSHERD_PORT" &
pids+=($!)

export PUSHER_HOST=127.0.0.1 PUSHER_PORT="$PUSHERD_PORT" PUSHER_SCHEME=http
export PUSHER_APP_ID=1001 PUSHER_APP_KEY=app-key PUSHER_APP_SECRET=app-secret
.venv/bin/python -m attendance_api --demo --host 127.0.0.1 --port "$ATTENDANCE_PORT" &
pids+=($!)

wait -n "${pids[@]}"
