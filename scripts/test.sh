#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, start the services they use, and
# run the whole suite: pusherd, the conformance suite (real pusher-js, Laravel Echo, SDKs,
# headless Chromium), attendance_api and its web frontend (built here, tested in Chromium),
# and the benchmark smoke runs.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "Python environment (.venv) with pinned requirements"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
req_args=()
for f in requirements/*.txt; do req_args+=(-r "$f"); done
.venv/bin/python -m pip install -q "${req_args[@]}"
.venv/bin/python -m pip install -q --no-deps -e .

step "Node clients (pusher-js, laravel-echo, pusher, playwright-core) from package-lock.json"
if ! (cd protocol_tests && npm ls --depth=0 >/dev/null 2>&1); then
  npm ci --prefix protocol_tests --no-audit --no-fund
fi

step "The attendance web frontend (npm ci + vite build, only when its sources changed)"
bash scripts/build-frontend.sh

step "Chromium for the browser tests"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
chromium --version 2>/dev/null | head -1 || true

step "valgrind for the instruction-count benchmark (bench.instructions)"
if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  fi
fi

step "nginx for the reverse-proxy test (tests/pusherd/test_nginx.py runs the docs' block)"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  fi
fi

step "Services: Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432"
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
for _ in $(seq 1 50); do
  redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break
  sleep 0.2
done
redis-cli -h 127.0.0.1 ping
pg_isready -h 127.0.0.1 -p 5432

step "Test suite"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest "$@"
