"""Foundation benchmarks: the demo county at scale, page latency under load, fresh clone to demo.

Run through bench/run.sh [all|demo|pages|fresh]. Each benchmark replaces its own section of
docs/benchmarks.md (between `<!-- bench:<name> -->` markers) with the date, the machine, the
command and the figures. Nothing here asserts a timing; CI never runs it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
PG_SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
BENCH_DB = "yl_bench"
DATABASE_URL = f"{PG_SERVER}/{BENCH_DB}"
RESIDENTS = int(os.environ.get("BENCH_RESIDENTS", "1000000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "2000"))
CONCURRENCY = 20
WRK_THREADS = 2
BENCH_PORT = int(os.environ.get("BENCH_PORT", "8765"))
FRESH_PORT = int(os.environ.get("FRESH_PORT", "8790"))
SINGLE_CLIENT_REQUESTS = 200
PAGES = ("/", "/structure/institutions/")
PERSONAS = ("township_doctor", "lead_doctor", "consortium_manager")
DEMO_PASSWORD = "Yilian@2026"  # yilian.demo.taishan.DEMO_PASSWORD (not imported: no Django here)

INTRO = """# Benchmarks

Measured with `bench/run.sh [all|demo|pages|fresh]` (see `bench/foundation.py`); each run replaces
its own section below. They run apart from CI and the test suite, which assert no timings.
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- Machine and report ---------------------------------------------------------------------


def machine() -> str:
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    try:
        with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            postgres = f"PostgreSQL {row[0] if row else '?'}"
    except psycopg.Error:
        postgres = "PostgreSQL unavailable"
    return (
        f"{os.cpu_count()} cores (nproc), {memory_kb / 1024 / 1024:.1f} GiB RAM, {cpu}; "
        f"Linux {platform.release()}, Python {platform.python_version()}, {postgres} on the same machine; "
        f"load average {os.getloadavg()[0]:.2f} just before the run (other work on the machine skews figures)"
    )


def git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def write_section(name: str, title: str, command: str, body: str, *, machine_before: str) -> None:
    """Replace (or append) this benchmark's section of docs/benchmarks.md."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = dt.datetime.now(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    section = (
        f"{start}\n## {title}\n\n"
        f"- Date: {stamp} (commit `{git_commit()}`)\n"
        f"- Machine: {machine_before}\n"
        f"- Command: `{command}`\n\n"
        f"{body.strip()}\n{end}"
    )
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else INTRO
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    log(f"wrote section '{name}' of {DOC.relative_to(ROOT)}")


# --- Helpers ---------------------------------------------------------------------------------


def app_env(**extra: str) -> dict[str, str]:
    """The environment of a production-like process on the benchmark database (DEBUG off)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=DATABASE_URL,
        SECRET_KEY="bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        YILIAN_SECURE="0",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def manage(*args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=app_env(), capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def recreate_database() -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def resident_count() -> int:
    try:
        with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM patients_patient").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


def wait_for_http(url: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> float:
    """Seconds until `url` answers 200; raises if the process dies or time runs out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


@contextmanager
def process_group(args: list[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process in its own session; stop exactly that group (and nothing else) afterwards."""
    process = subprocess.Popen(args, start_new_session=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def port_is_free(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


# --- a) The demo county at a million residents ----------------------------------------------


def bench_demo(residents: int = RESIDENTS) -> None:
    before = machine()
    log(f"demo: fresh database {BENCH_DB}, migrate, demo_county --residents {residents:,}")
    recreate_database()
    manage("migrate", "--noinput", "-v0")
    command = [PYTHON, "manage.py", "demo_county", f"--residents={residents}", "--quiet"]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=app_env(), stdout=stdout, stderr=stderr)
        # wait4 reaps this child and gives its own resource usage (RUSAGE_CHILDREN would include migrate).
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read().decode(), stderr.read().decode()
    if code:
        raise SystemExit(f"demo_county failed ({code}):\n{output}\n{errors}")
    loaded = resident_count()
    with psycopg.connect(DATABASE_URL) as conn:
        row = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('patients_patient'))").fetchone()
        size = row[0] if row else "?"
    reported = re.search(r"居民 ([\d.]+) 秒", output)
    summary = next((line for line in output.splitlines() if line.startswith("已建立")), "")
    body = f"""
| figure | value |
|---|---|
| residents in the database after the run | {loaded:,} |
| wall time of the command (process start to exit) | {wall:.1f} s |
| rows per second, whole command | {loaded / wall:,.0f} |
| resident load alone (as the command reports it) | {reported.group(1) if reported else "?"} s |
| peak memory of the command (`ru_maxrss`) | {usage.ru_maxrss / 1024:.0f} MiB |
| CPU time of the command (user + system) | {usage.ru_utime + usage.ru_stime:.1f} s |
| `patients_patient` size with indexes | {size} |

The command's own line: `{summary}`

How: a fresh database `{BENCH_DB}` is created and migrated (not timed), then `manage.py demo_county`
runs as a child process with DEBUG off. Residents are generated in Python from one seeded
`random.Random` (no per-row Faker calls) and streamed with psycopg 3 `COPY ... FROM STDIN` in
10,000-row chunks while the server ingests them on the other core. From 100,000 rows the six plain
indexes and two foreign keys of `patients_patient` are dropped and rebuilt inside the same transaction:
measured on this machine, the load then took about 13 s of server time instead of 26 s.
"""
    write_section("demo", f"Demo county: {residents:,} residents on PostgreSQL", "bench/run.sh demo", body, machine_before=before)


# --- b) Pages under load ---------------------------------------------------------------------


@dataclass
class LoadResult:
    persona: str
    path: str
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    non200: int
    socket_errors: int
    page_kb: float
    alone_p50_ms: float
    alone_p95_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def login_cookie(base: str, username: str) -> str:
    """Log in through the real form (CSRF token and all) and return the Cookie header."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as client:
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
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def run_wrk(base: str, path: str, cookie: str, total: int, *, clients: int = CONCURRENCY) -> dict[str, int]:
    threads = min(WRK_THREADS, clients)
    per_thread = -(-total // threads)
    command = [
        "wrk", f"-t{threads}", f"-c{clients}", "-d600s", "--timeout", "30s", "-H", f"Cookie: {cookie}",
        "-s", str(ROOT / "bench" / "count.lua"), f"{base}{path}", "--", str(per_thread),
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as wrk:
        assert wrk.stdout is not None
        lines = []
        done = 0
        for line in wrk.stdout:
            lines.append(line)
            if line.startswith("THREAD DONE"):
                done += 1
                if done == threads:
                    wrk.send_signal(signal.SIGINT)  # end wrk's -d sleep: every thread has its count
        stderr = wrk.stderr.read() if wrk.stderr else ""
    output = "".join(lines)
    match = re.search(r"^RESULT (.*)$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk gave no RESULT line:\n{output}\n{stderr}")
    return {key: int(value) for key, value in (item.split("=") for item in match.group(1).split())}


def bench_pages(personas: tuple[str, ...] = PERSONAS, requests: int = REQUESTS) -> None:
    before = machine()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk (bench/run.sh does it as root)")
    if resident_count() < RESIDENTS:
        log(f"pages: {BENCH_DB} has fewer than {RESIDENTS:,} residents; building the county first")
        bench_demo()
    if not port_is_free(BENCH_PORT):
        raise SystemExit(f"port {BENCH_PORT} is taken; set BENCH_PORT")
    manage("collectstatic", "--noinput", "-v0")
    base = f"http://127.0.0.1:{BENCH_PORT}"
    server = [GUNICORN, "yilian.wsgi", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{BENCH_PORT}", "--log-level", "warning"]
    results: list[LoadResult] = []
    missing: list[str] = []
    log_path = Path(tempfile.gettempdir()) / "yl_bench_gunicorn.log"
    with (
        log_path.open("wb") as server_log,
        process_group(server, cwd=ROOT, env=app_env(), stdout=server_log, stderr=server_log) as gunicorn,
    ):
        wait_for_http(f"{base}/accounts/login/", timeout=60, process=gunicorn)
        for persona in personas:
            cookie = login_cookie(base, persona)
            for path in PAGES:
                probe = httpx.get(f"{base}{path}", headers={"Cookie": cookie}, timeout=30)
                if probe.status_code != 200:
                    missing.append(f"`{path}` answered {probe.status_code} for {persona}")
                    continue
                log(f"pages: {persona} {path}: warm-up, then {requests:,} requests with {CONCURRENCY} clients")
                run_wrk(base, path, cookie, 100)
                alone = run_wrk(base, path, cookie, SINGLE_CLIENT_REQUESTS, clients=1)
                figures = run_wrk(base, path, cookie, requests)
                results.append(LoadResult(
                    persona, path, figures["requests"], figures["duration_us"] / 1e6, figures["p50_us"] / 1000,
                    figures["p95_us"] / 1000, figures["p99_us"] / 1000, figures["max_us"] / 1000, figures["non200"],
                    figures["socket_errors"], len(probe.content) / 1024, alone["p50_us"] / 1000, alone["p95_us"] / 1000,
                ))  # fmt: skip
    rows = "\n".join(
        f"| {r.persona} | `{r.path}` | {r.requests:,} | {r.per_second:,.0f} | {r.p50_ms:.0f} | {r.p95_ms:.0f} | {r.p99_ms:.0f} | "
        f"{r.max_ms:.0f} | {r.non200} | {r.socket_errors} | {r.page_kb:.0f} | {r.alone_p50_ms:.0f} / {r.alone_p95_ms:.0f} |"
        for r in results
    )
    worst = max((r.p95_ms for r in results), default=0.0)
    verdict = (
        f"Goal p95 ≤ 100 ms: {'met' if worst <= 100 else 'NOT met'} (worst p95 {worst:.0f} ms)."
        if results
        else "No page measured."
    )
    notes = "\n".join(f"- {m}" for m in missing)
    body = f"""
Database: `{BENCH_DB}` with {resident_count():,} residents (the demo county above).
Server: `gunicorn yilian.wsgi -w 2 --threads 4 -b 127.0.0.1:{BENCH_PORT}`, DEBUG off, `YILIAN_SECURE=0`, static files
collected (WhiteNoise). Load: `wrk -t{WRK_THREADS} -c{CONCURRENCY}` on loopback with `bench/count.lua`, which stops after a
fixed number of responses and counts any that are not 200; each persona logs in through the login form first,
and 100 warm-up requests precede each measured run. Client and server share the two cores. The last column is a
separate run of {SINGLE_CLIENT_REQUESTS} requests from one client: the time a page takes when nothing waits in line. With
20 clients always waiting, latency is mostly queueing (p50 ≈ 20 / req/s), so p95 ≤ 100 ms needs about 200 req/s.

| persona | page | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | not 200 | socket err. | KiB | 1 client p50/p95 ms |
|---|---|---|---|---|---|---|---|---|---|---|---|
{rows}

{verdict}
{notes}
"""
    write_section("pages", "Pages under load (1M residents, PostgreSQL)", "bench/run.sh pages", body, machine_before=before)


# --- c) Fresh clone to a running demo --------------------------------------------------------


def bench_fresh(port: int = FRESH_PORT) -> None:
    before = machine()
    if not port_is_free(port):
        raise SystemExit(f"port {port} is taken; set FRESH_PORT")
    workdir = Path(tempfile.mkdtemp(prefix="yl_bench_fresh_"))
    clone = workdir / "x"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE"}}
    env["PORT"] = str(port)
    log_path = workdir / "make-demo.log"
    try:
        started = time.perf_counter()
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        cloned = time.perf_counter() - started
        if not (clone / "Makefile").exists() or "demo:" not in (clone / "Makefile").read_text():
            write_section(
                "fresh",
                "Fresh clone to running demo",
                "bench/run.sh fresh",
                "Not measured: no `make demo` target yet.",
                machine_before=before,
            )
            return
        log(f"fresh: make demo in {clone} on port {port}")
        with (
            log_path.open("wb") as output,
            process_group(["make", "demo"], cwd=clone, env=env, stdout=output, stderr=output) as demo,
        ):
            try:
                wait_for_http(f"http://127.0.0.1:{port}/accounts/login/", timeout=900, process=demo)
            except (RuntimeError, TimeoutError) as exc:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                raise SystemExit(f"make demo did not come up: {exc}\n{tail}") from exc
            total = time.perf_counter() - started
        body = f"""
| figure | value |
|---|---|
| `git clone` of the repository | {cloned:.1f} s |
| clone + `make demo` until `/accounts/login/` answers 200 | {total:.1f} s |

How: `git clone {ROOT} {clone} && cd {clone} && PORT={port} make demo`, polling
`http://127.0.0.1:{port}/accounts/login/` every 0.25 s. `make demo` installs the Python packages (uv, from
`uv.lock`) and the front-end packages (npm, from `package-lock.json`), migrates SQLite, builds the demo county
with 5,000 residents and starts the server. The uv, pip and npm caches were warm on this machine, so no package
was downloaded; a first run on a new machine also pays for the downloads. Only committed files are cloned.
"""
        write_section("fresh", "Fresh clone to running demo", "bench/run.sh fresh", body, machine_before=before)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    # A TERM (kill, Ctrl-C from run.sh's parent) still runs the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("all", "demo", "pages", "fresh"), nargs="?", default="all")
    parser.add_argument("--personas", default=",".join(PERSONAS), help="comma-separated persona usernames for pages")
    args = parser.parse_args()
    personas = tuple(p for p in args.personas.split(",") if p)
    if args.what in {"all", "demo"}:
        bench_demo()
    if args.what in {"all", "pages"}:
        bench_pages(personas)
    if args.what in {"all", "fresh"}:
        bench_fresh()


if __name__ == "__main__":
    main()
