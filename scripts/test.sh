#!/usr/bin/env bash
# Set up and run every check: ruff, mypy, migrations check, and the whole test suite
# (including the Chromium browser tests). DATABASE_URL=postgres://... runs it on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --browser
./scripts/checks.sh
