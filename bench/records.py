"""Records benchmark: the demo county with a year of clinical records on PostgreSQL, and the patient
360 timeline on top of it.

    bench/run.sh records                  # = .venv/bin/python bench/records.py
    BENCH_RECORDS_ENCOUNTERS=500000 bench/run.sh records     # a smaller run

Creates (or recreates) the database `records_bench`, migrates it (not timed), runs
`manage.py demo_county --encounters=N` as a child process (timed: county, residents, identities, then
the records with COPY; default N = 5,000,000, which builds about 1.6M residents), with its peak memory
and CPU time from wait4. Then, in this process, times the first page of the timeline of the patients with
the most encounters and of a random sample of residents, as the 360 view and the API read it. Replaces
the `<!-- bench:records -->` section of docs/benchmarks.md. Asserts no timing; CI never runs it.
`BENCH_RECORDS_RESIDENTS` fixes the residents instead (the records then stop at N encounters or run out).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
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
ENCOUNTERS = int(os.environ.get("BENCH_RECORDS_ENCOUNTERS", "5000000"))
RESIDENTS = os.environ.get("BENCH_RECORDS_RESIDENTS")
BUSIEST = 100
RANDOM = 200


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def _machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores (nproc), {memory:.1f} GiB RAM; Linux {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
        server_version = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]  # type: ignore[index]
    env = {**os.environ, "DATABASE_URL": f"{SERVER}/{DATABASE}", "DJANGO_SETTINGS_MODULE": "yilian.settings", "DEBUG": "0"}
    env.setdefault("SECRET_KEY", "records-bench-only-not-secret")
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    arguments = [f"--encounters={ENCOUNTERS}", *([f"--residents={RESIDENTS}"] if RESIDENTS else []), "--quiet"]
    load_before = os.getloadavg()
    started = time.perf_counter()
    child = subprocess.Popen(
        [PYTHON, "manage.py", "demo_county", *arguments], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.exit(f"demo_county failed ({child.returncode}):\n{output}")
    line = next(line for line in output.splitlines() if line.startswith("已建立演示县"))
    counts = {label: int(n.replace(",", "")) for label, n in re.findall(r"([^\s：，]+) ([\d,]+)(?=，|。)", line)}
    records_seconds = float(re.search(r"病历 ([\d.]+) 秒", line).group(1))  # type: ignore[union-attr]
    rebuild = re.search(r"重建索引与约束 ([\d.]+) 秒", line)
    rebuild_seconds = float(rebuild.group(1)) if rebuild else 0.0
    record_labels = ("源身份", "就诊", "诊断", "检验/体征", "检查报告", "处方", "文书", "医保结算")
    record_rows = sum(counts[label] for label in record_labels)
    all_rows = record_rows + counts["居民"] + counts.get("主索引源身份", 0)

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
            "SELECT relname, reltuples::bigint, pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid) "
            "FROM pg_class c WHERE relkind = 'r' AND (relname LIKE 'records_%%' OR relname LIKE 'patients_%%') "
            "AND reltuples > 0 ORDER BY pg_total_relation_size(c.oid) DESC"
        )
        tables = cursor.fetchall()
        cursor.execute("SHOW shared_buffers")
        shared_buffers = cursor.fetchone()[0]
    busiest = list(
        Encounter.objects.values("identity__patient")
        .annotate(n=Count("id"))
        .order_by("-n", "identity__patient")
        .values_list("identity__patient", flat=True)[:BUSIEST]
    )
    bounds = Patient.objects.order_by("pk").values_list("pk", flat=True)
    first, last = bounds.first(), bounds.last()
    rng = random.Random(2026)
    sampled = [rng.randrange(first, last + 1) for _ in range(RANDOM)] if first and last else []

    def timings(pks: list[int], filters: TimelineFilter) -> list[float]:
        measured = []
        for pk in pks:
            patient = Patient.objects.filter(pk=pk).first()
            if patient is None:
                continue
            began = time.perf_counter()
            timeline_page(patient, filters, page=1, page_size=20)
            measured.append((time.perf_counter() - began) * 1000)
        return measured

    everything = TimelineFilter()
    lab = TimelineFilter(kinds=frozenset({"observation"}), query="1558")
    rows = [
        (f"page 1, all kinds, the {BUSIEST} patients with most encounters", timings(busiest, everything)),
        (f"page 1, all kinds, {RANDOM} random residents", timings(sampled, everything)),
        (f"lab filter (observations, code 1558…), the {BUSIEST} busiest", timings(busiest, lab)),
    ]
    timeline = "\n".join(
        f"| {label} | {statistics.median(t):.1f} | {_percentile(t, 0.95):.1f} | {max(t):.1f} |" for label, t in rows if t
    )
    sizes = "\n".join(
        f"| `{name}` | {n:,} | {heap / 2**20:,.0f} | {indexes / 2**20:,.0f} | {total / 2**20:,.0f} |"
        for name, n, heap, indexes, total in tables
    )
    records_total = sum(total for name, _n, _h, _i, total in tables if name.startswith("records_"))
    maxrss = usage.ru_maxrss / 1024
    command = "bench/run.sh records" + (f" (BENCH_RECORDS_ENCOUNTERS={ENCOUNTERS})" if ENCOUNTERS != 5_000_000 else "")
    if RESIDENTS:
        command += f" BENCH_RECORDS_RESIDENTS={RESIDENTS}"

    load = (
        f"load average (1/5/15 min) {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} just before the run, "
        f"{load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} right after (other helpers' work shares the cores)"
    )
    figures = [
        ("residents", f"{counts['居民']:,}"),
        ("encounters written", f"{counts['就诊']:,}"),
        ("record rows written (the identities the records add, and the seven record tables)", f"{record_rows:,}"),
        ("wall time of `demo_county` (county, residents, MPI identities, records)", f"**{wall:.0f} s** ({wall / 60:.1f} min)"),
        ("of which the records load (generate, COPY, rebuild indexes; as the command reports it)", f"{records_seconds:.0f} s"),
        ("of which rebuilding the dropped indexes, unique constraints and foreign keys", f"{rebuild_seconds:.0f} s"),
        (
            f"rows per second: records load / whole command ({all_rows:,} rows)",
            f"{record_rows / records_seconds:,.0f} / {all_rows / wall:,.0f}",
        ),
        ("encounters per second, whole command", f"{counts['就诊'] / wall:,.0f}"),
        ("peak memory of the command (`ru_maxrss`)", f"{maxrss:,.0f} MiB"),
        (
            "CPU time of the command (user + system); the rest of the wall time waits on the server",
            f"{usage.ru_utime + usage.ru_stime:.0f} s",
        ),
        ("`records_*` tables with their indexes", f"{records_total / 2**30:,.1f} GiB"),
    ]  # fmt: skip
    figure_rows = "\n".join(f"| {label} | {value} |" for label, value in figures)

    section = f"""<!-- bench:records -->
## Clinical records: demo county with a year of encounters, and the 360 timeline (PostgreSQL)

- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC (commit `{_commit()}`)
- Machine: {_machine()}, {server_version} on the same machine; {load}
- Command: `{command}` → `manage.py demo_county {" ".join(arguments)}` on a fresh database `{DATABASE}`

| figure | value |
|---|---|
{figure_rows}

The command's own line: `{line}`

Tables afterwards (rows from the statistics after ANALYZE, sizes in MiB):

| table | rows | heap | indexes | total |
|---|---|---|---|---|
{sizes}

Patient 360 timeline on the loaded data (`timeline_page`, 20 rows, in this process), ms. Each patient is
read once: the busiest patients' rows were just read by the query that found them, a random resident's may
come from disk (the tables are far larger than the server's `shared_buffers` of {shared_buffers}).

| query | p50 | p95 | max |
|---|---|---|---|
{timeline}

How: records are generated per resident in Python from one seeded `random.Random` and written as
hand-formatted lines of PostgreSQL's COPY text format (times as integer seconds, money as integer
cents, uuids from the generator's bits: no `Decimal`, `datetime` or `UUID` object per row), one COPY
per table per 5,000-resident batch while the server ingests on the other core; ids are reserved from
the sequences up front. For loads from 10,000 residents the plain indexes, foreign keys and secondary
unique constraints of the eight tables the records write are dropped first and rebuilt at the end, in
the same transaction (`maintenance_work_mem` 256 MB for that transaction), then ANALYZE. Before this
change, 100,000 residents → 320,168 encounters took 112 s (the records ~100 s of it; per-row
`write_row`, deferred foreign-key checks and index maintenance), so 5M encounters would have taken ~29 min.
The timeline is one `UNION ALL` over the eight record tables on `identity__patient` (each has an
`(identity, -time)` index), ordered and sliced in the database, then one query per kind on the page.
<!-- /bench:records -->"""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(r"<!-- bench:records -->.*?<!-- /bench:records -->", re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
