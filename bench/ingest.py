"""Ingestion benchmark: FHIR transaction Bundles and HL7 v2 messages over HTTP into PostgreSQL,
with record linkage on (every Patient / PID goes through the MPI's identity_ingest).

Run through `bench/run.sh ingest`. It builds its own database (BENCH_INGEST_DB, default
yl_bench_ingest: one health authority, one township hospital and its API key), starts gunicorn as
bench/foundation.py does for pages, sends from a pool of clients on the same machine and replaces
the `ingest` section of docs/benchmarks.md (`--no-write`: print the table instead). HL7 v2 is sent
twice: one message per request, and in HL7 batches (BHS … BTS) of BENCH_BATCH messages per request.
Nothing here asserts a timing; CI never runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from foundation import (  # type: ignore[import-not-found]
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

DB = os.environ.get("BENCH_INGEST_DB", "yl_bench_ingest")
DATABASE_URL = f"{PG_SERVER}/{DB}"
PORT = int(os.environ.get("BENCH_INGEST_PORT", "8766"))
BUNDLES = int(os.environ.get("BENCH_BUNDLES", "400"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "1500"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
BATCH = int(os.environ.get("BENCH_BATCH", "100"))
BATCHED_MESSAGES = int(os.environ.get("BENCH_BATCHED_MESSAGES", "5000"))
BATCH_CLIENTS = int(os.environ.get("BENCH_BATCH_CLIENTS", "4"))
NEW_PEOPLE = 1_000_000  # serial offset of the batched run: people the single messages did not send
WORKERS, THREADS = 2, 4
OBSERVATIONS = (
    ("1558-6", "空腹血糖", "mmol/L", 3.9, 6.1),
    ("2093-3", "总胆固醇", "mmol/L", 2.8, 5.2),
    ("2571-8", "甘油三酯", "mmol/L", 0.5, 1.7),
    ("718-7", "血红蛋白", "g/L", 130, 175),
    ("8480-6", "收缩压", "mmHg", 90, 139),
    ("8462-4", "舒张压", "mmHg", 60, 89),
)
SURNAMES = "伍黄陈李甄梁邝雷谭刘张王赵周吴"
GIVEN = ("国华", "美玲", "大明", "伟", "志强", "晓敏", "秀英", "建国", "丽华", "海燕", "玉兰", "永红")
SETUP = """
from yilian.accounts.models import ApiKey
from yilian.accounts.services import hash_api_key
from yilian.organizations.models import HealthAuthority, Institution, InstitutionKind, InstitutionLevel
authority, _ = HealthAuthority.objects.get_or_create(division_code="440781", defaults={"name": "台山市卫生健康局"})
institution, _ = Institution.objects.get_or_create(
    name="水步镇卫生院",
    defaults={
        "authority": authority, "kind": InstitutionKind.TOWNSHIP_CENTRE, "level": InstitutionLevel.PRIMARY, "town": "水步镇"
    },
)
prefix, raw = ApiKey.generate_raw_key()
ApiKey.objects.create(institution=institution, name="bench HIS", prefix=prefix, key_digest=hash_api_key(raw))
print(raw)
"""


def national_id(serial: int) -> str:
    """A valid GB 11643 number born 1940–1999 in 台山 (440781)."""
    rng = random.Random(serial)
    born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(60 * 365))
    body = f"440781{born:%Y%m%d}{serial % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check


def person(serial: int) -> tuple[str, str, str, str]:
    """(name, sex, birth date, national id or '') — every third without an ID (probabilistic linkage)."""
    rng = random.Random(serial * 7919)
    number = national_id(serial) if serial % 3 else ""
    born = (
        f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
        if number
        else f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(9)}"
    )
    return rng.choice(SURNAMES) + rng.choice(GIVEN), rng.choice("MF"), born, number


def fhir_bundle(serial: int, run: str) -> tuple[bytes, int]:
    name, sex, born, number = person(serial)
    pid, visit = f"{run}P{serial:07d}", f"{run}V{serial:07d}"
    subject = {"reference": f"Patient/{pid}"}
    when = f"2026-01-{1 + serial % 28:02d}T09:30:00+08:00"
    resources: list[dict[str, object]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"type": {"coding": [{"code": "NNCHN"}]}, "value": number}] if number else [],
            "name": [{"text": name}],
            "gender": "male" if sex == "M" else "female",
            "birthDate": born,
            "address": [{"text": "广东省台山市水步镇石龙村", "district": "水步镇"}],
        },
        {
            "resourceType": "Encounter",
            "id": visit,
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": subject,
            "period": {"start": when},
            "serviceProvider": {"display": "全科医学科"},
        },
    ]
    for index, code in enumerate(("I10", "E11.9")):
        resources.append({
            "resourceType": "Condition", "id": f"{visit}-D{index}", "subject": subject, "encounter": {"reference": f"Encounter/{visit}"},  # noqa: E501
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]}, "recordedDate": when,
        })  # fmt: skip
    for index, (code, text, unit, low, high) in enumerate(OBSERVATIONS):
        resources.append({
            "resourceType": "Observation", "id": f"{visit}-O{index}", "status": "final", "subject": subject,
            "encounter": {"reference": f"Encounter/{visit}"}, "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": text},  # noqa: E501
            "effectiveDateTime": when, "valueQuantity": {"value": round(random.Random(serial + index).uniform(low, high * 1.2), 1), "unit": unit},  # noqa: E501
            "referenceRange": [{"low": {"value": low}, "high": {"value": high}}],
        })  # fmt: skip
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
    return json.dumps(bundle, ensure_ascii=False).encode(), len(resources)


def oru_message(serial: int, run: str) -> bytes:
    name, sex, born, number = person(serial + 10_000_000)
    pid, visit, order = f"{run}H{serial:07d}", f"{run}W{serial:07d}", f"{run}L{serial:07d}"
    ids = f"{pid}^^^SB^PI" + (f"~{number}^^^CHN^NNCHN" if number else "")
    segments = [
        f"MSH|^~\\&|LIS|SB|YILIAN|YL|20260105093000||ORU^R01^ORU_R01|{run}M{serial:07d}|P|2.5.1|||||CHN|UNICODE UTF-8",
        f"PID|1||{ids}||{name[0]}^{name[1:]}||{born.replace('-', '')}|{sex}|||石龙村1号^水步镇^台山市^广东省",
        f"PV1|1|O|全科医学科^^^SB||||D01^黄^晓敏||||||||||||{visit}|居民医保||||||||||||||||||||||||20260105093000",
        f"OBR|1|{order}|{order}|LIPID^血脂四项|||20260105094500|||||||||||||||20260105110000|||F",
    ]
    for index, (code, text, unit, low, high) in enumerate(OBSERVATIONS[:4], start=1):
        value = round(random.Random(serial * 31 + index).uniform(low, high * 1.2), 1)
        segments.append(f"OBX|{index}|NM|{code}^{text}^LN||{value}|{unit}|{low}-{high}||||F")
    return ("\r".join(segments) + "\r").encode()


def hl7_batch(messages: list[bytes], serial: int) -> bytes:
    """Messages as one HL7 v2 batch (BHS … BTS)."""
    header = f"BHS|^~\\&|LIS|SB|YILIAN|YL|20260105093000||||BATCH{serial:06d}\r".encode()
    return header + b"".join(messages) + f"BTS|{len(messages)}\r".encode()


@dataclass
class Run:
    sent: int = 0  # units (bundles or messages)
    accepted: int = 0
    requests: int = 0
    refused: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    app_cpu: float = 0.0  # gunicorn CPU seconds during the run
    db_cpu: float = 0.0  # PostgreSQL backend CPU seconds during the run (backends alive at the end)
    lock: threading.Lock = field(default_factory=threading.Lock)


def drive(
    jobs: list[bytes],
    send: Callable[[httpx.Client, bytes], tuple[bool, str]] | Callable[[httpx.Client, bytes], tuple[int, int, str]],
    clients: int,
    *,
    server: int | None = None,
) -> Run:
    """Send every job from `clients` threads; `send` answers (ok, why) for one unit per request or
    (accepted units, units, why) for a batch."""
    run = Run()
    watch = ServerCpu(server) if server is not None else None
    local = threading.local()

    def one(body: bytes) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=120)
        started = time.perf_counter()
        answer = send(client, body)
        took = time.perf_counter() - started
        if len(answer) == 2:
            accepted, units, why = int(bool(answer[0])), 1, str(answer[1])
        else:
            accepted, units, why = answer  # type: ignore[misc]
        with run.lock:
            run.requests += 1
            run.sent += units
            run.accepted += accepted
            run.latencies.append(took)
            if accepted < units and len(run.refused) < 5:
                run.refused.append(why[:200])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, jobs))
    run.seconds = time.perf_counter() - started
    if watch is not None:
        run.app_cpu, run.db_cpu = watch.stop()
    return run


def _cpu_seconds(pid: int) -> tuple[int, float]:
    """(process group, user + system CPU seconds) of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return -1, 0.0
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds the gunicorn process group and the PostgreSQL backends of the bench database
    spend during a run: what the server side costs, whatever else the machine is running. Sampled
    twice a second, so a backend that closes mid-run (CONN_MAX_AGE) still counts up to its end."""

    def __init__(self, gunicorn: int) -> None:
        self.gunicorn = gunicorn
        self.start = self._sample()
        self.seen = dict(self.start)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _sample(self) -> dict[tuple[str, int], float]:
        out = {("app", pid): cpu for pid in _pids() for group, cpu in [_cpu_seconds(pid)] if group == self.gunicorn}
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
            backends = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB])]
        out.update({("db", pid): _cpu_seconds(pid)[1] for pid in backends})
        return out

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            for key, cpu in self._sample().items():
                self.seen[key] = max(cpu, self.seen.get(key, 0.0))

    def stop(self) -> tuple[float, float]:
        """(app, db) CPU seconds since the start."""
        self.stopping.set()
        self.thread.join()
        for key, cpu in self._sample().items():
            self.seen[key] = max(cpu, self.seen.get(key, 0.0))
        spent = {"app": 0.0, "db": 0.0}
        for (side, pid), cpu in self.seen.items():
            spent[side] += cpu - self.start.get((side, pid), 0.0)
        return spent["app"], spent["db"]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def recreate_database() -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')


def manage(*args: str) -> str:
    import subprocess

    env = app_env(DATABASE_URL=DATABASE_URL)
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def counts() -> dict[str, int]:
    tables = {
        "golden patients": "patients_patient",
        "source identities": "patients_sourceidentity",
        "encounters": "records_encounter",
        "conditions": "records_condition",
        "observations": "records_observation",
        "reports": "records_diagnosticreport",
        "messages kept": "interop_inboundmessage",
    }
    with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
        query = "SELECT count(*) FROM {}"
        return {
            label: conn.execute(query.format(table)).fetchone()[0]  # type: ignore[index,arg-type]
            for label, table in tables.items()
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ceiling(run: Run) -> float:
    """Units per second two cores could serve at this run's server CPU per unit."""
    per_unit = (run.app_cpu + run.db_cpu) / max(run.sent, 1)
    return 2.0 / per_unit if per_unit else 0.0


def table_row(label: str, unit: str, sent: int, accepted: int, run: Run, rate: str, load: float | None) -> str:
    p50 = statistics.median(run.latencies) * 1000 if run.latencies else 0.0
    p95 = percentile(run.latencies, 0.95) * 1000
    load_text = f"{load:.2f}" if load is not None else ""
    per = max(run.sent, 1)
    cpu = f"{run.app_cpu * 1000 / per:.1f} + {run.db_cpu * 1000 / per:.1f}"
    timing = f"{run.seconds:.1f} | {rate} | {p50:.0f} | {p95:.0f} | {cpu}"
    return f"| {label} | {unit} | {sent:,} | {accepted:,} | {timing} | {load_text} |"


def main() -> None:
    before = machine()
    if not port_is_free(PORT):
        raise SystemExit(f"port {PORT} is taken; set BENCH_INGEST_PORT")
    log(f"ingest: fresh database {DB}")
    recreate_database()
    manage("migrate", "--noinput", "-v0")
    key = manage("shell", "-c", SETUP).strip().splitlines()[-1]
    base = f"http://127.0.0.1:{PORT}"
    server = [
        GUNICORN,
        "yilian.wsgi",
        "-w",
        str(WORKERS),
        "--threads",
        str(THREADS),
        "-b",
        f"127.0.0.1:{PORT}",
        "--log-level",
        "warning",
    ]
    log_path = Path(tempfile.gettempdir()) / "yl_bench_ingest_gunicorn.log"
    auth = {"Authorization": f"Bearer {key}"}

    def send_fhir(client: httpx.Client, body: bytes) -> tuple[bool, str]:
        response = client.post(f"{base}/fhir/", content=body, headers={**auth, "Content-Type": "application/fhir+json"})
        return response.status_code == 200 and response.json().get("type") == "transaction-response", response.text

    def send_hl7(client: httpx.Client, body: bytes) -> tuple[bool, str]:
        response = client.post(
            f"{base}/api/v1/interop/hl7", content=body, headers={**auth, "Content-Type": "x-application/hl7-v2+er7"}
        )
        return response.status_code == 200 and b"MSA|AA|" in response.content, response.text

    def send_hl7_batch(client: httpx.Client, body: bytes) -> tuple[int, int, str]:
        response = client.post(
            f"{base}/api/v1/interop/hl7", content=body, headers={**auth, "Content-Type": "x-application/hl7-v2+er7"}
        )
        return response.content.count(b"\rMSA|AA|"), body.count(b"\rMSH|") + body.startswith(b"MSH|"), response.text[:200]

    with log_path.open("wb") as server_log, process_group(server, cwd=ROOT, env=app_env(DATABASE_URL=DATABASE_URL), stdout=server_log, stderr=server_log) as gunicorn:  # fmt: skip  # noqa: E501
        wait_for_http(f"{base}/fhir/metadata", timeout=60, process=gunicorn)
        log("ingest: warm-up (50 bundles, 100 messages)")
        drive([fhir_bundle(i, "W")[0] for i in range(50)], send_fhir, CLIENTS)
        drive([oru_message(i, "W") for i in range(100)], send_hl7, CLIENTS)
        load_fhir = os.getloadavg()[0]
        bundles = [fhir_bundle(i, "B") for i in range(BUNDLES)]
        per_bundle = bundles[0][1]
        log(f"ingest: {BUNDLES} transaction bundles of {per_bundle} resources, {CLIENTS} clients")
        fhir = drive([b for b, _n in bundles], send_fhir, CLIENTS, server=gunicorn.pid)
        log("ingest: the same bundles again (idempotent resend)")
        resend = drive([b for b, _n in bundles[:100]], send_fhir, CLIENTS, server=gunicorn.pid)
        load_hl7 = os.getloadavg()[0]
        log(f"ingest: {MESSAGES} ORU^R01 messages, {CLIENTS} clients")
        hl7 = drive([oru_message(i, "B") for i in range(MESSAGES)], send_hl7, CLIENTS, server=gunicorn.pid)
        drive([hl7_batch([oru_message(NEW_PEOPLE // 2 + i, "X") for i in range(BATCH)], 0)], send_hl7_batch, 1)  # warm-up
        load_batch = os.getloadavg()[0]
        log(f"ingest: {BATCHED_MESSAGES} ORU^R01 messages in batches of {BATCH}, {BATCH_CLIENTS} clients")
        batches = [
            hl7_batch([oru_message(NEW_PEOPLE + i, "C") for i in range(start, min(start + BATCH, BATCHED_MESSAGES))], start)
            for start in range(0, BATCHED_MESSAGES, BATCH)
        ]
        batched = drive(batches, send_hl7_batch, BATCH_CLIENTS, server=gunicorn.pid)
        log("ingest: the same batches again (idempotent resend)")
        rebatched = drive(batches[:10], send_hl7_batch, BATCH_CLIENTS, server=gunicorn.pid)
    totals = counts()
    resources = fhir.accepted * per_bundle
    fhir_rate = resources / fhir.seconds if fhir.seconds else 0.0
    hl7_rate = hl7.accepted / hl7.seconds if hl7.seconds else 0.0
    batched_rate = batched.accepted / batched.seconds if batched.seconds else 0.0
    refused = (
        "\n".join(f"- refused: `{r}`" for r in fhir.refused + resend.refused + hl7.refused + batched.refused + rebatched.refused)
        or "- nothing was refused"
    )
    rows = "\n".join(
        [
            table_row(
                "FHIR `POST /fhir/` transaction Bundle (1 Patient, 1 Encounter, 2 Condition, 6 Observation)",
                "resources",
                fhir.sent * per_bundle,
                resources,
                fhir,
                f"**{fhir_rate:,.0f} resources/s** ({fhir.accepted / max(fhir.seconds, 1e-9):.0f} bundles/s)",
                load_fhir,
            ),
            table_row(
                "the same 100 bundles again (idempotent: answered from the stored reply)",
                "bundles",
                resend.sent,
                resend.accepted,
                resend,
                f"{resend.sent / max(resend.seconds, 1e-9):,.0f} bundles/s",
                None,
            ),
            table_row(
                "HL7 v2 `POST /api/v1/interop/hl7` ORU^R01 (PID, PV1, OBR, 4 OBX)",
                "messages",
                hl7.sent,
                hl7.accepted,
                hl7,
                f"**{hl7_rate:,.0f} messages/s**",
                load_hl7,
            ),
            table_row(
                f"HL7 v2 batch (BHS, {BATCH} × ORU^R01, BTS) per `POST /api/v1/interop/hl7`, {BATCH_CLIENTS} clients;"
                " p50 / p95 per request",
                "messages",
                batched.sent,
                batched.accepted,
                batched,
                f"**{batched_rate:,.0f} messages/s** ({batched.requests / max(batched.seconds, 1e-9):.1f} batches/s)",
                load_batch,
            ),
            table_row(
                f"the first {len(batches[:10])} batches again (idempotent: each message answered from its stored ACK)",
                "messages",
                rebatched.sent,
                rebatched.accepted,
                rebatched,
                f"{rebatched.sent / max(rebatched.seconds, 1e-9):,.0f} messages/s",
                None,
            ),
        ]
    )
    body = f"""
Database: `{DB}`, created fresh (migrations, one township hospital and its API key). Server:
`gunicorn yilian.wsgi -w {WORKERS} --threads {THREADS}`, DEBUG off, on the same two cores as the {CLIENTS} sending clients
(Python threads with httpx, keep-alive). Linkage on: every Patient / PID goes through
`identity_ingest`. Two in three carry a valid national ID, one in three none; every person of a run is new, so
no ID is known yet and each one is also blocked and scored against the golden patients already there before a
new golden patient is made. Warm-up: 50 bundles and 100 messages first.

| channel | unit | sent | accepted | seconds | per second | p50 ms | p95 ms | server CPU ms (app + db) | load (1 min) before |
|---|---|---|---|---|---|---|---|---|---|
{rows}

Rows afterwards: {", ".join(f"{label} {n:,}" for label, n in totals.items())}.
{refused}

"Server CPU" is what the gunicorn workers and the PostgreSQL backends of `{DB}` spent per bundle or
message during the run (user + system, from /proc), so it does not depend on what else the machine runs.
Two cores can serve at most 2,000 ms / that figure per second with nothing else running (and the sending
clients take their share): {ceiling(fhir) * per_bundle:,.0f} FHIR resources/s, {ceiling(hl7):,.0f} HL7 messages/s one by one,
{ceiling(batched):,.0f} HL7 messages/s in batches.

Goals on this 2-core machine: ≥ 1,000 FHIR resources/s — {"met" if fhir_rate >= 1000 else "NOT met"} ({fhir_rate:,.0f});
≥ 500 HL7 messages/s — one message per request {"met" if hl7_rate >= 500 else "NOT met"} ({hl7_rate:,.0f}), in batches of
{BATCH} {"met" if batched_rate >= 500 else "NOT met"} ({batched_rate:,.0f}). Each bundle and each single message is one
database transaction that stores the raw message, links the patient and upserts every row. A batch keeps
every message as its own row with its own ACK (a refused one is dead-lettered alone) but stores them with one
INSERT and applies them together in one transaction (`interop.services.hl7_process_many`). The clients and
other helpers' work share the two cores (see the load average).
"""
    if "--no-write" in sys.argv:
        print(rows, file=sys.stderr)
    else:
        write_section(
            "ingest",
            "Ingestion over HTTP (FHIR transaction Bundles, HL7 v2), PostgreSQL, linkage on",
            "bench/run.sh ingest",
            body,
            machine_before=before,
        )
    print(
        f"FHIR {fhir_rate:,.0f} resources/s, HL7 {hl7_rate:,.0f} messages/s, batched {batched_rate:,.0f} messages/s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
