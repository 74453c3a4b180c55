"""Reads behind the home page panels. Aggregates only, a fixed number of queries each.

No panel counts the residents of a whole consortium or bureau: at a million residents that is a
scan per page view. Residents are counted per holding institution (the index on
Patient.home_institution); population comes from the service grids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from yilian.access.models import AccessGrant
from yilian.access.services import break_glass_review_filter
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, User
from yilian.accounts.roles import Role
from yilian.organizations.access import member_consortium_ids
from yilian.organizations.models import (
    PRIMARY_LEVEL_KINDS,
    CentreKind,
    Consortium,
    ConsortiumCentre,
    ConsortiumMembership,
    Department,
    HealthAuthority,
    Institution,
    InstitutionKind,
    ServiceGrid,
)
from yilian.patients.models import Patient


def _current_staff_q(prefix: str = "") -> Q:
    """Q for memberships in force today, through `prefix` (e.g. "staff_memberships__")."""
    today = timezone.localdate()
    return Q(**{f"{prefix}is_active": True, f"{prefix}started_on__lte": today}) & (
        Q(**{f"{prefix}ended_on__isnull": True}) | Q(**{f"{prefix}ended_on__gt": today})
    )


def _held_institution_ids(institution: Institution) -> QuerySet[Institution, Any]:
    """The institution and its village clinics: the records its staff hold."""
    return Institution.objects.filter(Q(pk=institution.pk) | Q(parent=institution)).values("id")


def residents_held_count(institution: Institution) -> int:
    """Residents whose record the institution (or one of its village clinics) holds; one indexed count."""
    return Patient.objects.filter(home_institution_id__in=_held_institution_ids(institution)).count()


@dataclass
class ConsortiumSummary:
    consortium: Consortium
    members_by_kind: list[tuple[str, int]] = field(default_factory=list)
    member_count: int = 0
    primary_member_count: int = 0
    staff_count: int = 0
    grid_count: int = 0
    population: int = 0
    centres: list[ConsortiumCentre] = field(default_factory=list)


def consortium_summaries(consortia: QuerySet[Consortium], *, with_centres: bool = True) -> list[ConsortiumSummary]:
    """Members by kind, staff, grids and population (and the six centres) of each consortium."""
    summaries = {c.pk: ConsortiumSummary(consortium=c) for c in consortia.select_related("lead_institution").order_by("name")}
    if not summaries:
        return []
    ids = list(summaries)
    kind_labels = dict(InstitutionKind.choices)
    rows = (
        ConsortiumMembership.objects.current()
        .filter(consortium_id__in=ids)
        .values("consortium_id", "institution__kind")
        .annotate(n=Count("id"))
        .order_by("consortium_id", "institution__kind")
    )
    for row in rows:
        summary = summaries[row["consortium_id"]]
        summary.members_by_kind.append((str(kind_labels.get(row["institution__kind"], row["institution__kind"])), row["n"]))
        summary.member_count += row["n"]
        if row["institution__kind"] in PRIMARY_LEVEL_KINDS:
            summary.primary_member_count += row["n"]
    today = timezone.localdate()
    # One join through the institution's consortium memberships: staff of institutions that are
    # members today, each person counted once per consortium.
    staff = (
        Membership.objects.filter(_current_staff_q())
        .filter(
            Q(institution__consortium_memberships__consortium_id__in=ids)
            & Q(institution__consortium_memberships__joined_on__lte=today)
            & (
                Q(institution__consortium_memberships__left_on__isnull=True)
                | Q(institution__consortium_memberships__left_on__gt=today)
            )
        )
        .values("institution__consortium_memberships__consortium_id")
        .annotate(n=Count("user_id", distinct=True))
        .order_by()
    )
    for staff_row in staff:
        summaries[staff_row["institution__consortium_memberships__consortium_id"]].staff_count = staff_row["n"]
    grids = (
        ServiceGrid.objects.filter(consortium_id__in=ids, is_active=True)
        .values("consortium_id")
        .annotate(n=Count("id"), population=Sum("population"))
        .order_by()
    )
    for grid_row in grids:
        summaries[grid_row["consortium_id"]].grid_count = grid_row["n"]
        summaries[grid_row["consortium_id"]].population = grid_row["population"] or 0
    if with_centres:
        order = {kind: index for index, kind in enumerate(CentreKind.values)}  # 行政、人力、财务、质量、药械、信息
        centres = ConsortiumCentre.objects.filter(consortium_id__in=ids).select_related("host_institution")
        for centre in sorted(centres, key=lambda c: order.get(c.kind, len(order))):
            summaries[centre.consortium_id].centres.append(centre)
    return list(summaries.values())


def consortia_of(institution: Institution) -> QuerySet[Consortium]:
    return Consortium.objects.filter(id__in=member_consortium_ids(institution))


@dataclass
class InstitutionSummary:
    institution: Institution
    departments: Sequence[Department]  # each annotated with staff_count
    staff_by_role: list[tuple[str, int]]
    staff_count: int
    bed_count: int
    village_clinics: list[Institution]
    grid_count: int
    population: int
    residents_held: int


def institution_summary(institution: Institution) -> InstitutionSummary:
    """Departments (with staff), staff by role, village clinics, grids and residents of one institution."""
    current = _current_staff_q("staff_memberships__")
    departments = list(
        Department.objects.filter(institution=institution, is_active=True)
        .annotate(staff_count=Count("staff_memberships__user", filter=current, distinct=True))
        .order_by("code")
    )
    role_labels = dict(Role.choices)
    by_role = (
        Membership.objects.filter(_current_staff_q(), institution=institution)
        .values("role")
        .annotate(n=Count("user_id", distinct=True))
        .order_by("-n", "role")
    )
    staff_by_role = [(str(role_labels.get(r["role"], r["role"])), r["n"]) for r in by_role]
    staff_count = Membership.objects.filter(_current_staff_q(), institution=institution).values("user_id").distinct().count()
    grids = ServiceGrid.objects.filter(
        Q(responsible_institution=institution) | Q(responsible_institution__parent=institution), is_active=True
    ).aggregate(n=Count("id"), population=Sum("population"))
    return InstitutionSummary(
        institution=institution,
        departments=departments,
        staff_by_role=staff_by_role,
        staff_count=staff_count,
        bed_count=sum(d.beds for d in departments),
        village_clinics=list(Institution.objects.filter(parent=institution, is_active=True).order_by("name")),
        grid_count=grids["n"] or 0,
        population=grids["population"] or 0,
        residents_held=residents_held_count(institution),
    )


@dataclass
class ReviewQueue:
    pending_count: int
    pending: list[AccessGrant]


def break_glass_queue(actor: Actor, *, limit: int = 8) -> ReviewQueue:
    pending = AccessGrant.objects.filter(break_glass_review_filter(actor), reviewed_at__isnull=True)
    return ReviewQueue(
        pending_count=pending.count(),
        pending=list(pending.select_related("grantee_user", "acting_institution", "patient").order_by("starts_at", "id")[:limit]),
    )


@dataclass
class SystemCounts:
    authorities: int
    consortia: int
    institutions: int
    users: int


def system_counts() -> SystemCounts:
    return SystemCounts(
        authorities=HealthAuthority.objects.count(),
        consortia=Consortium.objects.count(),
        institutions=Institution.objects.count(),
        users=User.objects.filter(is_active=True).count(),
    )


def totals(summaries: list[ConsortiumSummary]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for s in summaries:
        out["member_count"] += s.member_count
        out["primary_member_count"] += s.primary_member_count
        out["staff_count"] += s.staff_count
        out["grid_count"] += s.grid_count
        out["population"] += s.population
    return dict(out)


def referral_counts(actor: Actor, institution: Institution) -> dict[str, int]:
    """The clinician's referral to-dos: referrals waiting for the institution to accept, and the
    open follow-up tasks the clinician is responsible for. Counts only, two queries."""
    from yilian.referrals.models import FollowUpStatus, FollowUpTask, Referral, ReferralStatus

    waiting = Referral.objects.filter(destination_institution=institution, status=ReferralStatus.SUBMITTED).count()
    follow_ups = 0
    if actor.user is not None:
        follow_ups = FollowUpTask.objects.filter(responsible=actor.user, status=FollowUpStatus.OPEN).count()
    return {"referrals_waiting": waiting, "follow_ups_open": follow_ups}
