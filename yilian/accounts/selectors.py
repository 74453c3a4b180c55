"""Reads about people and memberships."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from yilian.accounts.models import Membership, User
from yilian.core.rows import statement_cursor

# Every request of a signed-in user needs their memberships with institution, authority and
# department: one ORM query with four joins, ≈ 4 ms of Python per request on a small server.
# This process keeps the loaded rows per user and reuses them only while the user's membership
# rows are unchanged: each request still reads those rows' deciding columns (role, dates, active,
# institution, authority, department, updated_at) with one plain query, so ending, deactivating or
# moving a membership takes effect at once, in every process. What may be reused for up to
# MEMBERSHIP_CACHE_SECONDS is only what the joined rows say about the institution, authority and
# department themselves (names, kind, level); a change saved in this process clears the cache at once.
MEMBERSHIP_CACHE_SECONDS = 60
_MEMBERSHIP_CACHE_LIMIT = 5000
_membership_cache: dict[int, tuple[tuple[tuple[Any, ...], ...], float, list[Membership]]] = {}
_membership_cache_lock = threading.Lock()


def memberships_cache_clear(**_: Any) -> None:
    """Forget every user's loaded memberships (signal receiver; tests)."""
    with _membership_cache_lock:
        _membership_cache.clear()


def _membership_fingerprint(user_id: int) -> tuple[tuple[Any, ...], ...]:
    with statement_cursor(connection) as cursor:  # plain SQL: the ORM's compiling would cost what the cache saves
        cursor.execute(
            "SELECT id, role, is_active, started_on, ended_on, institution_id, authority_id, department_id, updated_at"
            " FROM accounts_membership WHERE user_id = %s ORDER BY id",
            [user_id],
        )
        return tuple(tuple(row) for row in cursor.fetchall())


def current_memberships(user: User) -> list[Membership]:
    """The memberships a user may act through today, institution first, in a stable order."""
    fingerprint = _membership_fingerprint(user.pk)
    now = time.monotonic()
    entry = _membership_cache.get(user.pk)
    if entry is not None and entry[0] == fingerprint and now - entry[1] < MEMBERSHIP_CACHE_SECONDS:
        loaded = entry[2]
    else:
        loaded = list(
            Membership.objects.filter(user=user)
            .select_related("institution", "institution__authority", "authority", "department")
            .order_by("started_on", "id")
        )
        with _membership_cache_lock:
            if len(_membership_cache) >= _MEMBERSHIP_CACHE_LIMIT:
                _membership_cache.clear()
            _membership_cache[user.pk] = (fingerprint, now, loaded)
    today = timezone.localdate()
    # Each request gets its own Membership objects (the related rows are shared, read-only).
    return [copy.copy(m) for m in loaded if m.is_active and m.started_on <= today and (m.ended_on is None or m.ended_on > today)]


def choose_membership(memberships: list[Membership], wanted_uuid: str | None) -> Membership | None:
    """The membership the user chose in the header, else the first one; None when there is none."""
    if wanted_uuid:
        for membership in memberships:
            if str(membership.uuid) == wanted_uuid:
                return membership
    return memberships[0] if memberships else None


def staff_queryset() -> QuerySet[Membership]:
    return Membership.objects.select_related("user", "user__practitioner", "institution", "authority", "department")
