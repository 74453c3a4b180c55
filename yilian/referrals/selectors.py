"""Reads of the referral workflow: outbox, inbox, the coordinator's board, the destination
suggestion, follow-up lists. Lists are scoped by `access.referrals_visible_to`; the views log the
patients they show (`patients.access.patients_listed`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, F, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.organizations.access import led_consortium_ids
from yilian.organizations.models import ConsortiumMembership, Department, Institution, InstitutionCapability
from yilian.referrals.access import clinical_institution, follow_up_scope_filter, holding_institution_ids, referrals_visible_to
from yilian.referrals.models import OPEN_STATUSES, Direction, FollowUpStatus, FollowUpTask, Referral, ReferralStatus, Urgency
from yilian.referrals.services import TIERS, direction_error, tier
from yilian.scheduling.models import Bed, BedStatus, QuotaKind, SlotPool

# What the API's list serialises (both sides' institutions and departments, the booking).
LIST_RELATED = (
    "patient",
    "sender_institution",
    "sender_department",
    "destination_institution",
    "destination_department",
    "booking__slot",
)
# What each page's rows show (referrals/_rows.html): only these are joined. PostgreSQL plans a
# join of the referral with all of LIST_RELATED in 15–25 ms at 100,000 referrals (the query itself
# runs in 2 ms); with two or four joins, in 0.5–2.5 ms (docs/benchmarks.md).
INBOX_RELATED = ("patient", "sender_institution")
OUTBOX_RELATED = ("patient", "destination_institution", "destination_department")
BOARD_RELATED = ("patient", "sender_institution", "destination_institution", "destination_department")


def outbox(actor: Actor) -> QuerySet[Referral]:
    """Referrals the acting institution (or its village clinics) sent, newest first."""
    # The gatekeeper's scope already contains these (sender or receiver held here); filtering on
    # the holding institutions alone keeps PostgreSQL on the outbox index, without the OR.
    institution = clinical_institution(actor)
    if institution is None:
        return Referral.objects.none()
    held = holding_institution_ids(institution)
    return Referral.objects.filter(sender_institution__in=held).select_related(*OUTBOX_RELATED)


def inbox(actor: Actor) -> QuerySet[Referral]:
    """Referrals sent to the acting institution, newest first."""
    institution = clinical_institution(actor)
    if institution is None:
        return Referral.objects.none()
    held = holding_institution_ids(institution)
    return Referral.objects.filter(destination_institution__in=held).select_related(*INBOX_RELATED)


def board(actor: Actor) -> QuerySet[Referral]:
    """Every open referral the coordinator's referral centre oversees (the consortia their
    institution leads, or their own institution's), oldest first so the overdue ones lead."""
    institution = clinical_institution(actor)
    if institution is None:
        return Referral.objects.none()
    scope = Q(consortium__in=led_consortium_ids(institution)) | Q(destination_institution=institution)
    # A coordinator sees every referral of the consortia it leads and those sent to it, so the
    # gatekeeper's scope adds nothing but planning time (an OR of three more terms); anyone else
    # goes through it.
    base = Referral.objects.all() if actor.can(Permission.REFERRAL_COORDINATE) else referrals_visible_to(actor)
    return base.filter(scope, status__in=OPEN_STATUSES).select_related(*BOARD_RELATED).order_by("submitted_at", "id")


def status_counts(queryset: QuerySet[Referral]) -> dict[str, int]:
    """How many referrals per status in `queryset`."""
    # COUNT(*), not COUNT(id): the inbox and outbox indexes (institution, status, …) answer it
    # without reading the table (the lead hospital's 24,768 referrals: 50 ms → 6 ms).
    rows = queryset.order_by().values("status").annotate(n=Count("*"))
    return {row["status"]: row["n"] for row in rows}


def overdue_count(queryset: QuerySet[Referral]) -> int:
    return queryset.filter(status=ReferralStatus.SUBMITTED, accept_by__lt=timezone.now()).count()


def overdue_and_escalated(queryset: QuerySet[Referral]) -> tuple[int, int]:
    """(overdue, escalated) among the submitted referrals of `queryset`, in one query."""
    totals = queryset.filter(status=ReferralStatus.SUBMITTED).aggregate(
        overdue=Count("pk", filter=Q(accept_by__lt=timezone.now())), escalated=Count("pk", filter=Q(escalated_at__isnull=False))
    )
    return totals["overdue"], totals["escalated"]


def follow_ups_for(actor: Actor, *, status: str = FollowUpStatus.OPEN) -> QuerySet[FollowUpTask]:
    """The follow-up tasks of the acting doctor and institution (随访任务), soonest first."""
    return (
        FollowUpTask.objects.filter(follow_up_scope_filter(actor), status=status)
        .select_related("patient", "referral", "responsible", "institution")
        .order_by("due_date", "id")
    )


def referrals_of_patient(patient_id: int) -> QuerySet[Referral]:
    """A patient's referrals (the 360 view and the resident's own page)."""
    return (
        Referral.objects.filter(patient_id=patient_id)
        .select_related("sender_institution", "destination_institution", "destination_department", "booking__slot__schedule")
        .order_by("-submitted_at")
    )


# --- destination suggestion ----------------------------------------------------------------------


@dataclass
class Suggestion:
    """One receiving department, ranked, with the reasons shown to the referring doctor."""

    institution: Institution
    department: Department | None
    score: int
    free_units: int = 0
    reserved_units: int = 0
    free_beds: int = 0
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


MAX_SUGGESTIONS = 20


def destination_suggest(
    actor: Actor,
    *,
    direction: str,
    urgency: str = Urgency.ROUTINE,
    required_capability: str = "",
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> list[Suggestion]:
    """Receiving departments for a referral from the acting institution, best first.

    Only members of the sender's consortia at the level the direction needs; a required capability
    (PCI, dialysis…) must be present. Ranked by: the next level up (village → township → county;
    skipping a level is allowed but ranked lower, except in an emergency), free units in the wanted
    window in the pools the sender may use (its reserved quota — 号源下沉 — counts double, the green
    channel counts for an emergency), and free beds of the department's wards."""
    sender = actor.institution
    if sender is None or direction not in Direction.values:
        return []
    today = timezone.localdate()
    date_from = date_from or today
    date_to = date_to or (date_from + dt.timedelta(days=14))
    consortia = ConsortiumMembership.objects.current().filter(institution=sender).values("consortium_id")
    members = (
        Institution.objects.active().filter(consortium_memberships__consortium_id__in=consortia).exclude(pk=sender.pk).distinct()
    )
    candidates = [i for i in members if direction_error(direction, sender, i) is None]
    if required_capability:
        capable = set(
            InstitutionCapability.objects.filter(institution__in=candidates, capability=required_capability).values_list(
                "institution_id", flat=True
            )
        )
        candidates = [i for i in candidates if i.pk in capable]
    if not candidates:
        return []
    capabilities: dict[int, list[str]] = {}
    for capability in InstitutionCapability.objects.filter(institution__in=candidates):
        capabilities.setdefault(capability.institution_id, []).append(capability.get_capability_display())

    tz = timezone.get_current_timezone()
    start = max(dt.datetime.combine(date_from, dt.time.min, tzinfo=tz), timezone.now())
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    pools = SlotPool.objects.filter(
        booked__lt=F("capacity"),
        slot__start__gte=start,
        slot__start__lt=end,
        slot__is_closed=False,
        slot__schedule__is_active=True,
        slot__schedule__institution__in=candidates,
    )
    usable = Q(quota__isnull=True) | Q(quota__kind=QuotaKind.INSTITUTION, quota__institution_id__in=[sender.pk, sender.parent_id])
    usable |= Q(quota__kind=QuotaKind.CONSORTIUM, quota__consortium_id__in=consortia)
    if urgency == Urgency.EMERGENCY:
        usable |= Q(quota__kind=QuotaKind.GREEN_CHANNEL)
    reserved = Q(quota__isnull=False) & ~Q(quota__kind=QuotaKind.GREEN_CHANNEL)
    units: dict[tuple[int, int | None], tuple[int, int]] = {}
    for row in (
        pools.filter(usable)
        .filter(Q(quota__isnull=True) | Q(released_at__isnull=True))
        .values("slot__schedule__institution_id", "slot__schedule__department_id")
        .annotate(
            free_units=Sum(F("capacity") - F("booked")),
            reserved=Coalesce(Sum(F("capacity") - F("booked"), filter=reserved), Value(0), output_field=IntegerField()),
        )
    ):
        key: tuple[int, int | None] = (row["slot__schedule__institution_id"], row["slot__schedule__department_id"])
        units[key] = (int(row["free_units"] or 0), int(row["reserved"] or 0))
    beds: dict[tuple[int, int | None], int] = {}
    for bed_row in (
        Bed.objects.filter(status=BedStatus.FREE, ward__is_active=True, ward__institution__in=candidates)
        .values("ward__institution_id", "ward__department_id")
        .annotate(n=Count("id"))
    ):
        beds[(bed_row["ward__institution_id"], bed_row["ward__department_id"])] = bed_row["n"]

    departments: dict[int, list[Department]] = {}
    for department in Department.objects.filter(institution__in=candidates, is_active=True, is_clinical=True).order_by("code"):
        departments.setdefault(department.institution_id, []).append(department)

    here = tier(sender)
    suggestions: list[Suggestion] = []
    for institution in candidates:
        there = tier(institution)
        base = 0
        reasons: list[str] = []
        warnings: list[str] = []
        level = institution.get_kind_display()
        if direction == Direction.UP:
            if institution.pk == sender.parent_id:
                base += 55
                reasons.append(_("本村卫生室所属的%(kind)s") % {"kind": level})
            elif there == here + 1:
                base += 40
                reasons.append(_("上一级机构（%(kind)s）") % {"kind": level})
            elif urgency == Urgency.EMERGENCY:
                base += 30
                reasons.append(_("急诊可越级转诊（%(kind)s）") % {"kind": level})
            else:
                base += 10
                warnings.append(_("越级上转：常规情况建议先转上一级机构"))
        elif direction == Direction.DOWN:
            if there == here - 1:
                base += 40
                reasons.append(_("下一级机构（%(kind)s）") % {"kind": level})
            else:
                base += 20
                reasons.append(level)
        else:
            base += 30
            reasons.append(_("同级机构（%(kind)s）") % {"kind": level})
        if required_capability:
            base += 20
        if capabilities.get(institution.pk):
            reasons.append(_("具备：%(capabilities)s") % {"capabilities": "、".join(capabilities[institution.pk][:6])})
        rows: list[Department | None] = list(departments.get(institution.pk, [])) or [None]
        for choice in rows:
            slot_key = (institution.pk, choice.pk if choice is not None else None)
            free, reserved_free = units.get(slot_key, (0, 0))
            free_beds = beds.get(slot_key, 0)
            item_reasons = list(reasons)
            score = base
            if free:
                item_reasons.append(
                    _("期望时段可约号源 %(free)d 个（其中为本机构预留 %(reserved)d 个）")
                    % {"free": free, "reserved": reserved_free}
                )
                score += min(free, 30) + min(reserved_free, 15)
            if free_beds:
                item_reasons.append(_("空床 %(beds)d 张") % {"beds": free_beds})
                score += min(free_beds, 20)
            item_warnings = list(warnings)
            if not free and not free_beds:
                item_warnings.append(_("期望时段无可约号源或空床"))
            suggestions.append(
                Suggestion(
                    institution=institution,
                    department=choice,
                    score=score,
                    free_units=free,
                    reserved_units=reserved_free,
                    free_beds=free_beds,
                    reasons=item_reasons,
                    warnings=item_warnings,
                )
            )
    suggestions.sort(key=lambda s: (-s.score, s.institution.name, s.department.code if s.department else ""))
    return suggestions[:MAX_SUGGESTIONS]


def open_statuses() -> tuple[str, ...]:
    return tuple(OPEN_STATUSES)


__all__ = ["TIERS", "Suggestion", "board", "destination_suggest", "inbox", "outbox", "status_counts"]
