#!/usr/bin/env bash
# One command from a fresh clone to a running demo: set up, migrate the embedded SQLite database,
# build the demo county (Taishan) once, print each persona's login, serve on 127.0.0.1:$PORT with the
# timers (quota release, bed reservations, referral arrival/escalation/expiry) every minute beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export DEBUG=1
PORT="${PORT:-8000}"
py=.venv/bin/python
$py manage.py migrate --noinput -v0
$py manage.py demo_county --skip-existing --residents "${RESIDENTS:-5000}"
echo
$py manage.py portal_try --url "http://127.0.0.1:${PORT}/me/"
echo
# The timers (scheduling_tick + referrals_tick every minute) run beside the server and stop with it.
$py manage.py demo_timers &
timers=$!
trap 'kill "$timers" 2>/dev/null || true' EXIT
echo "医联 demo: http://127.0.0.1:${PORT}/   (stop with Ctrl-C; timers run every minute)"
$py manage.py runserver "127.0.0.1:${PORT}" --noreload
