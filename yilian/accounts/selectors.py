"""Reads about people and memberships."""

from __future__ import annotations

from django.db.models import QuerySet

from yilian.accounts.models import Membership, User


def current_memberships(user: User) -> list[Membership]:
    """The memberships a user may act through today, institution first, in a stable order."""
    return list(
        Membership.objects.current()
        .filter(user=user)
        .select_related("institution", "institution__authority", "authority", "department")
        .order_by("started_on", "id")
    )


def choose_membership(memberships: list[Membership], wanted_uuid: str | None) -> Membership | None:
    """The membership the user chose in the header, else the first one; None when there is none."""
    if wanted_uuid:
        for membership in memberships:
            if str(membership.uuid) == wanted_uuid:
                return membership
    return memberships[0] if memberships else None


def staff_queryset() -> QuerySet[Membership]:
    return Membership.objects.select_related("user", "user__practitioner", "institution", "authority", "department")
