#!/usr/bin/env bash
# Foundation benchmarks, run apart from CI; each writes its section of docs/benchmarks.md.
#   bench/run.sh demo    demo county with 1,000,000 residents on a fresh PostgreSQL database (yl_bench)
#   bench/run.sh pages   gunicorn on that database, 20 clients, a fixed number of requests per page
#   bench/run.sh fresh   git clone of this repository to a running `make demo`
#   bench/run.sh all     the three in that order (the default)
#   bench/run.sh ingest  FHIR bundles and HL7 messages over HTTP into PostgreSQL (bench/ingest.py, own database)
#   bench/run.sh linkage master patient index: FEBRL4/3, generated Chinese set, 1M batch, online p95 (bench/linkage.py)
#   bench/run.sh booking 200 clients booking slots over HTTP, hot slots raced for, oversold units checked (bench/booking.py, own database)
#   bench/run.sh records demo county with 5,000,000 encounters, table sizes, 360 timeline (bench/records.py, own database)
#   bench/run.sh referrals  demo county with 100,000 historical referrals, inbox p50/p95 under N clients, query plans
#                           (bench/referrals.py, own database; --reuse measures the database already built)
# Environment: BENCH_PG (server URL, default postgres://postgres@127.0.0.1:5432), BENCH_RESIDENTS,
# BENCH_REQUESTS (per page and persona), BENCH_PORT (gunicorn), FRESH_PORT (make demo),
# BENCH_RECORDS_ENCOUNTERS / BENCH_RECORDS_RESIDENTS (records).
# BENCH_BOOKING_DB, BENCH_BOOKING_CLIENTS, BENCH_BOOKING_REQUESTS, BENCH_BOOKING_WEEKS, BENCH_BOOKING_WORKERS / _THREADS (booking).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
[ $# -gt 0 ] && shift

if [[ "$what" == all || "$what" == pages || "$what" == referrals ]] && ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing wrk (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  else
    echo "The pages benchmark needs wrk: sudo apt-get install -y wrk" >&2
    exit 1
  fi
fi
if [[ "$what" == ingest ]]; then
  exec .venv/bin/python bench/ingest.py "$@"
fi
if [[ "$what" == booking ]]; then
  exec .venv/bin/python bench/booking.py "$@"
fi
if [[ "$what" == referrals ]]; then
  exec .venv/bin/python bench/referrals.py "$@"
fi
if [[ "$what" == records ]]; then
  exec .venv/bin/python bench/records.py "$@"
fi
if [[ "$what" == linkage ]]; then
  exec .venv/bin/python bench/linkage.py "${1:-all}"
fi
exec .venv/bin/python bench/foundation.py "$what" "$@"
