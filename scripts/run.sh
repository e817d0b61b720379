#!/usr/bin/env bash
# Install (only what changed) and run the whole system on its embedded defaults: pusherd
# (in-memory, the development app) on 127.0.0.1:8080 and attendance_api (SQLite, demo data,
# the web frontend) on 127.0.0.1:8000, publishing to pusherd over the Pusher HTTP API; pusherd
# posts its presence webhooks to attendance_api (who is online).
# Prints one URL to open (the sign-in page) and the demo logins. Ctrl-C stops both (so do
# SIGTERM and SIGHUP); pusherd is restarted if it dies, attendance_api keeps serving.
#
# Ports: PUSHERD_PORT / ATTENDANCE_PORT (e.g. PUSHERD_PORT=8081 ATTENDANCE_PORT=8001).
# Each ATTENDANCE_PORT gets its own database, ./attendance-<port>.db, so two runs on
# different ports in one checkout never share one (ATTENDANCE_DATABASE_URL overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

PUSHERD_PORT=${PUSHERD_PORT:-8080}
ATTENDANCE_PORT=${ATTENDANCE_PORT:-8000}
DATABASE_URL=${ATTENDANCE_DATABASE_URL:-sqlite:///attendance-${ATTENDANCE_PORT}.db}

# Python packages: installed only when the requirements or pyproject.toml changed since the
# last install (their hash is kept in .venv/.install-hash).
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
install_hash=$(sha256sum requirements/pusherd.txt requirements/attendance.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.install-hash 2>/dev/null)" != "$install_hash" ]; then
  echo "Installing Python packages into .venv (log: .venv/install.log) ..."
  if ! { .venv/bin/python -m pip install --upgrade pip &&
         .venv/bin/python -m pip install -r requirements/pusherd.txt -r requirements/attendance.txt &&
         .venv/bin/python -m pip install --no-deps -e . ; } > .venv/install.log 2>&1; then
    tail -30 .venv/install.log
    echo "Installation failed: see .venv/install.log" >&2
    exit 1
  fi
  echo "$install_hash" > .venv/.install-hash
fi

# The web frontend: npm ci + build only when its sources changed.
bash scripts/build-frontend.sh

# Refuse clearly when a port is taken (another run.sh, most likely).
for entry in "pusherd:$PUSHERD_PORT:PUSHERD_PORT" "attendance_api:$ATTENDANCE_PORT:ATTENDANCE_PORT"; do
  IFS=: read -r name port var <<<"$entry"
  if ! .venv/bin/python -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then
    echo "Port $port ($name) is already in use (address already in use): is another run.sh running?" >&2
    echo "Choose free ports with PUSHERD_PORT and ATTENDANCE_PORT, e.g." >&2
    echo "  PUSHERD_PORT=$((PUSHERD_PORT + 1)) ATTENDANCE_PORT=$((ATTENDANCE_PORT + 1)) bash scripts/run.sh" >&2
    exit 1
  fi
done

mkdir -p .run
# Supervision: attendance_api is the one the user talks to; it never stops because pusherd
# died (the page falls back to polling and refetches once the WebSocket is back). pusherd is
# restarted with a back-off (1, 2, 4 ... 30 s; back to 1 s after a minute of uptime), each
# restart said on the terminal. Ctrl-C, SIGTERM and SIGHUP (the terminal closing) stop both
# gracefully; if attendance_api exits, pusherd is stopped and its status is ours.
api_pid=""
pusherd_pid=""
stopping=0
cleanup() {
  [ "$stopping" = 1 ] && return
  stopping=1
  # Ctrl-C already reached the children (same process group); SIGTERM covers `kill` of this
  # script. Both servers treat repeated stop signals as one and shut down gracefully.
  for pid in $api_pid $pusherd_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $api_pid $pusherd_pid; do wait "$pid" 2>/dev/null || true; done
  rm -f ".run/pusherd-$PUSHERD_PORT.pid"
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM HUP

# The servers ignore SIGHUP (set before exec, so it survives it): when the terminal closes,
# the HUP sent to the whole group reaches this script, which stops them in order, instead of
# killing them outright.
# pusherd's config: the development app (id 1001, key app-key, secret app-secret: a developer's
# machine only) with one webhook, member_added / member_removed to attendance_api, which is
# how the dashboard knows who is online. The journal keeps undelivered webhooks (and the
# removals a killed pusherd owes) across the restarts below; one per port, as it is locked.
pusherd_config=".run/pusherd-$PUSHERD_PORT.toml"
cat > "$pusherd_config" <<TOML
[[apps]]
id = "1001"
key = "app-key"
secret = "app-secret"
allowed_origins = ["*"]

[[apps.webhooks]]
url = "http://127.0.0.1:$ATTENDANCE_PORT/webhooks/pusher"
event_types = ["member_added", "member_removed"]

[webhooks]
journal = "$PWD/.run/pusherd-$PUSHERD_PORT.journal"
TOML
chmod 600 "$pusherd_config"

start_pusherd() {
  # pusherd's own output goes to a log: the terminal shows attendance_api's one URL.
  ( trap '' HUP; exec .venv/bin/python -m pusherd --config "$pusherd_config" --host 127.0.0.1 \
      --port "$PUSHERD_PORT" ) \
    >> ".run/pusherd-$PUSHERD_PORT.log" 2>&1 &
  pusherd_pid=$!
  pusherd_started=$SECONDS
  echo "$pusherd_pid" > ".run/pusherd-$PUSHERD_PORT.pid"
}
start_pusherd

export PUSHER_HOST=127.0.0.1 PUSHER_PORT="$PUSHERD_PORT" PUSHER_SCHEME=http
export PUSHER_APP_ID=1001 PUSHER_APP_KEY=app-key PUSHER_APP_SECRET=app-secret
( trap '' HUP; exec .venv/bin/python -m attendance_api --demo --host 127.0.0.1 \
    --port "$ATTENDANCE_PORT" --database-url "$DATABASE_URL" ) &
api_pid=$!

echo "(pusherd on 127.0.0.1:$PUSHERD_PORT, log .run/pusherd-$PUSHERD_PORT.log; Ctrl-C stops both)"
backoff=1
while :; do
  set +e
  wait -n -p exited "$api_pid" "$pusherd_pid"
  status=$?
  set -e
  [ "$stopping" = 1 ] && exit 0
  if [ "${exited:-}" = "$api_pid" ]; then
    if [ "$status" != 0 ]; then
      echo "attendance_api exited with status $status; stopping pusherd." >&2
    fi
    exit "$status"
  fi
  # pusherd exited: the web app keeps serving; bring pusherd back
  if [ $((SECONDS - pusherd_started)) -ge 60 ]; then backoff=1; fi
  echo "pusherd exited with status $status; restarting it in ${backoff} s (the page polls meanwhile; log .run/pusherd-$PUSHERD_PORT.log)." >&2
  sleep "$backoff" & wait $! || true  # `wait` lets a stop signal through at once
  [ "$stopping" = 1 ] && exit 0
  backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
  start_pusherd
  echo "pusherd restarted (pid $pusherd_pid)." >&2
done
