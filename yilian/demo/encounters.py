"""A year of demo clinical records for the demo county's residents, fast and deterministic.

Each resident gets what their age and sex make likely: chronic patients (hypertension, type 2
diabetes, COPD, stroke sequelae) four follow-ups a year at their village clinic or township centre
with blood pressure and glucose, everybody colds and the odd fracture, pregnant women antenatal
visits; some go up to the consortium's lead hospital (outpatient, admissions with a discharge
summary), a few settle a visit outside the county (known only from insurance data). Every
institution that treats a resident gets a SourceIdentity for them unless it already has one (the
MPI demo may have made it). Insured encounters have their settlement.

Built for millions of rows (5,000,000 encounters are about 25M rows): every row is formatted once,
by hand, as a line of PostgreSQL's COPY text format (times as whole seconds since the epoch, money
in integer cents, uuids from the seeded generator's bits, no Decimal or datetime per row), and the
lines go to the server with one COPY per table per 5,000-resident batch. For a big load the tables'
plain indexes, foreign keys and secondary unique constraints are dropped first and rebuilt at the
end, in the same transaction (as the residents are). Other databases get the same lines split back
into values and inserted with executemany, so both paths write the same rows. Ids are reserved from
the sequences up front so a diagnosis or settlement can name its encounter without reading anything
back. About 3.2 encounters per resident: the default 5,000 residents give ~16,000 encounters and
~80,000 rows; `demo_county --encounters=5000000` builds enough residents for that many.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from yilian.demo import taishan
from yilian.demo.residents import _secondary_indexes_suspended
from yilian.organizations.models import Consortium, ConsortiumMembership, Institution
from yilian.patients.linkage import name_pinyin, phone_key
from yilian.patients.models import LinkMethod, Patient, SourceIdentity
from yilian.records.icd10 import icd10_lookup
from yilian.records.models import (
    Condition,
    DiagnosticReport,
    DocumentReference,
    Encounter,
    InsuranceSettlement,
    MedicationRequest,
    Observation,
)

BATCH = 5_000  # residents per generated batch
# From this many residents on, PostgreSQL loads the records faster with the tables' plain indexes,
# foreign keys and secondary unique constraints dropped and rebuilt (about 16 rows per resident).
SUSPEND_INDEXES_FROM = 10_000
# Encounters a resident has in a year, a little under the ~3.2 the county's age mix gives, so
# residents_for_encounters(n) always builds enough residents for n encounters.
ENCOUNTERS_PER_RESIDENT = 3.1
RESERVED_IDS = 50_000_000  # per table, taken from the sequence up front (other writers start after them)
DAY_SECONDS = 86_400
EPOCH = dt.date(1970, 1, 1)
_UUID_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & (1 << 128) - 1  # clear the version and variant bits
_UUID_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)  # then set version 4, RFC 4122 variant
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}

# Hospitals outside the county where Taishan residents are treated (name, insurance code, region).
OUTSIDE = (
    ("江门市中心医院", "H44070300001", "440703"),
    ("江门市五邑中医院", "H44070300002", "440703"),
    ("广东省人民医院", "H44010400001", "440104"),
    ("中山大学附属第一医院", "H44010400002", "440104"),
    ("开平市中心医院", "H44078300001", "440783"),
)
OUTSIDE_SHARE = 0.07  # of visits: gives 县域内就诊率 around 93%


def _columns(*extra: str) -> tuple[str, ...]:
    return ("id", "uuid", "created_at", "updated_at", *extra)


_RECORD = ("identity_id", "institution_id", "source_id")

# Every table the records write, in the order the lines are written (identities and encounters
# first: the other rows point at them), with the columns each line holds.
TABLE_COLUMNS: dict[type[models.Model], tuple[str, ...]] = {
    SourceIdentity: _columns(
        "institution_id", "local_id", "record_number", "name", "sex", "birth_date", "id_type", "id_number",
        "id_number_valid", "phone", "address", "town", "health_card_number", "insurance_number", "patient_id",
        "link_score", "link_method", "linked_at", "name_key", "phone_key",
    ),
    Encounter: _columns(
        *_RECORD, "encounter_class", "department_name", "practitioner_name", "reason", "started_at", "ended_at",
        "payer_type", "total_cost", "insurance_paid",
    ),
    Condition: _columns(*_RECORD, "encounter_id", "icd10_code", "display", "is_primary", "recorded_at"),
    Observation: _columns(
        *_RECORD, "encounter_id", "category", "code", "display", "value_quantity", "value_text", "unit",
        "reference_low", "reference_high", "reference_text", "interpretation", "effective_at",
    ),
    DiagnosticReport: _columns(
        *_RECORD, "encounter_id", "category", "code", "display", "text", "conclusion", "performer_name",
        "effective_at", "issued_at",
    ),
    MedicationRequest: _columns(
        *_RECORD, "encounter_id", "medication_code", "medication_name", "dosage_text", "quantity", "quantity_unit",
        "days_supply", "prescriber_name", "authored_at",
    ),
    DocumentReference: _columns(
        *_RECORD, "encounter_id", "kind", "title", "text", "attachment_url", "content_type", "author_name", "dated_at",
    ),
    InsuranceSettlement: _columns(
        *_RECORD, "encounter_id", "encounter_class", "payer_type", "provider_institution_id", "provider_name",
        "provider_code", "provider_region", "within_county", "settled_at", "total_cost", "fund_paid", "personal_paid",
    ),
}  # fmt: skip

LABELS: dict[type[models.Model], str] = {
    SourceIdentity: "源身份",
    Encounter: "就诊",
    Condition: "诊断",
    Observation: "检验/体征",
    DiagnosticReport: "检查报告",
    MedicationRequest: "处方",
    DocumentReference: "文书",
    InsuranceSettlement: "医保结算",
}


def residents_for_encounters(encounters: int) -> int:
    """How many residents to build so that their year of records holds at least `encounters`."""
    return math.ceil(encounters / ENCOUNTERS_PER_RESIDENT)


def _copy_text(value: object) -> str:
    """A value read from the database as COPY text: NULL as \\N, special characters escaped."""
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "1" if value else "0"
    return str(value).translate(_COPY_ESCAPES)


def _from_copy_text(field: str) -> str | None:
    if field == "\\N":
        return None
    if "\\" not in field:
        return field
    parts = field.split("\\\\")  # an escaped backslash first, so "\\t" stays a backslash and a t
    return "\\".join(p.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r") for p in parts)


def _target(model: type[models.Model]) -> str:
    """`table (column, ...)` for the columns a line of `model` holds, quoted."""
    quote = connection.ops.quote_name
    column_of = {f.attname: str(f.column) for f in model._meta.concrete_fields}
    return f"{quote(model._meta.db_table)} ({', '.join(quote(column_of[c]) for c in TABLE_COLUMNS[model])})"


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class _Writer:
    """Lines of COPY text per table: streamed with COPY on PostgreSQL, split and inserted elsewhere.

    Values are written the way both databases read them back: booleans 1/0, uuids as 32 hex digits,
    times in UTC (`YYYY-MM-DD HH:MM:SS`, with `+00` for PostgreSQL's timestamptz)."""

    def __init__(self, rng: random.Random, *, use_copy: bool) -> None:
        self.rng = rng
        self.use_copy = use_copy
        self.postgres = connection.vendor == "postgresql"
        self.suffix = "+00" if self.postgres else ""
        self.days: dict[int, str] = {}
        self.now = self.stamp(int(timezone.now().timestamp()))
        self.lines: dict[type[models.Model], list[str]] = {model: [] for model in TABLE_COLUMNS}
        self.next_id = {model: self._reserve(model) for model in TABLE_COLUMNS}
        self.first_id = dict(self.next_id)
        self.written = dict.fromkeys(TABLE_COLUMNS, 0)
        # Made here: the worker thread must not touch Django's per-thread connection.
        self.targets = {model: _target(model) for model in TABLE_COLUMNS}
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def stamp(self, seconds: int) -> str:
        """A moment (whole seconds since the epoch) as the database's text for a timestamp in UTC."""
        day, rest = divmod(seconds, DAY_SECONDS)
        date = self.days.get(day)
        if date is None:
            date = self.days[day] = (EPOCH + dt.timedelta(days=day)).isoformat()
        return f"{date} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}{self.suffix}"

    def _reserve(self, model: type[models.Model]) -> int:
        """First of RESERVED_IDS fresh primary keys for `model` (on PostgreSQL the sequence moves past them)."""
        table = model._meta.db_table
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                sequence = cursor.fetchone()[0]
                cursor.execute("SELECT nextval(%s)", [sequence])
                start = int(cursor.fetchone()[0])
                cursor.execute("SELECT setval(%s, %s)", [sequence, start + RESERVED_IDS - 1])
                return start
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            return int(cursor.fetchone()[0]) + 1

    def add(self, model: type[models.Model], values: str) -> int:
        """Append a row: its id, a seeded uuid, the load's time twice, then `values` (tab-separated COPY text)."""
        pk = self.next_id[model]
        self.next_id[model] = pk + 1
        self.lines[model].append(
            f"{pk}\t{(self.rng.getrandbits(128) & _UUID_KEEP) | _UUID_VERSION_4:032x}\t{self.now}\t{self.now}\t{values}\n"
        )
        return pk

    def flush(self) -> None:
        """Write the lines made so far. COPY runs on a worker thread, on the same connection and
        transaction, while the caller makes the next batch: the server ingests one batch while Python
        formats the next (the connection's lock keeps the caller's own queries out of a running COPY)."""
        ready = {model: lines for model, lines in self.lines.items() if lines}
        self.lines = {model: [] for model in TABLE_COLUMNS}
        for model, lines in ready.items():
            if self.next_id[model] - self.first_id[model] > RESERVED_IDS:
                raise RuntimeError(f"more than {RESERVED_IDS:,} rows for {model._meta.db_table} in one load")
            self.written[model] += len(lines)
        if not self.use_copy:
            self._insert(ready)
            return
        self.wait()
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-records-copy")
        self._pending = self._worker.submit(self._copy, connection.connection, ready)

    def _copy(self, raw: Any, ready: dict[type[models.Model], list[str]]) -> None:
        with raw.cursor() as cursor:
            for model, lines in ready.items():
                with cursor.copy(f"COPY {self.targets[model]} FROM STDIN") as copy:
                    copy.write("".join(lines))

    def _insert(self, ready: dict[type[models.Model], list[str]]) -> None:
        with connection.cursor() as cursor:
            for model, lines in ready.items():
                placeholders = ", ".join(["%s"] * len(TABLE_COLUMNS[model]))
                cursor.executemany(
                    f"INSERT INTO {self.targets[model]} VALUES ({placeholders})",  # noqa: S608 - our own names
                    [[_from_copy_text(field) for field in line[:-1].split("\t")] for line in lines],
                )

    def wait(self) -> None:
        """Wait for the COPY in flight, if any (re-raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Stop the worker once its COPY is over, whatever happened (always called)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    def finish(self) -> None:
        """Write the rest, and on PostgreSQL give the sequences back what was reserved and not used."""
        self.flush()
        self.wait()
        if not self.postgres:
            return
        with connection.cursor() as cursor:
            for model, next_id in self.next_id.items():
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [model._meta.db_table, next_id - 1])


# What a visit of each kind looks like: (ICD-10, department, reason, cost range in yuan).
ACUTE = (
    ("J06.9", "全科", "咽痛、流涕 2 天", (40, 160)),
    ("J20.9", "全科", "咳嗽、咳痰 5 天", (60, 220)),
    ("K29.7", "全科", "上腹部不适 1 周", (50, 260)),
    ("M54.5", "全科", "腰痛 2 周", (60, 300)),
    ("N39.0", "全科", "尿频、尿痛 3 天", (60, 240)),
    ("R50.9", "全科", "发热 1 天", (40, 180)),
)
CHRONIC = {
    "hypertension": ("I10.x00x002", "高血压"),
    "diabetes": ("E11.900", "2型糖尿病"),
    "copd": ("J44.900", "慢阻肺"),
    "stroke": ("I69.300", "脑梗死后遗症"),
}
DRUGS = {
    "hypertension": ("XC08CAA001", "苯磺酸氨氯地平片", "5mg 口服 每日一次", 28, "片"),
    "diabetes": ("XA10BAA001", "盐酸二甲双胍片", "0.5g 口服 每日三次", 84, "片"),
    "copd": ("XR03AKA001", "沙美特罗替卡松粉吸入剂", "1吸 吸入 每日两次", 1, "盒"),
    "stroke": ("XB01ACA001", "阿司匹林肠溶片", "100mg 口服 每日一次", 30, "片"),
}
DOCTORS = ("黄医生", "李医生", "陈医生", "伍医生", "梅医生", "甄医生", "刘医生", "邝医生")
# The prescription that goes with a follow-up, by the first three characters of its ICD-10 code.
_DRUG_BY_STEM = {
    CHRONIC[condition][0][:3]: "{}\t{}\t{}\t{}\t{}\t28".format(*drug) for condition, drug in DRUGS.items()
}  # fmt: skip
_CHRONIC_RISK = (("hypertension", 0.30, 35), ("diabetes", 0.11, 35), ("copd", 0.06, 50), ("stroke", 0.03, 60))


def _name(code: str) -> str:
    entry = icd10_lookup(code)
    assert entry is not None, code  # noqa: S101 - the demo's own codes
    return entry.name


@dataclass(frozen=True)
class _Place:
    """Where a resident is treated: home clinic, township centre (may be the same), lead hospital."""

    home: int
    township: int
    lead: int


class _Resident:
    """One resident as the records need them: their row, and their identity's COPY text made once."""

    __slots__ = ("_identity", "age", "pk", "place", "sex")

    def __init__(self, row: tuple[Any, ...], place: _Place, end: dt.date) -> None:
        self.pk: int = row[0]
        self.place = place
        self.sex: str = row[3]
        birth: dt.date | None = row[4]
        self.age = (end - birth).days // 365 if birth else 40
        self._identity: tuple[Any, ...] | str = row

    def identity_text(self, linked_at: str) -> str:
        """The identity columns after local_id and record number, shared by every institution's copy."""
        if isinstance(self._identity, str):
            return self._identity
        pk, _home, name, sex, birth, id_type, id_number, valid, phone, address, town = self._identity
        method = LinkMethod.NATIONAL_ID if valid else LinkMethod.NEW
        self._identity = "\t".join(
            _copy_text(v)
            for v in (
                name,
                sex,
                birth,
                id_type,
                id_number,
                valid,
                phone,
                address,
                town,
                "",
                f"YB{pk:012d}",
                pk,
                1.0,
                method.value,
                linked_at,
                name_pinyin(name),
                phone_key(phone),
            )
        )
        return self._identity


class _Generator:
    def __init__(
        self, rng: random.Random, writer: _Writer, places: dict[int, _Place], end: dt.datetime, limit: int | None
    ) -> None:
        self.rng = rng
        self.writer = writer
        self.places = places
        self.county = taishan.DIVISION_CODE
        self.limit = limit
        self.encounters = 0
        self.end = int(end.timestamp())
        self.end_date = timezone.localtime(end).date()
        # Local midnight of the last day of data; the county's zone (Asia/Shanghai) has no summer time,
        # so `day` days earlier is exactly day × 86,400 seconds before it.
        self.midnight = int(timezone.localtime(end).replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
        self.counter = 0
        self.run = timezone.localtime(timezone.now()).strftime("%y%m%d%H%M%S")
        self.identities: dict[tuple[int, int], int] = {}  # (institution id, patient id) -> identity id
        self.institution_names = {pk: _copy_text(name) for pk, name in Institution.objects.values_list("pk", "name")}
        self.names = {
            code: _name(code)
            for code in ("I10.x00x002", "E11.900", "J44.900", "I69.300", "I63.9", "J44.1", "S72.0", "S52.5", "Z34.9",
                         "O80", *(a[0] for a in ACUTE))
        }  # fmt: skip

    @property
    def full(self) -> bool:
        return self.limit is not None and self.encounters >= self.limit

    def when(self, day: int, hour: int = 8) -> int:
        """A time in clinic hours `day` days before the end of the year of data (never after it)."""
        at = self.midnight - day * DAY_SECONDS + hour * 3600 + self.rng.randrange(0, 240) * 60
        return at if at <= self.end else at - DAY_SECONDS

    def identity(self, institution: int, resident: _Resident) -> int:
        key = (institution, resident.pk)
        found = self.identities.get(key)
        if found is not None:
            return found
        pk = resident.pk
        found = self.identities[key] = self.writer.add(
            SourceIdentity,
            f"{institution}\tDEMO{pk:010d}\tBA{pk:08d}\t{resident.identity_text(self.writer.now)}",
        )
        return found

    def source_id(self, prefix: str) -> str:
        # The run's start in the id keeps a later run from colliding with this one's rows.
        self.counter += 1
        return f"{prefix}{self.run}{self.counter:010d}"

    def encounter(
        self,
        resident: _Resident,
        institution: int,
        kind: str,
        at: int,
        *,
        code: str,
        department: str,
        reason: str,
        cost: float,
        payer: str,
        days: int = 0,
    ) -> None:
        if self.full:
            return
        self.encounters += 1
        rng, add, stamp = self.rng, self.writer.add, self.writer.stamp
        identity = self.identity(institution, resident)
        ended = at + (days * DAY_SECONDS + 7200 if days else rng.randrange(10, 50) * 60)
        total = round(cost * 100)
        insured = payer != "self_pay"
        share = rng.uniform(0.5, 0.75) if kind == "inpatient" else rng.uniform(0.3, 0.6)
        paid = round(total * share) if insured else 0
        doctor = rng.choice(DOCTORS)
        started_text, ended_text = stamp(at), stamp(ended)
        record = f"{identity}\t{institution}\t"
        encounter_id = add(
            Encounter,
            f"{record}{self.source_id('E')}\t{kind}\t{department}\t{doctor}\t{reason}\t{started_text}\t{ended_text}\t"
            f"{payer}\t{_money(total)}\t{_money(paid)}",
        )
        add(Condition, f"{record}{self.source_id('D')}\t{encounter_id}\t{code}\t{self.names[code]}\t1\t{started_text}")
        if insured:
            add(
                InsuranceSettlement,
                f"{record}{self.source_id('S')}\t{encounter_id}\t{kind}\t{payer}\t{institution}\t"
                f"{self.institution_names[institution]}\t\t{self.county}\t1\t{ended_text}\t{_money(total)}\t"
                f"{_money(paid)}\t{_money(total - paid)}",
            )
        if kind == "inpatient":
            add(
                DocumentReference,
                f"{record}{self.source_id('W')}\t{encounter_id}\tdischarge_summary\t出院小结\t"
                f"因{reason}入院，诊断{self.names[code]}，经治疗好转，住院 {days} 天出院。嘱门诊随访。"
                f"\t\t\t{doctor}\t{ended_text}",
            )
        self._results(record, encounter_id, at, started_text, code, doctor)

    def _results(self, record: str, encounter_id: int, at: int, at_text: str, code: str, doctor: str) -> None:
        rng, add, stamp = self.rng, self.writer.add, self.writer.stamp
        stem = code[:3]
        if stem in ("I10", "I69"):
            systolic = rng.gauss(142, 16)
            for loinc, name, value, high in (("8480-6", "收缩压", systolic, 139), ("8462-4", "舒张压", systolic * 0.6, 89)):
                add(
                    Observation,
                    f"{record}{self.source_id('O')}\t{encounter_id}\tvital_signs\t{loinc}\t{name}\t{round(value)}\t\tmmHg\t"
                    f"\\N\t{high}\t\t{'H' if value > high else 'N'}\t{at_text}",
                )
        if stem == "E11" or (stem == "I10" and rng.random() < 0.2):
            tenths = max(20, round(rng.gauss(7.4 if stem == "E11" else 5.6, 1.3) * 10))  # mmol/L × 10, never below 2.0
            flag = "H" if tenths > 61 else "L" if tenths < 39 else "N"
            add(
                Observation,
                f"{record}{self.source_id('O')}\t{encounter_id}\tlaboratory\t1558-6\t空腹血糖\t{tenths // 10}.{tenths % 10}\t"
                f"\tmmol/L\t3.9\t6.1\t\t{flag}\t{at_text}",
            )
        if stem in ("J44", "J20") and rng.random() < 0.5:
            conclusion = "符合慢性支气管炎改变。" if stem == "J44" else "双肺纹理增粗。"
            add(
                DiagnosticReport,
                f"{record}{self.source_id('R')}\t{encounter_id}\timaging\t36643-5\t胸部X线摄影（正侧位）\t双肺纹理增多、紊乱。\t"
                f"{conclusion}\t{doctor}\t{at_text}\t{stamp(at + 3 * 3600)}",
            )
        if stem in ("I63", "I69") and rng.random() < 0.6:
            add(
                DiagnosticReport,
                f"{record}{self.source_id('R')}\t{encounter_id}\timaging\t30745-4\t头颅CT平扫\t左侧基底节区见低密度灶。\t"
                f"左侧基底节区腔隙性脑梗死。\t{doctor}\t{at_text}\t{stamp(at + 2 * 3600)}",
            )
        if stem in ("I10", "I63", "I69") and rng.random() < 0.25:
            add(
                DiagnosticReport,
                f"{record}{self.source_id('R')}\t{encounter_id}\tecg\t11524-6\t十二导联心电图\t窦性心律，心率 76 次/分。\t"
                f"窦性心律，左心室高电压。\t{doctor}\t{at_text}\t{stamp(at + 3600)}",
            )
        drug = _DRUG_BY_STEM.get(stem)
        if drug is not None:
            add(MedicationRequest, f"{record}{self.source_id('P')}\t{encounter_id}\t{drug}\t{doctor}\t{at_text}")

    def resident(self, resident: _Resident) -> None:
        if self.full:
            return
        rng, place, age = self.rng, resident.place, resident.age
        payer = rng.choices(("resident", "employee", "self_pay"), (70, 25, 5))[0]
        chronic = [c for c, p, min_age in _CHRONIC_RISK if age >= min_age and rng.random() < p * (1.4 if age >= 65 else 1)]
        for condition in chronic:
            code, label = CHRONIC[condition]
            for quarter in range(4):  # 规范管理: four face-to-face follow-ups a year
                at = self.when(quarter * 91 + rng.randrange(0, 80))
                where = place.home if rng.random() < 0.7 else place.township
                self.encounter(
                    resident, where, "follow_up", at, code=code, department="全科", reason=f"{label}随访",
                    cost=rng.uniform(15, 90), payer=payer,
                )  # fmt: skip
            if rng.random() < 0.25:  # referred up to the lead hospital's specialist clinic
                self.encounter(
                    resident, place.lead, "outpatient", self.when(rng.randrange(0, 365)), code=code, department="内科",
                    reason=f"{label}控制不佳，转上级医院", cost=rng.uniform(200, 900), payer=payer,
                )  # fmt: skip
        if "stroke" in chronic and rng.random() < 0.3:
            self.encounter(
                resident, place.lead, "inpatient", self.when(rng.randrange(20, 365), 10), code="I63.9",
                department="神经内科", reason="突发左侧肢体无力", cost=rng.uniform(9_000, 32_000), payer=payer,
                days=rng.randrange(7, 16),
            )  # fmt: skip
        if "copd" in chronic and rng.random() < 0.35:
            where = place.lead if rng.random() < 0.6 else place.township
            self.encounter(
                resident, where, "inpatient", self.when(rng.randrange(20, 365), 10), code="J44.1", department="呼吸内科",
                reason="咳喘加重 3 天", cost=rng.uniform(4_000, 15_000), payer=payer, days=rng.randrange(5, 12),
            )  # fmt: skip
        for _ in range(rng.choices((0, 1, 2, 3, 4), (20, 30, 25, 15, 10))[0]):
            code, department, reason, (low, high) = rng.choice(ACUTE)
            where = place.home if rng.random() < 0.55 else place.township if rng.random() < 0.75 else place.lead
            kind = "emergency" if where == place.lead and rng.random() < 0.3 else "outpatient"
            self.encounter(
                resident, where, kind, self.when(rng.randrange(0, 365)), code=code, department=department,
                reason=reason, cost=rng.uniform(low, high), payer=payer,
            )  # fmt: skip
        if rng.random() < (0.03 if age >= 65 else 0.008):
            self.encounter(
                resident, place.lead, "inpatient", self.when(rng.randrange(20, 365), 15),
                code="S72.0" if age >= 65 else "S52.5", department="骨科", reason="跌倒致疼痛、活动受限",
                cost=rng.uniform(15_000, 45_000), payer=payer, days=rng.randrange(6, 18),
            )  # fmt: skip
        if resident.sex == "2" and 20 <= age <= 40 and rng.random() < 0.05:
            for visit in range(3):
                self.encounter(
                    resident, place.township, "health_check", self.when(200 - visit * 60), code="Z34.9",
                    department="妇产科", reason="产前检查", cost=rng.uniform(80, 300), payer=payer,
                )  # fmt: skip
            self.encounter(
                resident, place.lead, "inpatient", self.when(rng.randrange(5, 20), 3), code="O80", department="产科",
                reason="孕足月待产", cost=rng.uniform(3_000, 7_000), payer=payer, days=3,
            )  # fmt: skip
        if payer != "self_pay" and rng.random() < OUTSIDE_SHARE * 4 and not self.full:
            self._outside(resident, payer)

    def _outside(self, resident: _Resident, payer: str) -> None:
        """A visit outside the county, known from the insurance settlement the lead hospital imports."""
        rng = self.rng
        name, code, region = rng.choice(OUTSIDE)
        inpatient = rng.random() < 0.3
        total = round((rng.uniform(8_000, 60_000) if inpatient else rng.uniform(150, 1_500)) * 100)
        fund = round(total * rng.uniform(0.35, 0.55))
        lead = resident.place.lead
        identity = self.identity(lead, resident)
        settled = self.writer.stamp(self.when(rng.randrange(0, 365), 16))
        self.writer.add(
            InsuranceSettlement,
            f"{identity}\t{lead}\t{self.source_id('YB')}\t\\N\t{'inpatient' if inpatient else 'outpatient'}\t{payer}\t"
            f"\\N\t{name}\t{code}\t{region}\t0\t{settled}\t{_money(total)}\t{_money(fund)}\t{_money(total - fund)}",
        )


def _places() -> dict[int, _Place]:
    """For every demo institution a resident may be registered at: its township centre and lead hospital."""
    institutions = dict(Institution.objects.filter(authority__division_code=taishan.DIVISION_CODE).values_list("pk", "parent_id"))
    leads = dict(
        Consortium.objects.filter(authority__division_code=taishan.DIVISION_CODE).values_list("pk", "lead_institution_id")
    )
    lead_of: dict[int, int] = {}
    for membership in ConsortiumMembership.objects.current().filter(consortium_id__in=list(leads)):
        lead_of.setdefault(membership.institution_id, leads[membership.consortium_id])
    places = {}
    for pk, parent in institutions.items():
        # A village clinic's township centre is its parent; anyone else is their own "township".
        township = parent if parent in institutions else pk
        lead = lead_of.get(pk) or lead_of.get(township)
        if lead is None:
            continue
        places[pk] = _Place(home=pk, township=township, lead=lead)
    return places


_PATIENT_COLUMNS = (
    "id", "home_institution_id", "name", "sex", "birth_date", "id_type", "id_number", "id_number_valid", "phone",
    "address", "town",
)  # fmt: skip


def _patients() -> Generator[list[tuple[Any, ...]]]:
    """The county's residents in primary-key batches (a server-side cursor on PostgreSQL)."""
    queryset = Patient.objects.filter(home_institution__authority__division_code=taishan.DIVISION_CODE).order_by("id")
    chunk: list[tuple[Any, ...]] = []
    for row in queryset.values_list(*_PATIENT_COLUMNS).iterator(chunk_size=BATCH):
        chunk.append(row)
        if len(chunk) == BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _identities_by_patient() -> Generator[tuple[int, int, int]]:
    """(patient, institution, identity) of every linked source identity, in patient order.

    Read as one sorted stream beside the residents' and merged with them: a lookup per batch would
    need the patient index, which a big load drops. Rows this load adds come behind the stream's
    position (their patients are already read), so it never meets them."""
    queryset = SourceIdentity.objects.filter(patient__isnull=False).order_by("patient_id", "id")
    yield from queryset.values_list("patient_id", "institution_id", "id").iterator(chunk_size=BATCH * 4)


def _with_identities(
    patients: Iterator[list[tuple[Any, ...]]], known: Iterator[tuple[int, int, int]]
) -> Generator[tuple[list[tuple[Any, ...]], dict[tuple[int, int], int]]]:
    """Each batch of residents with the identities they already have, by (institution, patient)."""
    pending = next(known, None)
    for batch in patients:
        last = batch[-1][0]
        found: dict[tuple[int, int], int] = {}
        while pending is not None and pending[0] <= last:
            found[(pending[1], pending[0])] = pending[2]
            pending = next(known, None)
        yield batch, found


@dataclass
class DemoEncounters:
    counts: dict[str, int]
    seconds: float
    rebuild_seconds: float = 0.0  # of `seconds`: rebuilding the indexes and constraints after a big load
    residents: int = 0


def demo_encounters_load(
    *,
    seed: int = taishan.DEFAULT_SEED,
    use_copy: bool | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Add a year of clinical records for every demo resident (one transaction); returns row counts by label.

    Deterministic for a seed (uuids included), so it runs once per county: the demo command calls it
    right after it has built (or, with --reset, rebuilt) the county."""
    return demo_encounters_build(seed=seed, use_copy=use_copy, limit=limit, progress=progress).counts


def demo_encounters_build(
    *,
    seed: int = taishan.DEFAULT_SEED,
    use_copy: bool | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> DemoEncounters:
    """A year of records for the county's residents in patient order; with `limit`, stop at that many
    encounters (the residents after that have none). `use_copy` forces the writer (None: COPY on PostgreSQL)."""
    started = time.perf_counter()
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    rng = random.Random(f"yilian-demo:{seed}:encounters")
    result = DemoEncounters(counts={}, seconds=0.0)
    county = Patient.objects.filter(home_institution__authority__division_code=taishan.DIVISION_CODE)
    with transaction.atomic(), connection.cursor() as cursor, ExitStack() as suspended:
        suspend = use_copy and county.count() >= SUSPEND_INDEXES_FROM and limit != 0
        for model in TABLE_COLUMNS if suspend else ():
            suspended.enter_context(_secondary_indexes_suspended(cursor, model._meta.db_table, suspend=True, unique=True))
        writer = _Writer(rng, use_copy=use_copy)
        places = _places()
        end = timezone.now() - dt.timedelta(hours=2)
        generator = _Generator(rng, writer, places, end, limit)
        patients, known = _patients(), _identities_by_patient()
        batches = _with_identities(patients, known)
        try:
            current = next(batches, None)
            while current is not None:
                batch, generator.identities = current
                for row in batch:
                    place = places.get(row[1])
                    if place is not None:
                        generator.resident(_Resident(row, place, generator.end_date))
                # Read the next batch before this one's COPY starts: a COPY holds the connection.
                current = None if generator.full else next(batches, None)
                writer.flush()
                result.residents += len(batch)
                if progress:
                    progress(len(batch))
        finally:
            writer.close()
            # Close the server-side cursors: an open one would forbid rebuilding its table's constraints.
            for stream in (batches, patients, known):
                stream.close()
        writer.finish()
        rebuild_started = time.perf_counter()
        suspended.close()  # rebuild the indexes and constraints, still inside the transaction
        result.rebuild_seconds = time.perf_counter() - rebuild_started if suspend else 0.0
    if suspend:
        with connection.cursor() as cursor:
            for model in TABLE_COLUMNS:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    result.counts = {LABELS[model]: writer.written[model] for model in TABLE_COLUMNS}
    result.seconds = time.perf_counter() - started
    return result
