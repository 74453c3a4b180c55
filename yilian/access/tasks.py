"""Background work for access control (run by `manage.py db_worker`)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext as _
from django_tasks import task

from yilian.access.models import AccessGrant, GrantSource


@task()
def break_glass_review_reminder(grant_id: int) -> bool:
    """When a break-glass grant has expired and nobody has reviewed it yet, remind the privacy
    officers. Enqueued by break_glass_open to run at the grant's expiry. Returns whether a
    reminder was sent."""
    from yilian.access.services import privacy_officers_for
    from yilian.notifications.models import NotificationKind
    from yilian.notifications.services import notification_send

    grant = (
        AccessGrant.objects.select_related("grantee_user", "acting_institution", "patient__home_institution")
        .filter(pk=grant_id, source=GrantSource.BREAK_GLASS, reviewed_at__isnull=True)
        .first()
    )
    if grant is None:
        return False
    notification_send(
        recipients=privacy_officers_for([grant.acting_institution, grant.patient.home_institution]),  # type: ignore[list-item]
        kind=NotificationKind.BREAK_GLASS_REVIEW,
        title=_("紧急授权已到期仍未审核：%(user)s") % {"user": grant.grantee_user},
        link=reverse("access:review"),
        body=grant.reason,
    )
    return True
