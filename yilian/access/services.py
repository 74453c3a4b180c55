"""Grants, break-glass and the access log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.access.models import (
    AccessBasis,
    AccessGrant,
    AccessLog,
    GrantScope,
    GrantSource,
)
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, User
from yilian.accounts.roles import Permission, Role
from yilian.core.rows import insert
from yilian.core.services import save_validated
from yilian.organizations.models import Institution
from yilian.patients.models import Patient

MAX_REASON_LENGTH = 1000


def access_log_record(
    *,
    actor: Actor,
    patients: Sequence[Patient],
    action: str,
    grant_for: Callable[[Patient], AccessGrant | None],
    path: str = "",
    basis: str | None = None,
) -> None:
    """Write one access-log row per patient read by `actor`. The basis is the grant used, else the
    holding of the record, unless the caller names another one (`AccessBasis.MPI_REVIEW`)."""
    if not patients:
        return
    now = timezone.now()
    rows = []
    for patient in patients:
        grant = grant_for(patient)
        rows.append(
            AccessLog(
                at=now,
                user=actor.user if actor.api_key is None else None,
                api_key=actor.api_key,
                actor_name=str(actor)[:60],
                role=actor.role or "",
                acting_institution=actor.institution,
                patient=patient,
                action=action,
                basis=basis or (AccessBasis.GRANT if grant is not None else AccessBasis.HOLDER),
                grant=grant,
                ip_address=actor.ip_address,
                path=path[:200],
            )
        )
    if len(rows) == 1:
        insert(rows[0])  # one INSERT, in the caller's transaction or autocommit (no BEGIN/COMMIT round trips)
    else:
        AccessLog.objects.bulk_create(rows)


def grant_issue(
    *,
    patient: Patient,
    source: str,
    expires_at: dt.datetime,
    grantee_institution: Institution | None = None,
    grantee_user: User | None = None,
    scope: str = GrantScope.RECORD,
    source_reference: str = "",
    reason: str = "",
    granted_by: User | None = None,
    acting_institution: Institution | None = None,
    validate: bool = True,
) -> AccessGrant:
    """Create an expiring grant. Called by the services of care relationships (referral,
    consultation, contract, appointment) when they open, and by break_glass_open. A caller that
    built every value itself (a booking: its own objects, an expiry after the slot) passes
    `validate=False` and skips the model validation's dozen queries; the database's constraints
    still hold."""
    grant = AccessGrant(
        patient=patient,
        grantee_institution=grantee_institution,
        grantee_user=grantee_user,
        acting_institution=acting_institution,
        scope=scope,
        source=source,
        source_reference=source_reference,
        reason=reason,
        granted_by=granted_by,
        expires_at=expires_at,
    )
    if not validate:
        insert(grant)
        return grant
    return save_validated(grant)


def grant_revoke(*, grant: AccessGrant, revoked_by: User | None) -> AccessGrant:
    if grant.revoked_at is None:
        grant.revoked_at = timezone.now()
        grant.revoked_by = revoked_by
        grant.save(update_fields=["revoked_at", "revoked_by", "updated_at"])
    return grant


def privacy_officers_for(institutions: Sequence[Institution]) -> list[User]:
    ids = {i.pk for i in institutions if i is not None}
    memberships = Membership.objects.current().filter(role=Role.PRIVACY_OFFICER, institution_id__in=ids).select_related("user")
    return [m.user for m in memberships]


def break_glass_find_patient(*, actor: Actor, id_number: str) -> Patient | None:
    """The patient with exactly this ID number among the institutions the actor can see.

    Break-glass never browses: the clinician must already know who the patient is.
    """
    from yilian.organizations.access import institution_scope_filter

    actor.require(Permission.PATIENT_BREAK_GLASS)
    number = id_number.strip().upper()
    if not number or len(number) > 30:
        return None
    return (
        Patient.objects.select_related("home_institution")
        .filter(id_number=number)
        .filter(institution_scope_filter(actor, prefix="home_institution__"))
        .order_by("id")
        .first()
    )


@transaction.atomic
def break_glass_open(*, actor: Actor, patient: Patient, reason: str, hours: int | None = None) -> AccessGrant:
    """Emergency access to a patient outside the actor's care relationships.

    Needs a reason, lasts a few hours at most, and lands in the privacy officers' review list.
    """
    if not actor.can(Permission.PATIENT_BREAK_GLASS) or actor.user is None or actor.institution is None:
        raise PermissionDenied(_("您当前的角色不能使用紧急授权。"))
    reason = (reason or "").strip()
    if len(reason) < 5:
        raise ValidationError({"reason": _("请填写紧急访问的理由（至少5个字）。")})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError({"reason": _("理由过长（最多1000字）。")})
    max_hours = settings.BREAK_GLASS_MAX_HOURS
    hours = max_hours if hours is None else hours
    if not 1 <= hours <= max_hours:
        raise ValidationError({"hours": _("紧急授权时长须在1至%(max)d小时之间。") % {"max": max_hours}})
    grant = grant_issue(
        patient=patient,
        source=GrantSource.BREAK_GLASS,
        grantee_user=actor.user,
        acting_institution=actor.institution,
        scope=GrantScope.RECORD,
        reason=reason,
        granted_by=actor.user,
        expires_at=timezone.now() + dt.timedelta(hours=hours),
    )
    from yilian.notifications.models import NotificationKind
    from yilian.notifications.services import notification_send

    notification_send(
        recipients=privacy_officers_for([actor.institution, patient.home_institution]),
        kind=NotificationKind.BREAK_GLASS_REVIEW,
        title=_("%(user)s（%(institution)s）对患者启用了紧急授权，待审核")
        % {"user": actor.user, "institution": actor.institution.display_name},
        link=reverse("access:review"),
        body=reason,
    )
    from yilian.access.tasks import break_glass_review_reminder

    transaction.on_commit(lambda: break_glass_review_reminder.using(run_after=grant.expires_at).enqueue(grant.pk))
    return grant


def break_glass_review_filter(actor: Actor) -> Q:
    """Q over AccessGrant: break-glass grants a privacy officer reviews (their institution's patients
    or staff, and the village clinics under it)."""
    if not actor.can(Permission.ACCESS_REVIEW):
        return Q(pk__in=[])
    scope = Q(source=GrantSource.BREAK_GLASS)
    if actor.is_system_admin:
        return scope
    institution = actor.institution
    if institution is None:
        return Q(pk__in=[])
    return scope & (
        Q(acting_institution=institution)
        | Q(patient__home_institution=institution)
        | Q(patient__home_institution__parent=institution)
    )


def break_glass_review(*, actor: Actor, grant: AccessGrant, outcome: str, note: str = "") -> AccessGrant:
    """Record a privacy officer's verdict on one break-glass use; an unjustified one is revoked."""
    if not AccessGrant.objects.filter(break_glass_review_filter(actor), pk=grant.pk).exists():
        raise PermissionDenied(_("您无权审核该紧急授权。"))
    if grant.reviewed_at is not None:
        raise ValidationError(_("该紧急授权已审核。"))
    grant.reviewed_at = timezone.now()
    grant.reviewed_by = actor.user
    grant.review_outcome = outcome
    grant.review_note = (note or "").strip()
    save_validated(grant)
    if outcome == "unjustified":
        grant_revoke(grant=grant, revoked_by=actor.user)
    return grant


def access_log_for_reviewer(actor: Actor) -> Q:
    """Q over AccessLog: rows a privacy officer may read (their institution's patients and staff)."""
    if not actor.can(Permission.ACCESS_REVIEW):
        return Q(pk__in=[])
    if actor.is_system_admin:
        return Q()
    institution = actor.institution
    if institution is None:
        return Q(pk__in=[])
    return (
        Q(acting_institution=institution)
        | Q(patient__home_institution=institution)
        | Q(patient__home_institution__parent=institution)
    )
