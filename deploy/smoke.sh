#!/usr/bin/env bash
# Smoke test of the production stack on loopback: gunicorn, two Celery workers and beat
# against the machine's PostgreSQL and Redis, with production settings (DEBUG off), then
# a small evaluation driven through HTTP from registration to public verification
# (deploy/smoke.py). Stops everything it started, whatever happens.
#
#   deploy/smoke.sh            (or `make smoke`; CI runs it after `make test`)
#
# SMOKE_DATABASE_URL  PostgreSQL database to create afresh (dropped first)
#                     default postgres://postgres@127.0.0.1:5432/joint_smoke
# SMOKE_REDIS_URL     Redis server; DB 3 is the broker, DB 4 the cache (both flushed)
#                     default redis://127.0.0.1:6379
# SMOKE_KEEP=1        keep the temporary directory (logs, media, keys) afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
SMOKE_DATABASE_URL=${SMOKE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/joint_smoke}
SMOKE_REDIS_URL=${SMOKE_REDIS_URL:-redis://127.0.0.1:6379}
SMOKE_REDIS_URL=${SMOKE_REDIS_URL%/}
T0=$EPOCHREALTIME

say() { printf '[%6.1fs] %s\n' "$(awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { print a - b }')" "$*"; }
fail() { say "SMOKE FAILED: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/joint-smoke.XXXXXX")
PIDS=()
OK=0

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Each process leads its own process group (setsid): TERM the group, so a Celery
    # worker's pool child goes with it; KILL whatever is left after 20 s.
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$OK" != 1 ]; then
        for logfile in "$WORK"/*.log; do
            [ -f "$logfile" ] || continue
            echo "----- last lines of $(basename "$logfile") -----" >&2
            tail -n 25 "$logfile" >&2
        done
    fi
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
        echo "smoke: files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    say "stopped everything ($([ "$OK" = 1 ] && echo passed || echo FAILED))"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start "$name" "$command...": in its own process group, output to $WORK/$name.log.
# (A script runs without job control, so a background job is no group leader and setsid
# does not fork: $! is the new group's leader, and `kill -- -$!` reaches its children.)
start() {
    local name=$1
    shift
    setsid "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    PIDS+=("$!")
}

# Production-like environment: DEBUG off, a real SECRET_KEY, hosts limited, Redis cache
# and broker, files under the temporary directory. Plain HTTP on loopback, so cookies
# are not Secure-only and there is no HTTPS redirect (check --deploy covers those).
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DEBUG=0
SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')
export SECRET_KEY
export ALLOWED_HOSTS=127.0.0.1
export CSRF_TRUSTED_ORIGINS="http://127.0.0.1:$PORT"
export SECURE_COOKIES=0 SECURE_SSL_REDIRECT=0 SECURE_HSTS_SECONDS=0
export DATABASE_URL=$SMOKE_DATABASE_URL
export CELERY_BROKER_URL="$SMOKE_REDIS_URL/3"
export CELERY_RESULT_BACKEND="$SMOKE_REDIS_URL/3"
export CACHE_URL="$SMOKE_REDIS_URL/4"
export VAR_DIR="$WORK/var" MEDIA_ROOT="$WORK/var/media" STATIC_ROOT="$WORK/static"
export SIGNING_KEYS_DIR="$WORK/keys" EXCHANGE_DIR="$WORK/var/exchange"
export PUBLIC_BASE_URL="http://127.0.0.1:$PORT"
export STATIC_MANIFEST=1
export PROTECTED_MEDIA_PREFIX=""  # no nginx here: Django streams the files
export TRUSTED_PROXY_COUNT=0
export LOG_LEVEL=WARNING
export GUNICORN_BIND="127.0.0.1:$PORT" GUNICORN_WORKERS=2
export SMOKE_PASSWORD=demo-2026  # the demo accounts' password (cases/demo.py)
unset DJANGO_SETTINGS_MODULE CI_DATABASE_URL CI_CELERY_BROKER_URL

say "fresh database $(basename "$SMOKE_DATABASE_URL"), Redis DBs 3 and 4 flushed; files in $WORK"
"$PY" - <<'PY' || fail "PostgreSQL or Redis unavailable"
import os
import psycopg
import redis
from urllib.parse import urlsplit, urlunsplit

url = urlsplit(os.environ["DATABASE_URL"])
name = url.path.lstrip("/")
if not name.replace("_", "").isalnum():
    raise SystemExit(f"unexpected database name {name!r}")
admin = urlunsplit(url._replace(path="/postgres"))
with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{name}"')
for key in ("CELERY_BROKER_URL", "CACHE_URL"):
    redis.Redis.from_url(os.environ[key], socket_connect_timeout=5).flushdb()
PY

say "migrate"
"$PY" manage.py migrate --no-input -v0 || fail "migrate"
say "collectstatic (hashed names)"
"$PY" manage.py collectstatic --no-input -v0 || fail "collectstatic"
say "accounts and issuers (demo_accounts, issuance.demo.ensure_issuers)"
"$PY" manage.py demo_accounts >/dev/null || fail "demo_accounts"
SMOKE_USERS="$WORK/users.json" "$PY" manage.py shell -v 0 -c '
import json, os
from django.contrib.auth import get_user_model
from issuance.demo import ensure_issuers
ensure_issuers()
with open(os.environ["SMOKE_USERS"], "w") as out:
    json.dump(dict(get_user_model().objects.values_list("username", "pk")), out)
' || fail "issuers"

say "start gunicorn on 127.0.0.1:$PORT, two workers, beat"
start gunicorn "$BIN/gunicorn" -c deploy/gunicorn.conf.py config.wsgi
for n in 1 2; do
    start "worker$n" "$BIN/celery" -A config worker -l INFO -O fair --prefetch-multiplier=1 \
        -c 1 -n "smoke$n@%h"
done
start beat "$BIN/celery" -A config beat -l INFO -s "$WORK/celerybeat-schedule" \
    --pidfile="$WORK/beat.pid"

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq 1 $((seconds * 4))); do
        "$@" >/dev/null 2>&1 && return 0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a process exited early (waiting for $what)"; done
        sleep 0.25
    done
    fail "timed out after ${seconds}s waiting for $what"
}
wait_for 60 "/healthz" "$PY" -c "
import urllib.request
with urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=2) as r:
    assert r.status == 200 and r.read() == b'ok'
"
say "gunicorn answers /healthz"
for n in 1 2; do wait_for 60 "worker $n" grep -q "smoke$n@.* ready" "$WORK/worker$n.log"; done
say "both workers ready"
wait_for 30 "beat" grep -q "beat: Starting" "$WORK/beat.log"
say "beat started"

"$PY" deploy/smoke.py --base-url "http://127.0.0.1:$PORT" --users "$WORK/users.json" \
    || fail "the HTTP walk-through (deploy/smoke.py) failed"

# The PDFs were rendered by the workers, not the web process (which has a broker and
# never renders): at least one render task succeeded in a worker log.
renders=$(cat "$WORK"/worker*.log | grep -c "issuance.tasks.certificates\?_render\[.*succeeded" || true)
[ "$renders" -ge 1 ] || fail "no worker log shows a certificate render task"
for n in 1 2; do
    say "worker $n ran $(grep -c "succeeded in" "$WORK/worker$n.log" || true) task(s)"
done
say "audit chain after the multi-process run"
"$PY" manage.py audit_verify || fail "audit chain broken"
OK=1
say "smoke passed"
