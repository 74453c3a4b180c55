"""A year of demo clinical records for the demo county's residents, fast and deterministic.

Each resident gets what their age and sex make likely: chronic patients (hypertension, type 2
diabetes, COPD, stroke sequelae) four follow-ups a year at their village clinic or township centre
with blood pressure and glucose, everybody colds and the odd fracture, pregnant women antenatal
visits; some go up to the consortium's lead hospital (outpatient, admissions with a discharge
summary), a few settle a visit outside the county (known only from insurance data). Every
institution that treats a resident gets a SourceIdentity for them unless it already has one (the
MPI demo may have made it). Insured encounters have their settlement.

Rows are generated as tuples in column order and written with COPY on PostgreSQL (bulk_create
elsewhere), residents streamed in batches, ids reserved up front so diagnoses and settlements can
name their encounter without reading anything back. About three encounters per resident: the
default 5,000 residents give ~15,000 encounters and ~50,000 rows; 1.6M residents give 5M encounters.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from yilian.demo import taishan
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
DAY_SECONDS = 86_400

# Hospitals outside the county where Taishan residents are treated (name, insurance code, region).
OUTSIDE = (
    ("江门市中心医院", "H44070300001", "440703"),
    ("江门市五邑中医院", "H44070300002", "440703"),
    ("广东省人民医院", "H44010400001", "440104"),
    ("中山大学附属第一医院", "H44010400002", "440104"),
    ("开平市中心医院", "H44078300001", "440783"),
)
OUTSIDE_SHARE = 0.07  # of visits: gives 县域内就诊率 around 93%

_COMMON = {"identity_id", "institution_id", "source_id"}


@dataclass
class _Table:
    model: type[models.Model]
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    next_id: int = 0
    written: int = 0


@dataclass(frozen=True)
class _Place:
    """Where a resident is treated: home clinic, township centre (may be the same), lead hospital."""

    home: Institution
    township: Institution
    lead: Institution


def _columns(model: type[models.Model], *extra: str) -> tuple[str, ...]:
    return ("id", "uuid", "created_at", "updated_at", *extra)


TABLE_COLUMNS: dict[type[models.Model], tuple[str, ...]] = {
    SourceIdentity: _columns(
        SourceIdentity,
        "institution_id",
        "local_id",
        "record_number",
        "name",
        "sex",
        "birth_date",
        "id_type",
        "id_number",
        "id_number_valid",
        "phone",
        "address",
        "town",
        "health_card_number",
        "insurance_number",
        "patient_id",
        "link_score",
        "link_method",
        "linked_at",
        "name_key",
        "phone_key",
    ),
    Encounter: _columns(
        Encounter,
        "identity_id",
        "institution_id",
        "source_id",
        "encounter_class",
        "department_name",
        "practitioner_name",
        "reason",
        "started_at",
        "ended_at",
        "payer_type",
        "total_cost",
        "insurance_paid",
    ),
    Condition: _columns(
        Condition,
        "identity_id",
        "institution_id",
        "source_id",
        "encounter_id",
        "icd10_code",
        "display",
        "is_primary",
        "recorded_at",
    ),
    Observation: _columns(
        Observation,
        "identity_id",
        "institution_id",
        "source_id",
        "encounter_id",
        "category",
        "code",
        "display",
        "value_quantity",
        "value_text",
        "unit",
        "reference_low",
        "reference_high",
        "reference_text",
        "interpretation",
        "effective_at",
    ),
    DiagnosticReport: _columns(
        DiagnosticReport,
        "identity_id",
        "institution_id",
        "source_id",
        "encounter_id",
        "category",
        "code",
        "display",
        "text",
        "conclusion",
        "performer_name",
        "effective_at",
        "issued_at",
    ),
    MedicationRequest: _columns(
        MedicationRequest,
        "identity_id",
        "institution_id",
        "source_id",
        "encounter_id",
        "medication_code",
        "medication_name",
        "dosage_text",
        "quantity",
        "quantity_unit",
        "days_supply",
        "prescriber_name",
        "authored_at",
    ),
    DocumentReference: _columns(
        DocumentReference,
        "identity_id",
        "institution_id",
        "source_id",
        "encounter_id",
        "kind",
        "title",
        "text",
        "attachment_url",
        "content_type",
        "author_name",
        "dated_at",
    ),
    InsuranceSettlement: _columns(
        InsuranceSettlement,
        "identity_id",
        "institution_id",
        "source_id",
        "encounter_id",
        "encounter_class",
        "payer_type",
        "provider_institution_id",
        "provider_name",
        "provider_code",
        "provider_region",
        "within_county",
        "settled_at",
        "total_cost",
        "fund_paid",
        "personal_paid",
    ),
}

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


def _name(code: str) -> str:
    entry = icd10_lookup(code)
    assert entry is not None, code  # noqa: S101 - the demo's own codes
    return entry.name


class _Writer:
    """Buffers rows per table and flushes them: COPY on PostgreSQL, bulk_create elsewhere."""

    def __init__(self, use_copy: bool) -> None:
        self.use_copy = use_copy
        self.tables = {model: _Table(model, columns) for model, columns in TABLE_COLUMNS.items()}
        self.now = timezone.now()

    def reserve(self, model: type[models.Model], count: int) -> int:
        """First of `count` fresh primary keys for `model` (the sequence moves past them)."""
        table = model._meta.db_table
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                sequence = cursor.fetchone()[0]
                cursor.execute("SELECT nextval(%s)", [sequence])
                start = int(cursor.fetchone()[0])
                cursor.execute("SELECT setval(%s, %s)", [sequence, start + count - 1])
                return start
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            return int(cursor.fetchone()[0]) + 1

    def add(self, model: type[models.Model], rng: random.Random, values: tuple[Any, ...]) -> int:
        table = self.tables[model]
        if table.next_id == 0:
            table.next_id = self.reserve(model, 50_000_000 if connection.vendor == "postgresql" else 1)
        pk = table.next_id
        table.next_id += 1
        table.rows.append((pk, uuid.UUID(int=rng.getrandbits(128), version=4), self.now, self.now, *values))
        return pk

    def flush(self) -> None:
        # Identities and encounters first: the other rows point at them.
        order: list[type[models.Model]] = [SourceIdentity, Encounter]
        for model in order + [m for m in self.tables if m not in order]:
            table = self.tables[model]
            if not table.rows:
                continue
            if self.use_copy:
                quote = connection.ops.quote_name
                column_of = {f.attname: str(f.column) for f in model._meta.concrete_fields}
                sql = f"COPY {quote(model._meta.db_table)} ({', '.join(quote(column_of[c]) for c in table.columns)}) FROM STDIN"
                with connection.cursor() as cursor, cursor.copy(sql) as copy:
                    for row in table.rows:
                        copy.write_row(row)
            else:
                self._insert_many(model, table)
            table.written += len(table.rows)
            table.rows.clear()

    def _insert_many(self, model: type[models.Model], table: _Table) -> None:
        """executemany with values adapted once per column: bulk_create's per-field preparation
        and its 999-variable batches took two thirds of a default demo run on SQLite."""
        fields = {f.attname: f for f in model._meta.concrete_fields}
        ops = connection.ops
        converters: list[Callable[[Any], Any] | None] = []
        for name in table.columns:
            field_ = fields[name]
            if isinstance(field_, models.DateTimeField):
                converters.append(ops.adapt_datetimefield_value)
            elif isinstance(field_, models.DateField):
                converters.append(ops.adapt_datefield_value)
            elif isinstance(field_, models.UUIDField) and not connection.features.has_native_uuid_field:
                converters.append(lambda value: value.hex)
            elif isinstance(field_, models.DecimalField):
                converters.append(lambda value: None if value is None else str(value))
            else:
                converters.append(None)
        pairs = list(enumerate(converters))
        rows = [
            tuple(
                value if convert is None or value is None else convert(value)
                for (_i, convert), value in zip(pairs, row, strict=True)
            )
            for row in table.rows
        ]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(str(fields[name].column)) for name in table.columns)
        placeholders = ", ".join(["%s"] * len(table.columns))
        sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608 - our own names
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def finish(self) -> None:
        """On PostgreSQL give the sequences back what was reserved and not used."""
        self.flush()
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            for model, table in self.tables.items():
                if table.next_id:
                    cursor.execute(
                        "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [model._meta.db_table, table.next_id - 1]
                    )


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


class _Generator:
    def __init__(self, rng: random.Random, writer: _Writer, places: dict[int, _Place], county: str, end: dt.datetime) -> None:
        self.rng = rng
        self.writer = writer
        self.places = places
        self.county = county
        self.end = end
        self.counter = 0
        self.run = timezone.localtime(writer.now).strftime("%y%m%d%H%M%S")
        self.identities: dict[tuple[int, int], int] = {}  # (institution id, patient id) -> identity id
        self.names = {
            code: _name(code)
            for code in (
                "I10.x00x002",
                "E11.900",
                "J44.900",
                "I69.300",
                "I63.9",
                "J44.1",
                "S72.0",
                "S52.5",
                "Z34.9",
                "O80",
                *(a[0] for a in ACUTE),
            )
        }

    def when(self, day: int, hour: int = 8) -> dt.datetime:
        """A time in clinic hours `day` days before the end of the year of data (never after it)."""
        local = timezone.localtime(self.end - dt.timedelta(days=day))
        at = local.replace(hour=hour, minute=0, second=0, microsecond=0) + dt.timedelta(minutes=self.rng.randrange(0, 240))
        return at if at <= self.end else at - dt.timedelta(days=1)

    def identity(self, institution: Institution, patient: tuple[Any, ...]) -> int:
        key = (institution.pk, patient[0])
        found = self.identities.get(key)
        if found is not None:
            return found
        pid, _home, name, sex, birth, id_type, id_number, valid, phone, address, town = patient
        pk = self.writer.add(
            SourceIdentity,
            self.rng,
            (
                institution.pk,
                f"DEMO{pid:010d}",
                f"BA{pid:08d}",
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
                f"YB{pid:012d}",
                pid,
                1.0,
                LinkMethod.NATIONAL_ID if valid else LinkMethod.NEW,
                self.writer.now,
                name_pinyin(name),  # the online matcher's blocking keys
                phone_key(phone),
            ),
        )
        self.identities[key] = pk
        return pk

    def source_id(self, prefix: str) -> str:
        # The run's start in the id keeps a later run from colliding with this one's rows.
        self.counter += 1
        return f"{prefix}{self.run}{self.counter:010d}"

    def encounter(
        self,
        patient: tuple[Any, ...],
        institution: Institution,
        kind: str,
        at: dt.datetime,
        *,
        code: str,
        department: str,
        reason: str,
        cost: float,
        payer: str,
        days: int = 0,
    ) -> None:
        rng, add = self.rng, self.writer.add
        identity = self.identity(institution, patient)
        ended = at + (dt.timedelta(days=days, hours=2) if days else dt.timedelta(minutes=rng.randrange(10, 50)))
        total = Decimal(str(round(cost, 2)))
        insured = payer != "self_pay"
        paid = (total * Decimal(str(rng.uniform(0.5, 0.75) if kind == "inpatient" else rng.uniform(0.3, 0.6)))).quantize(
            Decimal("0.01")
        )
        paid = paid if insured else Decimal(0)
        doctor = rng.choice(DOCTORS)
        encounter_source = self.source_id("E")
        encounter_id = add(
            Encounter,
            rng,
            (identity, institution.pk, encounter_source, kind, department, doctor, reason, at, ended, payer, total, paid),
        )
        add(Condition, rng, (identity, institution.pk, self.source_id("D"), encounter_id, code, self.names[code], True, at))
        if insured:
            personal = total - paid
            add(
                InsuranceSettlement,
                rng,
                (
                    identity,
                    institution.pk,
                    self.source_id("S"),
                    encounter_id,
                    kind,
                    payer,
                    institution.pk,
                    institution.name,
                    "",
                    self.county,
                    True,
                    ended,
                    total,
                    paid,
                    personal,
                ),
            )
        if kind == "inpatient":
            add(
                DocumentReference,
                rng,
                (
                    identity,
                    institution.pk,
                    self.source_id("W"),
                    encounter_id,
                    "discharge_summary",
                    "出院小结",
                    f"因{reason}入院，诊断{self.names[code]}，经治疗好转，住院 {days} 天出院。嘱门诊随访。",
                    "",
                    "",
                    doctor,
                    ended,
                ),
            )
        self._results(identity, institution, encounter_id, at, code, doctor)

    def _results(
        self, identity: int, institution: Institution, encounter_id: int, at: dt.datetime, code: str, doctor: str
    ) -> None:
        rng, add = self.rng, self.writer.add
        stem = code[:3]
        if stem in ("I10", "I69"):
            systolic = rng.gauss(142, 16)
            for loinc, name, value, high in (("8480-6", "收缩压", systolic, 139), ("8462-4", "舒张压", systolic * 0.6, 89)):
                flag = "H" if value > high else "N"
                add(
                    Observation,
                    rng,
                    (
                        identity,
                        institution.pk,
                        self.source_id("O"),
                        encounter_id,
                        "vital_signs",
                        loinc,
                        name,
                        Decimal(round(value)),
                        "",
                        "mmHg",
                        None,
                        Decimal(high),
                        "",
                        flag,
                        at,
                    ),
                )
        if stem == "E11" or (stem == "I10" and rng.random() < 0.2):
            glucose = Decimal(str(round(rng.gauss(7.4 if stem == "E11" else 5.6, 1.3), 1)))
            flag = "H" if glucose > Decimal("6.1") else "L" if glucose < Decimal("3.9") else "N"
            add(
                Observation,
                rng,
                (
                    identity,
                    institution.pk,
                    self.source_id("O"),
                    encounter_id,
                    "laboratory",
                    "1558-6",
                    "空腹血糖",
                    glucose,
                    "",
                    "mmol/L",
                    Decimal("3.9"),
                    Decimal("6.1"),
                    "",
                    flag,
                    at,
                ),
            )
        if stem in ("J44", "J20") and rng.random() < 0.5:
            add(
                DiagnosticReport,
                rng,
                (
                    identity,
                    institution.pk,
                    self.source_id("R"),
                    encounter_id,
                    "imaging",
                    "36643-5",
                    "胸部X线摄影（正侧位）",
                    "双肺纹理增多、紊乱。",
                    "符合慢性支气管炎改变。" if stem == "J44" else "双肺纹理增粗。",
                    doctor,
                    at,
                    at + dt.timedelta(hours=3),
                ),
            )
        if stem in ("I63", "I69") and rng.random() < 0.6:
            add(
                DiagnosticReport,
                rng,
                (
                    identity,
                    institution.pk,
                    self.source_id("R"),
                    encounter_id,
                    "imaging",
                    "30745-4",
                    "头颅CT平扫",
                    "左侧基底节区见低密度灶。",
                    "左侧基底节区腔隙性脑梗死。",
                    doctor,
                    at,
                    at + dt.timedelta(hours=2),
                ),
            )
        if stem in ("I10", "I63", "I69") and rng.random() < 0.25:
            add(
                DiagnosticReport,
                rng,
                (
                    identity,
                    institution.pk,
                    self.source_id("R"),
                    encounter_id,
                    "ecg",
                    "11524-6",
                    "十二导联心电图",
                    "窦性心律，心率 76 次/分。",
                    "窦性心律，左心室高电压。",
                    doctor,
                    at,
                    at + dt.timedelta(hours=1),
                ),
            )
        for condition, (drug_code, drug, dosage, quantity, unit) in DRUGS.items():
            if CHRONIC[condition][0][:3] == stem:
                add(
                    MedicationRequest,
                    rng,
                    (
                        identity,
                        institution.pk,
                        self.source_id("P"),
                        encounter_id,
                        drug_code,
                        drug,
                        dosage,
                        Decimal(quantity),
                        unit,
                        28,
                        doctor,
                        at,
                    ),
                )

    def resident(self, patient: tuple[Any, ...]) -> None:
        rng = self.rng
        _pid, home_id, _name, sex, birth, *_rest = patient
        place = self.places.get(home_id)
        if place is None:
            return
        age = (self.end.date() - birth).days // 365 if birth else 40
        payer = rng.choices(("resident", "employee", "self_pay"), (70, 25, 5))[0]
        chronic = [
            c
            for c, p, min_age in (("hypertension", 0.30, 35), ("diabetes", 0.11, 35), ("copd", 0.06, 50), ("stroke", 0.03, 60))
            if age >= min_age and rng.random() < p * (1.4 if age >= 65 else 1)
        ]
        for condition in chronic:
            code, label = CHRONIC[condition]
            for quarter in range(4):  # 规范管理: four face-to-face follow-ups a year
                at = self.when(quarter * 91 + rng.randrange(0, 80))
                where = place.home if rng.random() < 0.7 else place.township
                self.encounter(
                    patient,
                    where,
                    "follow_up",
                    at,
                    code=code,
                    department="全科",
                    reason=f"{label}随访",
                    cost=rng.uniform(15, 90),
                    payer=payer,
                )
            if rng.random() < 0.25:  # referred up to the lead hospital's specialist clinic
                self.encounter(
                    patient,
                    place.lead,
                    "outpatient",
                    self.when(rng.randrange(0, 365)),
                    code=code,
                    department="内科",
                    reason=f"{label}控制不佳，转上级医院",
                    cost=rng.uniform(200, 900),
                    payer=payer,
                )
        if "stroke" in chronic and rng.random() < 0.3:
            self.encounter(
                patient,
                place.lead,
                "inpatient",
                self.when(rng.randrange(20, 365), 10),
                code="I63.9",
                department="神经内科",
                reason="突发左侧肢体无力",
                cost=rng.uniform(9_000, 32_000),
                payer=payer,
                days=rng.randrange(7, 16),
            )
        if "copd" in chronic and rng.random() < 0.35:
            where = place.lead if rng.random() < 0.6 else place.township
            self.encounter(
                patient,
                where,
                "inpatient",
                self.when(rng.randrange(20, 365), 10),
                code="J44.1",
                department="呼吸内科",
                reason="咳喘加重 3 天",
                cost=rng.uniform(4_000, 15_000),
                payer=payer,
                days=rng.randrange(5, 12),
            )
        for _ in range(rng.choices((0, 1, 2, 3, 4), (20, 30, 25, 15, 10))[0]):
            code, department, reason, (low, high) = rng.choice(ACUTE)
            where = place.home if rng.random() < 0.55 else place.township if rng.random() < 0.75 else place.lead
            kind = "emergency" if where is place.lead and rng.random() < 0.3 else "outpatient"
            self.encounter(
                patient,
                where,
                kind,
                self.when(rng.randrange(0, 365)),
                code=code,
                department=department,
                reason=reason,
                cost=rng.uniform(low, high),
                payer=payer,
            )
        if rng.random() < (0.03 if age >= 65 else 0.008):
            code = "S72.0" if age >= 65 else "S52.5"
            self.encounter(
                patient,
                place.lead,
                "inpatient",
                self.when(rng.randrange(20, 365), 15),
                code=code,
                department="骨科",
                reason="跌倒致疼痛、活动受限",
                cost=rng.uniform(15_000, 45_000),
                payer=payer,
                days=rng.randrange(6, 18),
            )
        if sex == "2" and 20 <= age <= 40 and rng.random() < 0.05:
            for visit in range(3):
                self.encounter(
                    patient,
                    place.township,
                    "health_check",
                    self.when(200 - visit * 60),
                    code="Z34.9",
                    department="妇产科",
                    reason="产前检查",
                    cost=rng.uniform(80, 300),
                    payer=payer,
                )
            self.encounter(
                patient,
                place.lead,
                "inpatient",
                self.when(rng.randrange(5, 20), 3),
                code="O80",
                department="产科",
                reason="孕足月待产",
                cost=rng.uniform(3_000, 7_000),
                payer=payer,
                days=3,
            )
        if payer != "self_pay" and rng.random() < OUTSIDE_SHARE * 4:
            self._outside(patient, place, payer)

    def _outside(self, patient: tuple[Any, ...], place: _Place, payer: str) -> None:
        """A visit outside the county, known from the insurance settlement the lead hospital imports."""
        rng = self.rng
        name, code, region = rng.choice(OUTSIDE)
        inpatient = rng.random() < 0.3
        total = Decimal(str(round(rng.uniform(8_000, 60_000) if inpatient else rng.uniform(150, 1_500), 2)))
        fund = (total * Decimal(str(rng.uniform(0.35, 0.55)))).quantize(Decimal("0.01"))
        identity = self.identity(place.lead, patient)
        self.writer.add(
            InsuranceSettlement,
            rng,
            (
                identity,
                place.lead.pk,
                self.source_id("YB"),
                None,
                "inpatient" if inpatient else "outpatient",
                payer,
                None,
                name,
                code,
                region,
                False,
                self.when(rng.randrange(0, 365), 16),
                total,
                fund,
                total - fund,
            ),
        )


def _places() -> dict[int, _Place]:
    """For every demo institution a resident may be registered at: its township centre and lead hospital."""
    institutions = {i.pk: i for i in Institution.objects.filter(authority__division_code=taishan.DIVISION_CODE)}
    lead_of: dict[int, Institution] = {}
    leads = {c.pk: c.lead_institution_id for c in Consortium.objects.filter(authority__division_code=taishan.DIVISION_CODE)}
    for membership in ConsortiumMembership.objects.current().filter(consortium_id__in=list(leads)):
        lead_of.setdefault(membership.institution_id, institutions[leads[membership.consortium_id]])
    places = {}
    for pk, institution in institutions.items():
        # A village clinic's township centre is its parent; anyone else is their own "township".
        township = institutions.get(institution.parent_id or -1, institution)
        lead = lead_of.get(pk) or lead_of.get(township.pk)
        if lead is None:
            continue
        places[pk] = _Place(home=institution, township=township, lead=lead)
    return places


def _patients(batch: int) -> Iterator[list[tuple[Any, ...]]]:
    columns = (
        "id",
        "home_institution_id",
        "name",
        "sex",
        "birth_date",
        "id_type",
        "id_number",
        "id_number_valid",
        "phone",
        "address",
        "town",
    )
    queryset = Patient.objects.filter(home_institution__authority__division_code=taishan.DIVISION_CODE).order_by("id")
    chunk: list[tuple[Any, ...]] = []
    for row in queryset.values_list(*columns).iterator(chunk_size=batch):
        chunk.append(row)
        if len(chunk) == batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class DemoEncounters:
    counts: dict[str, int]
    seconds: float


def demo_encounters_load(
    *, seed: int = taishan.DEFAULT_SEED, use_copy: bool | None = None, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Add a year of clinical records for every demo resident (one transaction); returns row counts by label.

    Deterministic for a seed (uuids included), so it runs once per county: the demo command calls it
    right after it has built (or, with --reset, rebuilt) the county."""
    return demo_encounters_build(seed=seed, use_copy=use_copy, progress=progress).counts


def demo_encounters_build(
    *, seed: int = taishan.DEFAULT_SEED, use_copy: bool | None = None, progress: Callable[[int], None] | None = None
) -> DemoEncounters:
    started = time.perf_counter()
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    rng = random.Random(f"yilian-demo:{seed}:encounters")
    county = taishan.DIVISION_CODE
    with transaction.atomic():
        writer = _Writer(use_copy)
        places = _places()
        end = timezone.now() - dt.timedelta(hours=2)
        generator = _Generator(rng, writer, places, county, end)
        for patients in _patients(BATCH):
            existing = SourceIdentity.objects.filter(patient_id__in=[p[0] for p in patients]).values_list(
                "institution_id", "patient_id", "id"
            )
            generator.identities = {(i, p): pk for i, p, pk in existing}
            for patient in patients:
                generator.resident(patient)
            writer.flush()
            if progress:
                progress(len(patients))
        writer.finish()
    counts = {LABELS[model]: table.written for model, table in writer.tables.items()}
    return DemoEncounters(counts=counts, seconds=time.perf_counter() - started)
