"""Records benchmark: the demo county with a year of clinical records on PostgreSQL, and the patient
360 timeline on top of it.

    .venv/bin/python bench/records.py            # BENCH_RECORDS_RESIDENTS=200000 by default

Creates (or recreates) the database `records_bench`, migrates it (not timed), runs
`manage.py demo_county --residents=N` as a child process (timed; the command loads residents and
then their records with COPY), then, in this process, times the first page of the timeline of the
patients with the most records, as the 360 view and the API read it. Replaces the
`<!-- bench:records -->` section of docs/benchmarks.md. Asserts no timing; CI never runs it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
DATABASE = "records_bench"
RESIDENTS = int(os.environ.get("BENCH_RECORDS_RESIDENTS", "200000"))
SAMPLE = 50


def main() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    env = {**os.environ, "DATABASE_URL": f"{SERVER}/{DATABASE}", "DJANGO_SETTINGS_MODULE": "yilian.settings", "DEBUG": "0"}
    env.setdefault("SECRET_KEY", "records-bench-only-not-secret")
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    started = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "manage.py", "demo_county", f"--residents={RESIDENTS}", "--quiet"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    line = next(line for line in done.stdout.splitlines() if line.startswith("已建立演示县"))

    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection
    from django.db.models import Count

    from yilian.patients.models import Patient
    from yilian.records.models import Encounter
    from yilian.records.selectors import TimelineFilter, timeline_page

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute(
            "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c WHERE relname LIKE 'records_%%' AND relkind = 'r'"
        )
        sizes = dict(cursor.fetchall())
    encounters = Encounter.objects.count()
    busiest = list(Patient.objects.annotate(n=Count("identities")).order_by("-n", "id").values_list("id", flat=True)[:SAMPLE])
    timings = []
    for pk in busiest:
        patient = Patient.objects.get(pk=pk)
        began = time.perf_counter()
        timeline_page(patient, TimelineFilter(), page=1, page_size=20)
        timings.append((time.perf_counter() - began) * 1000)
    timings.sort()
    filtered = []
    for pk in busiest:
        patient = Patient.objects.get(pk=pk)
        began = time.perf_counter()
        timeline_page(patient, TimelineFilter(kinds=frozenset({"observation"}), query="1558"), page=1, page_size=20)
        filtered.append((time.perf_counter() - began) * 1000)
    filtered.sort()
    p50 = statistics.median(timings)

    section = f"""<!-- bench:records -->
## Clinical records: demo county with a year of encounters, and the 360 timeline (PostgreSQL)

- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores shared with other work; PostgreSQL local
- Command: `BENCH_RECORDS_RESIDENTS={RESIDENTS} .venv/bin/python bench/records.py`

| figure | value |
|---|---|
| residents | {RESIDENTS:,} |
| encounters written | {encounters:,} |
| wall time of `demo_county` (residents + records, process start to exit) | {wall:.1f} s |
| `records_*` tables with indexes | {sum(sizes.values()) / 2**20:,.0f} MiB |
| timeline page 1 (20 rows, all kinds), {SAMPLE} busiest patients, p50 / max | {p50:.1f} / {timings[-1]:.1f} ms |
| timeline filtered (lab, code 1558…), p50 / max | {statistics.median(filtered):.1f} / {filtered[-1]:.1f} ms |

At {encounters / wall:,.0f} encounters per second of command time, 5,000,000 encounters (about 1.6M
residents) would take about {5_000_000 / (encounters / wall) / 60:.0f} minutes: the load is linear; that size was not run.

The command's own line: `{line}`

How: records are generated per resident in Python from one seeded `random.Random`, ids reserved from
the sequences up front, and streamed with psycopg 3 `COPY` per table in 5,000-resident batches. The
timeline is one `UNION ALL` over the eight record tables on `identity__patient` (each has an
`(identity, -time)` index), ordered and sliced in the database, then one query per kind on the page.
<!-- /bench:records -->"""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(r"<!-- bench:records -->.*?<!-- /bench:records -->", re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
