"""Referral inbox benchmark (issue 5): the demo county with 100,000 historical referrals on PostgreSQL,
then the referral pages over HTTP, and the query plans of inbox, outbox and board.

    bench/run.sh referrals                 # build the database, measure, write docs/benchmarks.md
    bench/run.sh referrals --reuse         # measure again on the database already built

Environment: BENCH_PG (server URL), BENCH_REFERRAL_DB (default yilian_refdemo_bench),
BENCH_REFERRAL_RESIDENTS (100,000), BENCH_REFERRALS (historical referrals, 100,000),
BENCH_REFERRAL_CLIENTS (concurrent clients, 8), BENCH_REFERRAL_REQUESTS (per page under load, 400),
BENCH_REFERRAL_ALONE (per page with one client, 200), BENCH_PORT (gunicorn, 8765).

Pages (PAGES): the township's inbox and outbox (township_doctor at 水步镇卫生院), the lead hospital's
inbox (lead_doctor) and the coordinator's board, and the home page as a reference for what every
page costs anyway, each as its persona logged in through the form,
served by gunicorn (2 workers × 4 threads, DEBUG off) and driven by wrk: a warm-up, then ALONE
requests with one client (the latency a user sees; p95 goal 100 ms) while the server's CPU is
measured (gunicorn's process group and the database's backends, from /proc: CPU ms per request,
which the machine's load hardly changes), then REQUESTS with N clients. Each wrk run stops after its
count (bench/count.lua), so the whole run takes a few minutes. Asserts no timing; CI never runs it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
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
REQUESTS = int(os.environ.get("BENCH_REFERRAL_REQUESTS", "400"))
ALONE = int(os.environ.get("BENCH_REFERRAL_ALONE", "200"))
PORT = int(os.environ.get("BENCH_PORT", "8765"))
# (username, page): who looks at which list (each persona acts through its first membership).
PAGES = (
    ("township_doctor", "/referrals/inbox/"),
    ("township_doctor", "/referrals/outbox/"),
    ("township_doctor", "/referrals/outbox/?state=all"),  # the whole history: 3,700 referrals
    ("lead_doctor", "/referrals/inbox/"),
    ("coordinator", "/referrals/board/"),
    ("township_doctor", "/"),  # a reference: the home page (session, navigation, layout) costs this much anyway
)


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
        # The whole database: demo_county's bulk loads leave the planner without statistics (the
        # lead hospital's status counts then read 8,700 heap pages instead of one index).
        conn.execute("VACUUM (ANALYZE)")
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


# --- over HTTP ----------------------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> tuple[int, float]:
    """(process group, user + system CPU seconds) of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return -1, 0.0
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(gunicorn: int) -> dict[tuple[str, int], float]:
    """CPU seconds so far of each gunicorn process and each backend of the bench database."""
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    out = {("app", pid): cpu for pid in pids for group, cpu in [_cpu_seconds(pid)] if group == gunicorn}
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        backends = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DATABASE])]
    out.update({("db", pid): _cpu_seconds(pid)[1] for pid in backends})
    return out


def cpu_spent(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]) -> tuple[float, float]:
    """(app, database) CPU seconds between two samples (Django keeps its connections, so the
    backends live through a run)."""
    spent = {"app": 0.0, "db": 0.0}
    for (side, pid), cpu in after.items():
        spent[side] += cpu - before.get((side, pid), 0.0)
    return spent["app"], spent["db"]


def over_http(clients: int, total: int, alone_count: int) -> list[dict[str, object]]:
    """gunicorn + wrk, as bench/foundation.py measures pages; each persona logs in through the form."""
    subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env(), check=True)
    if not foundation.port_is_free(PORT):
        sys.exit(f"port {PORT} is taken; set BENCH_PORT")
    base = f"http://127.0.0.1:{PORT}"
    server = [
        foundation.GUNICORN, "yilian.wsgi", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{PORT}", "--log-level", "warning",
    ]  # fmt: skip
    results: list[dict[str, object]] = []
    with foundation.process_group(server, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as gunicorn:
        foundation.wait_for_http(f"{base}/accounts/login/", timeout=60, process=gunicorn)
        cookies: dict[str, str] = {}
        for username, path in PAGES:
            cookie = cookies.setdefault(username, foundation.login_cookie(base, username))
            probe = httpx.get(f"{base}{path}", headers={"Cookie": cookie}, timeout=60)
            if probe.status_code != 200:
                sys.exit(f"{path} answered {probe.status_code} for {username}")
            foundation.log(f"referrals: {username} {path}: warm-up, {alone_count} alone, {total} with {clients} clients")
            foundation.run_wrk(base, path, cookie, 20, clients=1)
            before = server_cpu(gunicorn.pid)
            alone = foundation.run_wrk(base, path, cookie, alone_count, clients=1)
            app_cpu, db_cpu = cpu_spent(before, server_cpu(gunicorn.pid))
            figures = foundation.run_wrk(base, path, cookie, total, clients=clients)
            results.append(
                {
                    "persona": username,
                    "path": path,
                    "figures": figures,
                    "alone": alone,
                    "app_ms": 1000 * app_cpu / max(alone["requests"], 1),
                    "db_ms": 1000 * db_cpu / max(alone["requests"], 1),
                    "kib": len(probe.content) / 1024,
                }
            )
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
from yilian.referrals.models import OPEN_STATUSES
for title, queryset in cases:
    # What a page reads (referrals.views._rows): the page's ids first, then those rows with their related rows.
    for label, q in (
        ("ids of the first 20 open (the page's default tab)", queryset.filter(status__in=OPEN_STATUSES).values("pk")[:20]),
        ("ids of the first 20 of all", queryset.values("pk")[:20]),
        ("those 20 rows", queryset.filter(pk__in=list(queryset.values_list("pk", flat=True)[:20])).order_by()),
        ("status counts", None),
    ):
        if label == "status counts":
            from django.db.models import Count
            q = queryset.order_by().values("status").annotate(n=Count("*"))  # as selectors.status_counts
        plan = q.explain(analyze=True, buffers=True, summary=True)
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
    """(query, "planning + execution" ms, the plan's scan nodes) of each EXPLAIN ANALYZE."""
    rows = []
    for block in plans.split("=== ")[1:]:
        title, _, body = block.partition("\n")
        time_ms = re.search(r"Execution Time: ([\d.]+) ms", body)
        planning = re.search(r"Planning Time: ([\d.]+) ms", body)
        scans = sorted(
            set(
                re.findall(
                    r"((?:Parallel )?(?:Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)[^(]*?)(?: \(|$)", body, re.M
                )
            )
        )
        rows.append(
            (
                title.strip(),
                f"{planning.group(1) if planning else '?'} + {time_ms.group(1) if time_ms else '?'}",
                "; ".join(s.strip() for s in scans)[:300],
            )
        )
    return rows


# --- report -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="measure the database already built")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--requests", type=int, default=REQUESTS, help="per page with --clients clients")
    parser.add_argument("--alone", type=int, default=ALONE, help="per page with one client")
    args = parser.parse_args()
    machine_before = foundation.machine()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    built = None if args.reuse else build()
    tables = table_figures()
    plans = explain()
    (ROOT / "bench" / "results-referrals-plans.txt").write_text(plans, encoding="utf-8")
    mode = (
        f"HTTP: gunicorn (2 workers × 4 threads, DEBUG off), wrk; per page a warm-up of 20, {args.alone} requests with "
        f"1 client (server CPU measured then), {args.requests} with {args.clients} clients"
    )
    results = over_http(args.clients, args.requests, args.alone)
    lines = [
        "| persona | page | 1 client p50 / p95 ms | server CPU ms per request (app + db) | "
        f"{args.clients} clients: requests | req/s | p50 ms | p95 ms | p99 ms | not 200 | KiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        f, a = r["figures"], r["alone"]  # type: ignore[assignment]
        rate = f["requests"] / (f["duration_us"] / 1e6) if f["duration_us"] else 0  # type: ignore[index]
        lines.append(
            f"| {r['persona']} | `{r['path']}` | {a['p50_us'] / 1000:.0f} / {a['p95_us'] / 1000:.0f} | "  # type: ignore[index]
            f"{r['app_ms']:.0f} + {r['db_ms']:.0f} | {f['requests']:,} | {rate:,.0f} | {f['p50_us'] / 1000:.0f} | "  # type: ignore[index]
            f"{f['p95_us'] / 1000:.0f} | {f['p99_us'] / 1000:.0f} | {f['non200'] + a['non200']} | {r['kib']:.0f} |"  # type: ignore[index]
        )
    worst = max(r["alone"]["p95_us"] / 1000 for r in results if r["path"] != "/")  # type: ignore[index]
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

Goal (our page goal, the issue names none for the inbox): p95 ≤ 100 ms with one client — worst {worst:.0f} ms:
{"met" if worst <= 100 else "NOT met"} (figures under load depend on what else the 2 cores run: see the load average).

Query plans (EXPLAIN (ANALYZE, BUFFERS) at this size; full text in `bench/results-referrals-plans.txt`):

| query | planning + execution ms | scans |
|---|---|---|
{plan_rows}
"""
    foundation.write_section(
        "referrals",
        "Issue 5 — referral inbox",
        f"bench/run.sh referrals{' --reuse' if args.reuse else ''} "
        f"(clients {args.clients}, requests {args.requests}, alone {args.alone})",
        body,
        machine_before=machine_before,
    )


if __name__ == "__main__":
    main()
