"""Reads about patients and the review queue of the master patient index. Callers pass querysets
already scoped by the gatekeepers (`Patient.objects.visible_to(actor)`, `review_scope_filter`, …)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy

from yilian.patients.models import MatchReview, Patient, PatientMerge, ReviewStatus, SourceIdentity

# An ID-number or phone search: digits (and the X check character), at least four.
NUMBER_QUERY = re.compile(r"^[0-9X]{4,30}$")


def patient_search(queryset: QuerySet[Patient], query: str) -> QuerySet[Patient]:
    """Filter by name (contains), or by ID number / phone (prefix, index-friendly) for numbers."""
    query = query.strip()
    if not query:
        return queryset
    number = "".join(query.split()).upper()
    if NUMBER_QUERY.match(number):
        return queryset.filter(Q(id_number__startswith=number) | Q(phone__startswith=number))
    return queryset.filter(name__contains=query)


# --- the review queue of the master patient index -------------------------------------------------
#
# Callers pass `reviews` / `merges` already scoped with patients.access.review_scope_filter /
# merge_scope_filter, and log what they show with patients.access.identities_reviewed.

IDENTITY_ROWS = 20

# (field, label, attribute shown, key in MatchReview.comparison)
REVIEW_FIELDS = (
    ("name", gettext_lazy("姓名"), "name", "name"),
    ("sex", gettext_lazy("性别"), "get_sex_display", "sex"),
    ("birth_date", gettext_lazy("出生日期"), "birth_date", "birth_date"),
    ("id_number", gettext_lazy("证件号码"), "id_number", "id_number"),
    ("phone", gettext_lazy("联系电话"), "phone", "phone"),
    ("town", gettext_lazy("所在乡镇/街道"), "town", "town"),
    ("address", gettext_lazy("现住址"), "address", None),
)


@dataclass(frozen=True)
class ReviewRow:
    """One line of the side-by-side comparison: the value each side shows and the comparison level
    the matcher gave it (0 = disagrees, higher = closer; None = not compared)."""

    field: str
    label: str
    incoming: Any
    candidate: Any
    level: int | None


@dataclass(frozen=True)
class ReviewSides:
    """A review item with both sides in full: the incoming source identity (and the golden patient
    it is linked to now), the candidate golden patient, every identity of each, and the other open
    items of the same incoming identity (the candidates a reviewer may link to instead)."""

    review: MatchReview
    incoming: Patient
    candidate: Patient
    rows: list[ReviewRow]
    incoming_identities: list[SourceIdentity]
    candidate_identities: list[SourceIdentity]
    alternatives: list[MatchReview]

    @property
    def patients(self) -> list[Patient]:
        """The golden patients this item shows (once each), for the access log."""
        return [self.incoming, self.candidate] if self.incoming.pk != self.candidate.pk else [self.candidate]


def _shown(source: object, attribute: str) -> Any:
    value = getattr(source, attribute)
    return value() if callable(value) else value


def review_queue(reviews: QuerySet[MatchReview], *, status: str = "open") -> QuerySet[MatchReview]:
    """The review items of one status (`open` best score first; any other status, or `all`, newest first)."""
    reviews = reviews.select_related(
        "identity__institution", "identity__patient__home_institution", "candidate__home_institution"
    )
    if status == "open":
        return reviews.filter(status=ReviewStatus.OPEN).order_by("-score", "id")
    if status in ReviewStatus.values:
        reviews = reviews.filter(status=status)
    return reviews.order_by("-id")


def review_queue_patients(rows: list[MatchReview]) -> list[Patient]:
    """The golden patients a page of review items shows, once each."""
    shown = {r.identity.patient_id: r.identity.patient for r in rows} | {r.candidate_id: r.candidate for r in rows}
    return list(shown.values())


def review_sides(review: MatchReview, *, reviews: QuerySet[MatchReview]) -> ReviewSides:
    """Both sides of `review` (loaded by patients.access.access_review) and its alternatives among `reviews`."""
    identity = review.identity
    incoming = identity.patient
    candidate = review.candidate
    identities = {
        p.pk: list(SourceIdentity.objects.filter(patient=p).select_related("institution").order_by("id")[:IDENTITY_ROWS])
        for p in (incoming, candidate)
    }
    rows = [
        ReviewRow(
            field=field,
            label=str(label),
            incoming=_shown(identity, attribute),
            candidate=_shown(candidate, attribute),
            level=review.comparison.get(key) if key else None,
        )
        for field, label, attribute, key in REVIEW_FIELDS
    ]
    alternatives = list(
        reviews.filter(identity=identity, status=ReviewStatus.OPEN)
        .exclude(pk=review.pk)
        .select_related("candidate__home_institution")
        .order_by("-score", "id")[:IDENTITY_ROWS]
    )
    return ReviewSides(review, incoming, candidate, rows, identities[incoming.pk], identities[candidate.pk], alternatives)


def merge_history(merges: QuerySet[PatientMerge], *, status: str = "all") -> QuerySet[PatientMerge]:
    """Merges newest first: `active` (not undone), `undone`, or `all`."""
    merges = merges.select_related("survivor__home_institution", "merged__home_institution", "actor_institution")
    if status == "active":
        merges = merges.filter(unmerged_at__isnull=True)
    elif status == "undone":
        merges = merges.filter(unmerged_at__isnull=False)
    return merges.order_by("-id")


def merge_patients(rows: list[PatientMerge]) -> list[Patient]:
    """The golden patients a page of merges shows, once each."""
    shown = {m.survivor_id: m.survivor for m in rows} | {m.merged_id: m.merged for m in rows}
    return list(shown.values())
