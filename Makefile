# Two commands on a fresh machine (see README.md):
#   make demo   set up and run the demo on http://127.0.0.1:8000 (SQLite, demo county, persona logins printed)
#   make test   set up and run every check and test (DATABASE_URL=postgres://... for PostgreSQL)
.PHONY: demo test checks setup worker bench

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

checks:
	./scripts/checks.sh

setup:
	./scripts/setup.sh --browser

worker:
	DEBUG=1 .venv/bin/python manage.py db_worker

bench:
	./bench/run.sh all
