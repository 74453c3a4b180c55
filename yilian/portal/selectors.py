"""What a signed-in resident reads about themself. The resident is the record's subject, not a
member of staff: these reads go through no staff gatekeeper and write no access-log rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import QuerySet

from yilian.access.models import AccessGrant, AccessLog, GrantSource
from yilian.accounts.models import Membership
from yilian.patients.models import Patient
from yilian.records.selectors import TimelineFilter, TimelineItem, timeline_page

RECENT_ENCOUNTERS = 5
ENCOUNTERS_ONLY = TimelineFilter(kinds=frozenset({"encounter"}))


@dataclass
class ResidentSummary:
    """The summary page: the record's holder and grid, the family doctor, the active grants."""

    patient: Patient
    grants: list[AccessGrant]
    family_doctors: list[AccessGrant] = field(default_factory=list)
    encounters: list[TimelineItem] = field(default_factory=list)


def resident_grants(patient: Patient) -> QuerySet[AccessGrant]:
    """Grants on the resident's record that are in force now: who may see it, why, until when."""
    return (
        AccessGrant.objects.active()
        .filter(patient=patient)
        .select_related("grantee_institution", "grantee_user", "acting_institution")
        .order_by("expires_at", "id")
    )


def resident_summary(patient: Patient) -> ResidentSummary:
    patient = Patient.objects.select_related("home_institution", "grid__responsible_institution").get(pk=patient.pk)
    grants = list(resident_grants(patient))
    # The resident's visits at every member, through the record's own selector (ADR 0003).
    encounters, _count = timeline_page(patient, ENCOUNTERS_ONLY, page=1, page_size=RECENT_ENCOUNTERS)
    return ResidentSummary(
        patient=patient,
        grants=grants,
        family_doctors=[g for g in grants if g.source == GrantSource.CONTRACT],
        encounters=encounters,
    )


def resident_access_log(patient: Patient) -> QuerySet[AccessLog]:
    """Every access-log row of this resident's record, newest first."""
    return AccessLog.objects.filter(patient=patient).select_related("acting_institution", "grant").order_by("-at", "-id")


def departments_of(rows: Iterable[AccessLog]) -> dict[tuple[int, int], str]:
    """(user id, institution id) -> the department the person works in there, in one query.

    The access log keeps the role at the time of reading; the department comes from the person's
    membership at that institution (current or past).
    """
    pairs = {(r.user_id, r.acting_institution_id) for r in rows if r.user_id and r.acting_institution_id}
    if not pairs:
        return {}
    memberships = (
        Membership.objects.filter(
            user_id__in={u for u, _ in pairs}, institution_id__in={i for _, i in pairs}, department__isnull=False
        )
        .order_by("started_on", "id")
        .values_list("user_id", "institution_id", "department__name")
    )
    return {(u, i): name for u, i, name in memberships if (u, i) in pairs}
