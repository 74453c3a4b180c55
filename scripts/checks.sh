#!/usr/bin/env bash
# The checks alone, on an environment scripts/setup.sh has prepared.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE=yilian.test_settings
echo "==> ruff";        .venv/bin/ruff check .
echo "==> ruff format"; .venv/bin/ruff format --check --quiet . || { echo "run: .venv/bin/ruff format ." >&2; exit 1; }
echo "==> mypy";        .venv/bin/mypy yilian bench
echo "==> migrations";  .venv/bin/python manage.py makemigrations --check --dry-run -v1
echo "==> tests on ${DATABASE_URL:-SQLite}"
.venv/bin/pytest -q -n "${PYTEST_WORKERS:-2}" -p no:randomly "$@"
