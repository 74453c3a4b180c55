"""Booking benchmark (issue 5): 200 concurrent clients booking slots through the HTTP API on PostgreSQL.

Run through `bench/run.sh booking`. It builds its own database (default yl_bench_booking, or
BENCH_BOOKING_DB): migrate, the demo county (`manage.py demo_county`, whose lead hospital has
department, expert and equipment schedules with quotas for the member townships), and the slots of
those schedules over BENCH_BOOKING_WEEKS weeks. Every township clinician of the lead's consortium logs
in through the login form; each of the 200 clients books as one of them (session cookie + CSRF
header, as the browser pages do) `POST /api/v1/scheduling/bookings` for a resident of that township.

Two kinds of booking are mixed:
- hot: a share of the requests goes, wave after wave, to one slot at a time (its last units, general
  or reserved pool), so dozens of clients race for the same few units at the same moment;
- spread: a random future slot of any schedule, general or the consortium's reserved pool.

Afterwards the database is checked: units booked beyond a pool's capacity, slots with more open
bookings than units, pool counters that disagree with their open bookings, double bookings, and
201 answers against the bookings created. Replaces the `booking` section of docs/benchmarks.md.
Nothing here asserts a timing; CI never runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import psycopg
from foundation import (  # type: ignore[import-not-found]
    DEMO_PASSWORD,
    GUNICORN,
    PG_SERVER,
    PYTHON,
    ROOT,
    app_env,
    log,
    machine,
    port_is_free,
    process_group,
    wait_for_http,
    write_section,
)

DB = os.environ.get("BENCH_BOOKING_DB", "yl_bench_booking")
DATABASE_URL = f"{PG_SERVER}/{DB}"
PORT = int(os.environ.get("BENCH_BOOKING_PORT", "8767"))
RESIDENTS = int(os.environ.get("BENCH_BOOKING_RESIDENTS", "20000"))
WEEKS = int(os.environ.get("BENCH_BOOKING_WEEKS", "12"))
CLIENTS = int(os.environ.get("BENCH_BOOKING_CLIENTS", "200"))
REQUESTS = int(os.environ.get("BENCH_BOOKING_REQUESTS", "12000"))
WARMUP = int(os.environ.get("BENCH_BOOKING_WARMUP", "600"))
RATE = float(os.environ.get("BENCH_BOOKING_RATE", "300"))  # offered bookings/s of the paced run
HOT_SHARE = float(os.environ.get("BENCH_BOOKING_HOT_SHARE", "0.3"))
HOT_WAVE = int(os.environ.get("BENCH_BOOKING_HOT_WAVE", "40"))  # hot requests per hot slot
WORKERS = int(os.environ.get("BENCH_BOOKING_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_BOOKING_THREADS", "4"))
PATH = "/api/v1/scheduling/bookings"

# Runs inside `manage.py shell`: slots for WEEKS weeks, then what the clients need, as JSON.
SETUP = """
import datetime as dt, json
from django.db.models import Q
from django.utils import timezone
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership
from yilian.accounts.roles import Role
from yilian.organizations.models import ConsortiumMembership
from yilian.patients.models import Patient
from yilian.scheduling.access import schedule_scope_filter
from yilian.scheduling.models import Schedule, Slot, SlotPool
from yilian.scheduling.services import slots_generate

WEEKS, PATIENTS = {weeks}, {patients}
today = timezone.localdate()
created = 0
for schedule in Schedule.objects.filter(is_active=True).order_by("pk"):
    created += slots_generate(schedule=schedule, start_date=today, end_date=today + dt.timedelta(days=7 * WEEKS - 1)).created
memberships = (
    Membership.objects.current()
    .filter(role=Role.CLINICIAN, institution__kind="township_centre", user__is_active=True)
    .select_related("user", "institution")
    .order_by("user__username", "pk")
)
doctors, seen = [], set()
soon = timezone.now() + dt.timedelta(hours=2)
slots_by_scope = {{}}
for membership in memberships:
    if membership.user_id in seen:
        continue
    memberships_of_user = list(Membership.objects.current().filter(user=membership.user).order_by("started_on", "id"))
    if memberships_of_user[0].pk != membership.pk:
        continue  # the session acts through the first membership
    seen.add(membership.user_id)
    actor = Actor(user=membership.user, membership=membership)
    visible = Schedule.objects.filter(schedule_scope_filter(actor), is_active=True)
    schedules = tuple(visible.values_list("pk", flat=True).order_by("pk"))
    if not schedules:
        continue
    patients = [str(u) for u in Patient.objects.visible_to(actor).order_by("pk").values_list("uuid", flat=True)[:PATIENTS]]
    if len(patients) < 20:
        continue
    if schedules not in slots_by_scope:
        slots = []
        for slot in Slot.objects.filter(schedule_id__in=schedules, is_closed=False, start__gt=soon).order_by("start", "pk"):
            slots.append(str(slot.uuid))
        slots_by_scope[schedules] = slots
    doctors.append({{
        "username": membership.user.username,
        "institution": membership.institution.name,
        "scope": list(schedules),
        "patients": patients,
    }})
scopes = {{",".join(map(str, k)): v for k, v in slots_by_scope.items()}}
print("JSON" + json.dumps({{"created": created, "doctors": doctors, "scopes": scopes}}, ensure_ascii=False))
"""

CHECKS = {
    "pools with booked > capacity": """
        SELECT count(*), coalesce(sum(booked - capacity), 0) FROM scheduling_slotpool WHERE booked > capacity""",
    "slots with more open bookings than units": """
        SELECT count(*), coalesce(sum(open - units), 0) FROM (
            SELECT s.id,
                   (SELECT count(*) FROM scheduling_booking b WHERE b.slot_id = s.id AND b.status = 'booked') AS open,
                   (SELECT coalesce(sum(p.capacity), 0) FROM scheduling_slotpool p WHERE p.slot_id = s.id) AS units
            FROM scheduling_slot s) x
        WHERE open > units""",
    "pools with more open bookings than capacity": """
        SELECT count(*), coalesce(sum(open - capacity), 0) FROM (
            SELECT p.capacity, (SELECT count(*) FROM scheduling_booking b WHERE b.pool_id = p.id AND b.status = 'booked') AS open
            FROM scheduling_slotpool p) x
        WHERE open > capacity""",
    "pools whose counter differs from their open bookings": """
        SELECT count(*), coalesce(sum(abs(booked - open)), 0) FROM (
            SELECT p.booked, (SELECT count(*) FROM scheduling_booking b WHERE b.pool_id = p.id AND b.status = 'booked') AS open
            FROM scheduling_slotpool p) x
        WHERE booked <> open""",
    "double bookings (slot, patient)": """
        SELECT count(*), coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM scheduling_booking WHERE status = 'booked'
            GROUP BY slot_id, patient_id HAVING count(*) > 1) d""",
}


@dataclass
class Job:
    kind: str  # hot | spread
    slot: str
    pool: str


@dataclass
class Client:
    username: str
    cookie: str
    csrf: str
    patients: list[str]
    scope: str


@dataclass
class Result:
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"hot": [], "spread": []})
    errors: list[str] = field(default_factory=list)
    client_cpu: float = 0.0
    app_cpu: float = 0.0
    db_cpu: float = 0.0
    sample: dict[int, str] = field(default_factory=dict)
    sent_at: list[float] = field(default_factory=list)  # seconds from the start of the run
    answered_at: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def all_latencies(self) -> list[float]:
        return self.latencies["hot"] + self.latencies["spread"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- database and server ---------------------------------------------------------------------


def manage(*args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=app_env(DATABASE_URL=DATABASE_URL),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def build_database() -> str:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    manage("migrate", "--noinput", "-v0")
    output = manage("demo_county", f"--residents={RESIDENTS}", "--quiet")
    return next((line for line in output.splitlines() if line.startswith("已建立")), "")


def scalar(sql: str) -> int:
    with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


def verify() -> dict[str, tuple[int, int]]:
    with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
        return {label: tuple(conn.execute(sql).fetchone()) for label, sql in CHECKS.items()}  # type: ignore[misc,arg-type]


def inventory() -> dict[str, int]:
    queries = {
        "schedules": "SELECT count(*) FROM scheduling_schedule",
        "slots": "SELECT count(*) FROM scheduling_slot",
        "future slots": "SELECT count(*) FROM scheduling_slot WHERE start > now()",
        "units (pool capacity)": "SELECT coalesce(sum(capacity), 0) FROM scheduling_slotpool",
        "quotas": "SELECT count(*) FROM scheduling_quota",
        "residents": "SELECT count(*) FROM patients_patient",
        "open bookings": "SELECT count(*) FROM scheduling_booking WHERE status = 'booked'",
    }
    return {label: scalar(sql) for label, sql in queries.items()}


def _cpu_seconds(pid: int) -> tuple[int, float]:
    """(process group, user + system CPU seconds) of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return -1, 0.0
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds of the gunicorn process group and of the PostgreSQL backends of the bench
    database during a run (sampled twice a second, so backends that end mid-run still count)."""

    def __init__(self, gunicorn: int) -> None:
        self.gunicorn = gunicorn
        self.start = self._sample()
        self.seen = dict(self.start)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _sample(self) -> dict[tuple[str, int], float]:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        out = {("app", pid): cpu for pid in pids for group, cpu in [_cpu_seconds(pid)] if group == self.gunicorn}
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
            backends = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB])]
        out.update({("db", pid): _cpu_seconds(pid)[1] for pid in backends})
        return out

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            for key, cpu in self._sample().items():
                self.seen[key] = max(cpu, self.seen.get(key, 0.0))

    def stop(self) -> tuple[float, float]:
        self.stopping.set()
        self.thread.join()
        for key, cpu in self._sample().items():
            self.seen[key] = max(cpu, self.seen.get(key, 0.0))
        spent = {"app": 0.0, "db": 0.0}
        for (side, pid), cpu in self.seen.items():
            spent[side] += cpu - self.start.get((side, pid), 0.0)
        return spent["app"], spent["db"]


def login(base: str, username: str) -> tuple[str, str]:
    """Log in through the real form; (Cookie header, CSRF token for X-CSRFToken)."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=60) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not token:
            raise RuntimeError("no CSRF token on the login page")
        answer = client.post(
            "/accounts/login/",
            data={"username": username, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{base}/accounts/login/"},
        )
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"login as {username} failed ({answer.status_code})")
        cookies = dict(client.cookies.items())
        return "; ".join(f"{k}={v}" for k, v in cookies.items()), cookies["csrftoken"]


# --- the load ------------------------------------------------------------------------------


def make_jobs(count: int, scopes: dict[str, list[str]], rng: random.Random, hot_offset: int) -> tuple[dict[str, list[Job]], int]:
    """Per scope, `count` jobs; hot ones walk the hot slots (a fixed tenth of the slots) in waves of
    HOT_WAVE requests, starting at the `hot_offset`-th hot request. Returns the jobs and the offset
    where the next batch should start, so no phase races for slots an earlier one filled."""
    out, next_offset = {}, hot_offset
    for scope, slots in scopes.items():
        order = slots[:]
        random.Random(scope).shuffle(order)
        hot_slots, spread_slots = order[: len(order) // 10], order[len(order) // 10 :]
        jobs, hot = [], hot_offset
        for _ in range(count):
            if rng.random() < HOT_SHARE:
                slot = hot_slots[(hot // HOT_WAVE) % len(hot_slots)]
                hot += 1
                jobs.append(Job("hot", slot, rng.choice(("general", "reserved"))))
            else:
                jobs.append(Job("spread", rng.choice(spread_slots), "reserved" if rng.random() < 0.3 else "general"))
        out[scope] = jobs
        next_offset = max(next_offset, hot)
    return out, next_offset


async def drive(base: str, clients: list[Client], jobs: dict[str, list[Job]], total: int, seed: int, rate: float = 0.0) -> Result:
    """CLIENTS concurrent clients share `total` bookings; each takes the next job of its scope.

    With `rate` (bookings/s for all clients together) each client keeps its own pace of one request
    every CLIENTS / rate seconds, like a clinician clicking "book" (it never has two requests out:
    a late answer delays its next request); without, every client sends again as soon as it is
    answered (the server's ceiling)."""
    result = Result()
    interval = CLIENTS / rate if rate else 0.0
    queues = {scope: iter(js) for scope, js in jobs.items()}
    remaining = [total]
    rng = random.Random(seed)
    run_started = [time.perf_counter()]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)

    async def client_loop(client: Client, session: aiohttp.ClientSession) -> None:
        headers = {"Cookie": client.cookie, "X-CSRFToken": client.csrf, "Content-Type": "application/json"}
        due = time.perf_counter() + rng.random() * interval
        while remaining[0] > 0:
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval
                if remaining[0] <= 0:
                    break
            remaining[0] -= 1
            job = next(queues[client.scope])
            body = json.dumps({"slot": job.slot, "patient": rng.choice(client.patients), "pool": job.pool})
            started = time.perf_counter()
            result.sent_at.append(started - run_started[0])
            try:
                async with session.post(f"{base}{PATH}", data=body, headers=headers) as response:
                    text = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, repr(exc).encode()
            took = time.perf_counter() - started
            result.answered_at.append(started + took - run_started[0])
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.latencies[job.kind].append(took)
            if status not in (201, 409) and status not in result.sample:
                result.sample[status] = text[:300].decode(errors="replace")

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",)
    ) as session:
        started = run_started[0] = time.perf_counter()
        await asyncio.gather(*(client_loop(clients[i % len(clients)], session) for i in range(CLIENTS)))
        # Until the last answer: a paced client that finds nothing left still sleeps out its interval.
        result.seconds = max(result.answered_at, default=time.perf_counter() - started)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return result


def row(label: str, values: list[float]) -> str:
    if not values:
        return f"| {label} | 0 | | | | |"
    ms = [v * 1000 for v in values]
    return (
        f"| {label} | {len(ms):,} | {statistics.median(ms):.0f} | {percentile(ms, 0.95):.0f} | {percentile(ms, 0.99):.0f} | "
        f"{max(ms):.0f} |"
    )


@dataclass
class Phase:
    label: str
    rate: float  # offered bookings/s; 0 = as fast as answered
    result: Result
    load_before: float
    load_after: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="keep the database of the last run (no rebuild)")
    parser.add_argument("--no-write", action="store_true", help="print the figures, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    before = machine()
    if not port_is_free(PORT):
        raise SystemExit(f"port {PORT} is taken; set BENCH_BOOKING_PORT")
    county = ""
    if not args.reuse or not scalar_or_zero("SELECT count(*) FROM scheduling_slot"):
        log(f"booking: fresh database {DB}, demo county with {RESIDENTS:,} residents")
        county = build_database()
    log(f"booking: slots for {WEEKS} weeks, township clinicians and their residents")
    out = manage("shell", "-c", SETUP.format(weeks=WEEKS, patients=400))
    setup = json.loads(out[out.index("JSON") + 4 :])
    doctors, scopes = setup["doctors"], setup["scopes"]
    if not doctors:
        raise SystemExit("no township clinician sees a schedule")
    stock = inventory()
    manage("collectstatic", "--noinput", "-v0")  # the login page needs the static manifest (DEBUG off)
    base = f"http://127.0.0.1:{PORT}"
    server = [
        GUNICORN, "yilian.wsgi", "-w", str(WORKERS), "--threads", str(THREADS), "-b", f"127.0.0.1:{PORT}",
        "--log-level", "warning", "--backlog", "2048",
    ]  # fmt: skip
    log_path = Path(tempfile.gettempdir()) / f"{DB}_gunicorn.log"
    rng = random.Random(2026)
    env = app_env(DATABASE_URL=DATABASE_URL)
    phases: list[Phase] = []
    with (
        log_path.open("wb") as server_log,
        process_group(server, cwd=ROOT, env=env, stdout=server_log, stderr=server_log) as gunicorn,
    ):
        wait_for_http(f"{base}/accounts/login/", timeout=60, process=gunicorn)
        log(f"booking: {len(doctors)} township clinicians log in through the form")
        clients = []
        for doctor in doctors:
            cookie, csrf = login(base, doctor["username"])
            scope = ",".join(map(str, doctor["scope"]))
            clients.append(Client(doctor["username"], cookie, csrf, doctor["patients"], scope))
        rng.shuffle(clients)
        log(f"booking: warm-up ({WARMUP} bookings)")
        jobs, offset = make_jobs(WARMUP + CLIENTS, scopes, rng, hot_offset=0)
        asyncio.run(drive(base, clients, jobs, WARMUP, seed=1))
        bookings_before = scalar_or_zero("SELECT count(*) FROM scheduling_booking")
        for label, rate in (("as fast as answered", 0.0), (f"paced at {RATE:,.0f}/s offered", RATE)):
            log(f"booking: {REQUESTS:,} bookings, {CLIENTS} clients, {label}")
            jobs, offset = make_jobs(REQUESTS + CLIENTS, scopes, rng, hot_offset=offset)
            load_before = os.getloadavg()[0]
            watch = ServerCpu(gunicorn.pid)
            result = asyncio.run(drive(base, clients, jobs, REQUESTS, seed=len(phases) + 2, rate=rate))
            result.app_cpu, result.db_cpu = watch.stop()
            phases.append(Phase(label, rate, result, load_before, os.getloadavg()[0]))
            summarise(phases[-1])
    created = scalar_or_zero("SELECT count(*) FROM scheduling_booking") - bookings_before
    checks = verify()
    won = sum(p.result.statuses.get(201, 0) for p in phases)
    for label, (rows, units) in checks.items():
        print(f"  check {label}: {rows} ({units})", file=sys.stderr)
    print(f"  bookings created {created:,} vs 201 answers {won:,}", file=sys.stderr)
    if not args.no_write:
        report(phases, checks, created, stock, len(clients), county, before)


def scalar_or_zero(sql: str) -> int:
    try:
        return scalar(sql)
    except psycopg.Error:
        return 0


def figures(result: Result) -> dict[str, float]:
    ms = [v * 1000 for v in result.all_latencies()]
    per = max(result.sent, 1)
    return {
        "rate": result.sent / result.seconds if result.seconds else 0.0,
        "won_rate": result.statuses.get(201, 0) / result.seconds if result.seconds else 0.0,
        "p50": statistics.median(ms) if ms else 0.0,
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "app": result.app_cpu * 1000 / per,
        "db": result.db_cpu * 1000 / per,
        "client": result.client_cpu * 1000 / per,
    }


def summarise(phase: Phase) -> None:
    r, f = phase.result, figures(phase.result)
    others = {s: n for s, n in r.statuses.items() if s not in (201, 409, 422)}
    print(
        f"{phase.label}: {r.sent:,} in {r.seconds:.1f} s = {f['rate']:,.0f}/s answered ({f['won_rate']:,.0f}/s won); "
        f"p50 {f['p50']:.0f} p95 {f['p95']:.0f} p99 {f['p99']:.0f} ms; 201 {r.statuses.get(201, 0):,} "
        f"409 {r.statuses.get(409, 0):,} 422 {r.statuses.get(422, 0):,} other {others}; CPU/request app {f['app']:.1f} "
        f"db {f['db']:.1f} client {f['client']:.1f} ms; load {phase.load_before:.2f} -> {phase.load_after:.2f}",
        file=sys.stderr,
    )
    if r.sent_at:
        print(f"  sent from {min(r.sent_at):.2f} to {max(r.sent_at):.2f} s, last answer at {r.seconds:.2f} s", file=sys.stderr)
    for status, text in r.sample.items():
        print(f"  sample {status}: {text}", file=sys.stderr)


def report(
    phases: list[Phase],
    checks: dict[str, tuple[int, int]],
    created: int,
    stock: dict[str, int],
    doctors: int,
    county: str,
    before: str,
) -> None:
    won = sum(p.result.statuses.get(201, 0) for p in phases)
    oversold = checks["pools with booked > capacity"][1] + checks["slots with more open bookings than units"][1]
    rows = []
    for phase in phases:
        r, f = phase.result, figures(phase.result)
        others = ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items()) if s not in (201, 409, 422)) or "0"
        rows.append(
            f"| {phase.label} | {r.sent:,} | {r.seconds:.1f} | **{f['rate']:,.0f}** | {f['won_rate']:,.0f} | {f['p50']:.0f} | "
            f"{f['p95']:.0f} | **{f['p99']:.0f}** | {r.statuses.get(201, 0):,} | {r.statuses.get(409, 0):,} | "
            f"{r.statuses.get(422, 0):,} | {others} | {f['app']:.1f} + {f['db']:.1f} | {f['client']:.1f} | "
            f"{phase.load_before:.2f} → {phase.load_after:.2f} |"
        )
    latency_rows = "\n".join(
        row(f"{phase.label}, {kind}", phase.result.latencies[kind]) for phase in phases for kind in ("hot", "spread")
    )
    check_rows = "\n".join(f"| {label} | {n:,} | {units:,} |" for label, (n, units) in checks.items())
    stock_text = ", ".join(f"{label} {n:,}" for label, n in stock.items())
    paced = figures(phases[-1].result)
    ceiling = figures(phases[0].result)
    columns = (
        "run", "requests", "s", "bookings/s answered", "of them won (201)/s", "p50 ms", "p95 ms", "p99 ms", "201", "409", "422",
        "other", "server CPU ms/request (app + db)", "client CPU ms/request", "load (1 min) before → after",
    )  # fmt: skip
    header = "| " + " | ".join(columns) + " |"
    met = oversold == 0 and paced["rate"] >= 300 * 0.98 and RATE >= 300 and paced["p99"] <= 200
    body = f"""
Database: `{DB}`, built fresh: migrations, `manage.py demo_county --residents={RESIDENTS}` (the lead hospital's
department clinics, expert clinic and equipment schedules, with consortium and township quotas and the green
channel), then the slots of every schedule for {WEEKS} weeks from today (`slots_generate`). Before the run:
{stock_text}.{f" The county: {county[:160]}…" if county else ""}

Server: `gunicorn yilian.wsgi -w {WORKERS} --threads {THREADS}`, DEBUG off, PostgreSQL on the same two cores.
Clients: {CLIENTS} concurrent clients in one Python process (asyncio + aiohttp, keep-alive) on the same two cores,
each booking as one of {doctors} township clinicians who logged in through the login form (session cookie +
`X-CSRFToken`, as the pages send them): `POST {PATH}` with `{{slot, patient, pool}}` for a resident that clinician's
township holds. {HOT_SHARE:.0%} of the requests are **hot**: {HOT_WAVE} at a time go to one slot (general or reserved
pool), so dozens of clients race for its last units at once; the rest are **spread** over random future slots
(30 % the consortium's reserved pool, else general). A 409 is 约满 (full) or "already booked"; a 422 a refused
pool (no quota for that institution). {WARMUP} warm-up bookings first (not counted). Two runs of {REQUESTS:,}
requests each: **as fast as answered** (every client sends again at once: the server's ceiling; with {CLIENTS}
clients always waiting, latency ≈ {CLIENTS} / rate) and **paced** (each client one request every {CLIENTS} / {RATE:,.0f} s,
{RATE:,.0f}/s offered in all, never two requests out at once: the goal's load). "s" runs from the first request to
the last answer.

{header}
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

| latency by kind | requests | p50 ms | p95 ms | p99 ms | max ms |
|---|---|---|---|---|---|
{latency_rows}

Checked in the database after both runs:

| check | rows | units |
|---|---|---|
{check_rows}
| bookings created during the runs vs 201 answers | {created:,} | {won:,} |

**Oversold units: {oversold}.** Goal on this 2-core machine (zero oversold, ≥ 300 bookings/s, p99 ≤ 200 ms):
{"met" if met else "**NOT met**"} — {oversold} oversold; ceiling {ceiling["rate"]:,.0f} bookings/s answered; at {RATE:,.0f}/s
offered, {paced["rate"]:,.0f}/s answered with p99 {paced["p99"]:,.0f} ms. "Server CPU" is what the gunicorn workers and the
PostgreSQL backends of `{DB}` spent per request (from /proc), whatever else ran on the machine: two cores
serve at most 2,000 ms / (app + db + client) requests per second.
"""
    write_section(
        "booking",
        "Issue 5 — booking: 200 clients through the HTTP API (PostgreSQL)",
        "bench/run.sh booking",
        body,
        machine_before=before,
    )


if __name__ == "__main__":
    main()
