"""Reads of the shared health record. Callers have let the actor in with
`records.access.access_patient_record` (or `patients.access.access_patient`) first; everything here
reads one golden patient's rows through `identity__patient`, from every member at once.

The timeline is one SQL UNION ALL of (id, kind, time) over every kind of record, ordered and
paginated in the database; then the rows of the page are loaded with one query per kind present,
so a page costs the same number of queries whatever its size and however long the record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import CharField, F, Model, Q, QuerySet, Value
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from yilian.accounts.actors import Actor
from yilian.organizations.access import member_consortium_ids
from yilian.organizations.models import ConsortiumMembership, Institution
from yilian.patients.models import Patient
from yilian.records.catalogue import DEFAULT_VALIDITY_DAYS, TESTS_BY_CODE, OrderableTest
from yilian.records.icd10 import condition_names
from yilian.records.models import (
    Condition,
    DiagnosticReport,
    DocumentReference,
    Encounter,
    EncounterClass,
    InsuranceSettlement,
    MedicationRequest,
    Observation,
    ObservationCategory,
    Procedure,
    ResultValidityRule,
)


@dataclass(frozen=True)
class TimelineKind:
    key: str
    label: str | Promise
    model: type[Model]
    time_field: str
    code_field: str | None
    text_fields: tuple[str, ...]


TIMELINE_KINDS: dict[str, TimelineKind] = {
    kind.key: kind
    for kind in (
        TimelineKind(
            "encounter", gettext_lazy("就诊"), Encounter, "started_at", None, ("department_name", "practitioner_name", "reason")
        ),
        TimelineKind("condition", gettext_lazy("诊断"), Condition, "recorded_at", "icd10_code", ("display",)),
        TimelineKind("observation", gettext_lazy("检验/体征"), Observation, "effective_at", "code", ("display",)),
        TimelineKind("report", gettext_lazy("检查报告"), DiagnosticReport, "effective_at", "code", ("display", "conclusion")),
        TimelineKind(
            "medication", gettext_lazy("处方"), MedicationRequest, "authored_at", "medication_code", ("medication_name",)
        ),
        TimelineKind("procedure", gettext_lazy("手术/操作"), Procedure, "performed_at", "code", ("display",)),
        TimelineKind("document", gettext_lazy("文书"), DocumentReference, "dated_at", None, ("title",)),
        TimelineKind(
            "settlement", gettext_lazy("医保结算"), InsuranceSettlement, "settled_at", "provider_code", ("provider_name",)
        ),
    )
}


@dataclass(frozen=True)
class TimelineFilter:
    """What the 360 view narrows the timeline to; empty means everything."""

    kinds: frozenset[str] = frozenset()
    institution_id: int | None = None  # 0 matches nothing (an institution that sent nothing)
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    query: str = ""


@dataclass
class TimelineItem:
    """One row of the timeline, with where it came from (institution and the sender's record id)."""

    kind: str
    kind_label: str
    record: Any
    occurred_at: dt.datetime
    title: str
    summary: str
    code: str
    institution: Institution
    source_id: str
    flag: str = ""  # an abnormal flag, "县域外", a primary diagnosis: shown as a badge
    recognisable: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _kind_queryset(kind: TimelineKind, patient: Patient, filters: TimelineFilter) -> QuerySet[Any]:
    queryset = kind.model._default_manager.filter(identity__patient=patient)
    time = kind.time_field
    if filters.institution_id is not None:
        queryset = queryset.filter(institution_id=filters.institution_id)
    if filters.date_from is not None:
        queryset = queryset.filter(**{f"{time}__gte": _start_of(filters.date_from)})
    if filters.date_to is not None:
        queryset = queryset.filter(**{f"{time}__lt": _start_of(filters.date_to + dt.timedelta(days=1))})
    if filters.query:
        match = Q()
        if kind.code_field:
            match |= Q(**{f"{kind.code_field}__istartswith": filters.query})
        for name in kind.text_fields:
            match |= Q(**{f"{name}__icontains": filters.query})
        queryset = queryset.filter(match)
    # No ORDER BY inside the parts of a compound statement (SQLite refuses it); the union is ordered.
    return (
        queryset.order_by()
        .annotate(record_kind=Value(kind.key, output_field=CharField()), record_time=F(time))
        .values_list("id", "record_kind", "record_time")
    )


def timeline_rows(patient: Patient, filters: TimelineFilter) -> QuerySet[Any] | None:
    """(id, kind, time) of every record matching `filters`, newest first; None when no kind is asked for."""
    keys = [key for key in TIMELINE_KINDS if not filters.kinds or key in filters.kinds]
    if not keys:
        return None
    parts = [_kind_queryset(TIMELINE_KINDS[key], patient, filters) for key in keys]
    first, rest = parts[0], parts[1:]
    combined = first.union(*rest, all=True) if rest else first
    return combined.order_by("-record_time", "record_kind", "-id")


def timeline_page(
    patient: Patient, filters: TimelineFilter, *, page: int, page_size: int, actor: Actor | None = None
) -> tuple[list[TimelineItem], int]:
    """One page of the timeline and the total count. With `actor`, results it may recognise are marked."""
    rows = timeline_rows(patient, filters)
    if rows is None:
        return [], 0
    count = rows.count()
    start = (page - 1) * page_size
    if start >= count:
        return [], count
    return timeline_items(list(rows[start : start + page_size]), actor=actor), count


def timeline_items(rows: Sequence[tuple[int, str, dt.datetime]], *, actor: Actor | None = None) -> list[TimelineItem]:
    """The items for (id, kind, time) rows of `timeline_rows`, in the same order: one query per kind."""
    by_kind: dict[str, list[int]] = {}
    for pk, kind, _when in rows:
        by_kind.setdefault(kind, []).append(pk)
    loaded: dict[tuple[str, int], Any] = {}
    for kind, ids in by_kind.items():
        for record in TIMELINE_KINDS[kind].model._default_manager.filter(pk__in=ids).select_related("institution"):
            loaded[(kind, record.pk)] = record
    items = [_item(kind, loaded[(kind, pk)]) for pk, kind, _when in rows if (kind, pk) in loaded]
    if actor is not None:
        _mark_recognisable(actor, items)
    return items


def _money(value: Any) -> str:
    return f"¥{value:,.2f}"


def _item(kind: str, record: Any) -> TimelineItem:
    spec = TIMELINE_KINDS[kind]
    occurred_at = getattr(record, spec.time_field)
    common = {
        "kind": kind,
        "kind_label": str(spec.label),
        "record": record,
        "occurred_at": occurred_at,
        "institution": record.institution,
        "source_id": record.source_id,
    }
    if isinstance(record, Encounter):
        parts = [record.department_name, record.practitioner_name, record.reason]
        if record.encounter_class == EncounterClass.INPATIENT and record.ended_at:
            parts.append(_("出院 %(date)s") % {"date": timezone.localtime(record.ended_at).strftime("%Y-%m-%d")})
        if record.total_cost:
            parts.append(
                _("费用 %(total)s，医保 %(paid)s") % {"total": _money(record.total_cost), "paid": _money(record.insurance_paid)}
            )
        return TimelineItem(
            **common,
            title=record.get_encounter_class_display(),
            summary=" · ".join(p for p in parts if p),
            code="",
            flag=record.get_payer_type_display(),
        )
    if isinstance(record, Condition):
        names = condition_names(record.icd10_code, record.display)
        return TimelineItem(
            **common,
            title=names.title,
            summary=names.detail,
            code=record.icd10_code,
            flag=_("主要诊断") if record.is_primary else "",
        )
    if isinstance(record, Observation):
        summary = record.value_display
        if record.reference_display:
            summary += _("（参考 %(range)s）") % {"range": record.reference_display}
        flag = record.get_interpretation_display() if record.interpretation and record.interpretation != "N" else ""
        return TimelineItem(**common, title=record.display, summary=summary, code=record.code, flag=flag)
    if isinstance(record, DiagnosticReport):
        summary = record.conclusion or record.text[:120]
        if record.performer_name:
            summary += _("（报告医生：%(name)s）") % {"name": record.performer_name}
        return TimelineItem(**common, title=record.display, summary=summary, code=record.code, flag=record.get_category_display())
    if isinstance(record, MedicationRequest):
        parts = [record.dosage_text]
        if record.quantity is not None:
            parts.append(f"{record.quantity.normalize():f}{record.quantity_unit}")
        if record.days_supply:
            parts.append(_("%(days)s 天") % {"days": record.days_supply})
        return TimelineItem(
            **common, title=record.medication_name, summary=" · ".join(p for p in parts if p), code=record.medication_code
        )
    if isinstance(record, Procedure):
        flag = _("%(grade)s 级手术") % {"grade": record.grade} if record.grade else ""
        return TimelineItem(**common, title=record.display, summary=record.performer_name, code=record.code, flag=flag)
    if isinstance(record, DocumentReference):
        return TimelineItem(**common, title=record.title, summary=record.text[:160], code="", flag=record.get_kind_display())
    assert isinstance(record, InsuranceSettlement)  # noqa: S101 - every kind is handled above
    summary = _("%(class)s · 总费用 %(total)s，统筹支付 %(fund)s，个人支付 %(own)s") % {
        "class": record.get_encounter_class_display(),
        "total": _money(record.total_cost),
        "fund": _money(record.fund_paid),
        "own": _money(record.personal_paid),
    }
    return TimelineItem(
        **common,
        title=record.provider_name,
        summary=summary,
        code=record.provider_code,
        flag="" if record.within_county else _("县域外"),
    )


# --- 结果互认 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecognisableResult:
    """Another member's result of the same test, still inside its validity window."""

    kind: str  # "observation" | "report"
    record: Observation | DiagnosticReport
    valid_until: dt.datetime

    @property
    def summary(self) -> str:
        if isinstance(self.record, Observation):
            return self.record.value_display
        return self.record.conclusion or self.record.text[:120]


def validity_days(category: str, code: str, rules: Sequence[ResultValidityRule] | None = None) -> int:
    """Days a result of this test stays recognisable: the test's rule, else its category's, else the default."""
    if rules is None:
        rules = list(ResultValidityRule.objects.filter(category=category, code__in=[code, ""]))
    by_key = {(rule.category, rule.code): rule.days for rule in rules}
    return by_key.get((category, code)) or by_key.get((category, "")) or DEFAULT_VALIDITY_DAYS.get(category, 7)


def peer_institution_ids(institution: Institution) -> QuerySet[Any]:
    """Ids of the other current members of the consortia `institution` belongs to."""
    return (
        ConsortiumMembership.objects.current()
        .filter(consortium_id__in=member_consortium_ids(institution))
        .exclude(institution=institution)
        .values("institution_id")
    )


def recognisable_results(*, actor: Actor, patient: Patient, test: OrderableTest) -> list[RecognisableResult]:
    """Results of `test` for `patient` from other members of the actor's consortia, within the window."""
    institution = actor.institution
    if institution is None:
        return []
    days = validity_days(test.category, test.code)
    since = timezone.now() - dt.timedelta(days=days)
    peers = peer_institution_ids(institution)
    results: list[RecognisableResult] = []
    window = dt.timedelta(days=days)
    if test.category == ObservationCategory.LABORATORY:
        observations = Observation.objects.filter(
            identity__patient=patient,
            category=ObservationCategory.LABORATORY,
            code=test.code,
            effective_at__gte=since,
            institution_id__in=peers,
        ).select_related("institution")
        results += [RecognisableResult("observation", o, o.effective_at + window) for o in observations]
    reports = DiagnosticReport.objects.filter(
        identity__patient=patient, code=test.code, effective_at__gte=since, institution_id__in=peers
    ).select_related("institution")
    results += [RecognisableResult("report", r, r.effective_at + window) for r in reports]
    results.sort(key=lambda r: r.record.effective_at, reverse=True)
    return results


def _mark_recognisable(actor: Actor, items: list[TimelineItem]) -> None:
    """Mark the results on a page the actor could recognise now (two queries, whatever the page)."""
    candidates = [
        item
        for item in items
        if (item.kind == "report" or (item.kind == "observation" and item.record.category == ObservationCategory.LABORATORY))
        and item.institution.pk != getattr(actor.institution, "pk", None)
        and item.record.code in TESTS_BY_CODE
    ]
    if not candidates or actor.institution is None:
        return
    peers = set(peer_institution_ids(actor.institution).values_list("institution_id", flat=True))
    rules = list(ResultValidityRule.objects.all())
    now = timezone.now()
    for item in candidates:
        record = item.record
        category = record.category if isinstance(record, DiagnosticReport) else "laboratory"
        days = validity_days(category, record.code, rules)
        item.recognisable = record.institution_id in peers and record.effective_at >= now - dt.timedelta(days=days)
