"""Sending and reading notifications. Sent after the surrounding transaction commits."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from yilian.accounts.models import User
from yilian.notifications.models import Notification


def notification_send(*, recipients: Iterable[User], kind: str, title: str, link: str = "", body: str = "") -> None:
    """Queue one notification per recipient, written once the caller's transaction commits."""
    recipient_ids = sorted({user.pk for user in recipients})

    def write() -> None:
        Notification.objects.bulk_create(
            [Notification(recipient_id=pk, kind=kind, title=title[:200], link=link, body=body) for pk in recipient_ids]
        )

    transaction.on_commit(write)


def notification_mark_read(*, recipient: User, notification_id: int) -> int:
    """Mark one of `recipient`'s notifications read; another user's notification is left alone."""
    return Notification.objects.filter(recipient=recipient, pk=notification_id, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def notification_mark_all_read(*, recipient: User) -> int:
    """Mark every unread notification of `recipient` read; returns how many."""
    return Notification.objects.filter(recipient=recipient, read_at__isnull=True).update(read_at=timezone.now())
