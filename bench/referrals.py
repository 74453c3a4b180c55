"""Referral inbox benchmark (issue 5): the demo county with 100,000 historical referrals on PostgreSQL,
then the receiver's inbox under concurrent clients, and the query plans of inbox, outbox and board.

    bench/run.sh referrals                 # build the database, measure, write docs/benchmarks.md
    bench/run.sh referrals --reuse         # measure again on the database already built

Environment: BENCH_PG (server URL), BENCH_REFERRAL_DB (default yilian_refdemo_bench),
BENCH_REFERRAL_RESIDENTS (100,000), BENCH_REFERRALS (historical referrals, 100,000),
BENCH_REFERRAL_CLIENTS (concurrent clients, 8), BENCH_REFERRAL_REQUESTS (per persona and run, 800),
BENCH_PORT (gunicorn, 8765).

What is measured depends on what the branch has:
- the inbox page (`referrals:inbox`) or the API list (`/api/v1/referrals`): over HTTP, gunicorn
  (2 workers × 4 threads, DEBUG off) and wrk with N connections, as bench/foundation.py measures pages;
- neither (the core app only): in-process, N worker processes each with its own database connection
  run what an inbox page does — `referrals.selectors.inbox(actor)`, its first 20 rows with their
  related rows, `status_counts`, `overdue_count`, and a table of the 20 rows rendered by Django's
  template engine — and time each such "request". The section says which mode ran.
Asserts no timing; CI never runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import foundation  # noqa: E402  (bench/foundation.py: report, machine, gunicorn and wrk helpers)

PYTHON = str(ROOT / ".venv" / "bin" / "python")
SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
DATABASE = os.environ.get("BENCH_REFERRAL_DB", "yilian_refdemo_bench")
DATABASE_URL = f"{SERVER}/{DATABASE}"
RESIDENTS = int(os.environ.get("BENCH_REFERRAL_RESIDENTS", "100000"))
REFERRALS = int(os.environ.get("BENCH_REFERRALS", "100000"))
CLIENTS = int(os.environ.get("BENCH_REFERRAL_CLIENTS", "8"))
REQUESTS = int(os.environ.get("BENCH_REFERRAL_REQUESTS", "800"))
PORT = int(os.environ.get("BENCH_PORT", "8765"))
PAGE_SIZE = 20
# (username, institution of the membership acting): the receivers whose inbox is measured.
PERSONAS = (("coordinator", "台山市人民医院"), ("lead_doctor", "台山市人民医院"), ("township_doctor", "水步镇卫生院"))


def env(**extra: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_SETTINGS_MODULE"}}
    values.update(
        DATABASE_URL=DATABASE_URL,
        DJANGO_SETTINGS_MODULE="yilian.settings",
        SECRET_KEY="bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        YILIAN_SECURE="0",
        LOG_LEVEL="WARNING",
    )
    values.update(extra)
    return values


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --- the database ----------------------------------------------------------------------------------


def build() -> dict[str, object]:
    """A fresh database with the demo county and REFERRALS historical referrals (timed)."""
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env(), check=True)
    command = [
        PYTHON, "manage.py", "demo_county", f"--residents={RESIDENTS}", f"--referral-history={REFERRALS}", "--quiet",
    ]  # fmt: skip
    foundation.log(f"referrals: {' '.join(command[1:])} on {DATABASE}")
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"demo_county failed:\n{output}")
    line = next((line for line in output.splitlines() if line.startswith("已建立")), "")
    return {"wall": wall, "maxrss_mib": usage.ru_maxrss / 1024, "line": line}


def table_figures() -> dict[str, object]:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) referrals_referral")
        conn.execute("VACUUM (ANALYZE) referrals_referralevent")
        conn.execute("VACUUM (ANALYZE) access_accessgrant")
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status IN ('submitted','accepted','scheduled','arrived')),"
            " pg_size_pretty(pg_total_relation_size('referrals_referral')),"
            " (SELECT count(*) FROM referrals_referralevent), (SELECT count(*) FROM patients_patient)"
            " FROM referrals_referral"
        ).fetchone()
        per_destination = conn.execute(
            "SELECT i.name, count(*) FROM referrals_referral r JOIN organizations_institution i"
            " ON i.id = r.destination_institution_id GROUP BY i.name ORDER BY 2 DESC LIMIT 3"
        ).fetchall()
    assert row is not None
    return {
        "referrals": row[0],
        "open": row[1],
        "size": row[2],
        "events": row[3],
        "residents": row[4],
        "busiest": ", ".join(f"{name} {n:,}" for name, n in per_destination),
    }


# --- in-process mode (no page yet) -------------------------------------------------------------------

WORKER = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["YL_ROOT"])
import django
django.setup()
from django.template import Context, Template
from django.utils import timezone
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership
from yilian.referrals import selectors

TEMPLATE = Template('''<table>{% for r in rows %}<tr class="{% if r.is_overdue %}overdue{% endif %}">
<td>{{ r.number }}</td><td>{{ r.patient.name }}</td><td>{{ r.get_direction_display }}</td>
<td>{{ r.get_urgency_display }}</td><td>{{ r.get_status_display }}</td><td>{{ r.sender_institution.display_name }}</td>
<td>{{ r.destination_department.name|default:"" }}</td><td>{{ r.diagnosis_name }}</td>
<td>{{ r.submitted_at|date:"Y-m-d H:i" }}</td><td>{{ r.accept_by|timeuntil }}</td>
<td>{% if r.booking %}{{ r.booking.slot.start|date:"m-d H:i" }}{% endif %}</td></tr>{% endfor %}</table>
{% for status, n in counts.items %}<span>{{ status }} {{ n }}</span>{% endfor %}<b>{{ overdue }}</b>''')

username, institution, requests, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
membership = Membership.objects.select_related("user", "institution", "department").get(
    user__username=username, institution__name=institution
)
actor = Actor(user=membership.user, membership=membership)
listing = {"inbox": selectors.inbox, "outbox": selectors.outbox, "board": selectors.board}[what]

def page():
    queryset = listing(actor)
    rows = list(queryset[:20])
    now = timezone.now()
    for row in rows:
        row.is_overdue = row.status == "submitted" and row.accept_by < now
    counts = selectors.status_counts(queryset)
    overdue = selectors.overdue_count(queryset)
    return TEMPLATE.render(Context({"rows": rows, "counts": counts, "overdue": overdue}))

page()  # warm-up: connection, template, translations
times, size = [], 0
for _ in range(requests):
    started = time.perf_counter()
    size = len(page())
    times.append((time.perf_counter() - started) * 1000)
print(json.dumps({"times": times, "bytes": size}))
"""


def in_process(username: str, institution: str, what: str, clients: int, total: int) -> dict[str, float]:
    """`clients` worker processes, `total` timed pages between them; latencies of every page."""
    per_client = max(1, total // clients)
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [PYTHON, "-c", WORKER, username, institution, str(per_client), what],
            cwd=ROOT,
            env=env(YL_ROOT=str(ROOT)),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    times: list[float] = []
    size = 0
    for worker in workers:
        out, _err = worker.communicate()
        if worker.returncode:
            sys.exit(f"worker failed for {username} {what}")
        answer = json.loads(out.strip().splitlines()[-1])
        times += answer["times"]
        size = answer["bytes"]
    wall = time.perf_counter() - started
    return {
        "n": len(times),
        "p50": percentile(times, 0.50),
        "p95": percentile(times, 0.95),
        "p99": percentile(times, 0.99),
        "max": max(times),
        "mean": statistics.fmean(times),
        "per_s": len(times) / wall,
        "bytes": size,
    }


# --- HTTP mode (once a page or the API exists) ----------------------------------------------------------

PROBE = r"""
import os, sys
sys.path.insert(0, os.environ["YL_ROOT"])
import django
django.setup()
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
found = []
try:
    found.append(reverse("referrals:inbox"))
except NoReverseMatch:
    pass
try:
    match = resolve("/api/v1/referrals")
    if match.url_name != "not-found" and not match.route.endswith(".*$"):  # the API's catch-all for unknown paths
        found.append("/api/v1/referrals")
except Resolver404:
    pass
print(" ".join(found))
"""


def http_targets() -> list[str]:
    done = subprocess.run([PYTHON, "-c", PROBE], cwd=ROOT, env=env(YL_ROOT=str(ROOT)), capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else []


def over_http(paths: list[str], clients: int, total: int) -> list[dict[str, object]]:
    """gunicorn + wrk, as bench/foundation.py measures pages; each persona logs in through the form."""
    subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env(), check=True)
    base = f"http://127.0.0.1:{PORT}"
    server = [
        foundation.GUNICORN,
        "yilian.wsgi",
        "-w",
        "2",
        "--threads",
        "4",
        "-b",
        f"127.0.0.1:{PORT}",
        "--log-level",
        "warning",
    ]
    results: list[dict[str, object]] = []
    with foundation.process_group(server, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as gunicorn:
        foundation.wait_for_http(f"{base}/accounts/login/", timeout=60, process=gunicorn)
        for username, _institution in PERSONAS:
            cookie = foundation.login_cookie(base, username)
            for path in paths:
                foundation.run_wrk(base, path, cookie, 100, clients=clients)
                alone = foundation.run_wrk(base, path, cookie, 200, clients=1)
                figures = foundation.run_wrk(base, path, cookie, total, clients=clients)
                results.append({"persona": username, "path": path, "figures": figures, "alone": alone})
    return results


# --- plans -------------------------------------------------------------------------------------------------

EXPLAIN = r"""
import os, sys, re
sys.path.insert(0, os.environ["YL_ROOT"])
import django
django.setup()
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership
from yilian.referrals import selectors

def actor(username, institution):
    m = Membership.objects.select_related("user", "institution").get(user__username=username, institution__name=institution)
    return Actor(user=m.user, membership=m)

cases = [
    ("inbox · coordinator (台山市人民医院)", selectors.inbox(actor("coordinator", "台山市人民医院"))),
    ("inbox · township_doctor (水步镇卫生院)", selectors.inbox(actor("township_doctor", "水步镇卫生院"))),
    ("outbox · township_doctor (水步镇卫生院)", selectors.outbox(actor("township_doctor", "水步镇卫生院"))),
    ("outbox · lead_doctor (台山市人民医院)", selectors.outbox(actor("lead_doctor", "台山市人民医院"))),
    ("board · coordinator", selectors.board(actor("coordinator", "台山市人民医院"))),
]
for title, queryset in cases:
    for label, q in (("first 20 rows", queryset[:20]), ("status counts", queryset.order_by().values("status"))):
        if label == "status counts":
            from django.db.models import Count
            q = q.annotate(n=Count("id"))
        plan = q.explain(analyze=True, buffers=True)
        print(f"=== {title} — {label}")
        print(plan)
"""


def explain() -> str:
    done = subprocess.run(
        [PYTHON, "-c", EXPLAIN], cwd=ROOT, env=env(YL_ROOT=str(ROOT)), capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"explain failed:\n{done.stderr}")
    return done.stdout


def plan_summary(plans: str) -> list[tuple[str, str, str]]:
    """(query, execution time, the plan's scan nodes) of each EXPLAIN ANALYZE."""
    rows = []
    for block in plans.split("=== ")[1:]:
        title, _, body = block.partition("\n")
        time_ms = re.search(r"Execution Time: ([\d.]+) ms", body)
        scans = sorted(
            set(
                re.findall(
                    r"((?:Parallel )?(?:Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)[^(]*?)(?: \(|$)", body, re.M
                )
            )
        )
        rows.append((title.strip(), time_ms.group(1) if time_ms else "?", "; ".join(s.strip() for s in scans)[:300]))
    return rows


# --- report -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="measure the database already built")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args()
    machine_before = foundation.machine()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    built = None if args.reuse else build()
    tables = table_figures()
    plans = explain()
    (ROOT / "bench" / "results-referrals-plans.txt").write_text(plans, encoding="utf-8")
    targets = http_targets()
    lines: list[str] = []
    if targets:
        mode = f"HTTP: gunicorn (2 workers × 4 threads) and wrk with {args.clients} connections on {', '.join(targets)}"
        results = over_http(targets, args.clients, args.requests)
        lines.append("| persona | path | requests | req/s | p50 ms | p95 ms | p99 ms | not 200 | 1 client p50/p95 ms |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            f, a = r["figures"], r["alone"]  # type: ignore[assignment]
            rate = f["requests"] / (f["duration_us"] / 1e6) if f["duration_us"] else 0  # type: ignore[index]
            lines.append(
                f"| {r['persona']} | `{r['path']}` | {f['requests']:,} | {rate:,.0f} | {f['p50_us'] / 1000:.0f} | "  # type: ignore[index]
                f"{f['p95_us'] / 1000:.0f} | {f['p99_us'] / 1000:.0f} | {f['non200']} | "  # type: ignore[index]
                f"{a['p50_us'] / 1000:.0f} / {a['p95_us'] / 1000:.0f} |"  # type: ignore[index]
            )
        worst = max(r["figures"]["p95_us"] / 1000 for r in results)  # type: ignore[index]
    else:
        mode = (
            "in-process (no inbox page and no `/api/v1/referrals` on this branch yet): "
            f"{args.clients} worker processes, each with its own PostgreSQL connection, run the inbox selector, "
            f"its first {PAGE_SIZE} rows with related rows, the status counts, the overdue count and a rendered "
            "table of the rows; no HTTP, session or middleware cost is included"
        )
        lines.append("| persona | list | pages | pages/s | p50 ms | p95 ms | p99 ms | max ms | 1 client p50/p95 ms |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        worst = 0.0
        for username, institution in PERSONAS:
            for what in (
                "inbox",
                *(("board",) if username == "coordinator" else ()),
                *(("outbox",) if username == "township_doctor" else ()),
            ):
                foundation.log(f"referrals: {what} of {username}, 1 client then {args.clients}")
                alone = in_process(username, institution, what, 1, 100)
                loaded = in_process(username, institution, what, args.clients, args.requests)
                if what == "inbox":
                    worst = max(worst, loaded["p95"])
                lines.append(
                    f"| {username} ({institution}) | {what} | {loaded['n']:,} | {loaded['per_s']:,.0f} | {loaded['p50']:.1f} | "
                    f"{loaded['p95']:.1f} | {loaded['p99']:.1f} | {loaded['max']:.0f} | {alone['p50']:.1f} / {alone['p95']:.1f} |"
                )
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    plan_rows = "\n".join(f"| {title} | {ms} | {scans} |" for title, ms, scans in plan_summary(plans))
    build_line = (
        f"Built by `manage.py demo_county --residents={RESIDENTS} --referral-history={REFERRALS}` in "
        f"{built['wall']:.0f} s (peak {built['maxrss_mib']:.0f} MiB): `{built['line']}`"
        if built
        else "Database reused (`--reuse`), built earlier by the same command."
    )
    body = f"""
Database `{DATABASE}`: {tables["residents"]:,} residents, {tables["referrals"]:,} referrals ({tables["open"]:,} open),
{tables["events"]:,} referral events; `referrals_referral` with indexes {tables["size"]}. Busiest receivers: {tables["busiest"]}.
{build_line}

Mode: {mode}. Load `uptime` before: `{uptime_before}`; after: `{uptime_after}`.

{chr(10).join(lines)}

Goal (our page goal, the issue names none for the inbox): p95 ≤ 100 ms — worst inbox p95 {worst:.0f} ms:
{"met" if worst <= 100 else "NOT met"}.

Query plans (EXPLAIN (ANALYZE, BUFFERS) at this size; full text in `bench/results-referrals-plans.txt`):

| query | execution ms | scans |
|---|---|---|
{plan_rows}
"""
    foundation.write_section(
        "referrals",
        "Issue 5 — referral inbox",
        f"bench/run.sh referrals{' --reuse' if args.reuse else ''} (clients {args.clients}, requests {args.requests})",
        body,
        machine_before=machine_before,
    )


if __name__ == "__main__":
    main()
