"""The referral gatekeeper. Scope rules, in one place:

- A referral names a patient: it is seen by actors with PATIENT_VIEW at the sending institution or
  the receiving one (a township centre also sees those of its village clinics), and by referral
  coordinators (REFERRAL_COORDINATE) of the consortia their institution leads — the consortium's
  referral centre (转诊中心). Management and bureau roles see counts only (selectors), never a
  referral.
- Sides: the sender submits and cancels; the receiver — a clinician of the receiving institution
  (of the receiving department when one is named and the clinician belongs to a department) or a
  coordinator of the receiving institution or of the referral centre — accepts, rejects, books,
  confirms arrival and completes. A down referral's follow-up tasks belong to the receiver.
Anything else is "not found" (404); a step from the wrong side is refused (403).
"""

from __future__ import annotations

from uuid import UUID

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.organizations.access import NOTHING, consortium_scope_filter, led_consortium_ids, managed_consortium_filter
from yilian.organizations.models import Institution
from yilian.referrals.models import FollowUpTask, Referral, ReferralCriterion


def _not_found() -> Http404:
    return Http404(_("未找到，或您无权访问。"))


def clinical_institution(actor: Actor) -> Institution | None:
    """The acting institution of a staff actor who may see patients, else None (fail closed)."""
    if not actor.can(Permission.PATIENT_VIEW) or actor.institution is None or actor.api_key is not None:
        return None
    return actor.institution


def holding_institution_ids(institution: Institution) -> list[int]:
    """The institution and its village clinics (a township centre works for them)."""
    return [institution.pk, *Institution.objects.filter(parent=institution).values_list("pk", flat=True)]


def referral_scope_filter(actor: Actor, prefix: str = "") -> Q:
    """Q over Referral (through `prefix`) for the referrals an actor may see."""
    institution = clinical_institution(actor)
    if institution is None:
        return NOTHING
    held = holding_institution_ids(institution)
    scope = Q(**{f"{prefix}sender_institution__in": held}) | Q(**{f"{prefix}destination_institution__in": held})
    if actor.can(Permission.REFERRAL_COORDINATE):
        scope |= Q(**{f"{prefix}consortium__in": led_consortium_ids(institution)})
    return scope


def referrals_visible_to(actor: Actor) -> QuerySet[Referral]:
    scope = referral_scope_filter(actor)
    if scope is NOTHING:
        return Referral.objects.none()
    return Referral.objects.filter(scope)


def access_referral(actor: Actor, key: UUID | str) -> Referral:
    """Load one referral for `actor`; missing and forbidden are both 404. The caller logs the
    patient read (`patients.access.patients_listed` or `access_patient`)."""
    queryset = referrals_visible_to(actor).select_related(
        "patient__home_institution",
        "consortium",
        "sender_institution",
        "sender_department",
        "sender_user",
        "destination_institution",
        "destination_department",
        "booking__slot__schedule",
        "bed_reservation__bed__ward",
        "grant",
    )
    try:
        return queryset.get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise _not_found() from exc


def is_sender(actor: Actor, referral: Referral) -> bool:
    institution = clinical_institution(actor)
    return institution is not None and institution.pk == referral.sender_institution_id


def is_coordinator_for(actor: Actor, referral: Referral) -> bool:
    """A referral coordinator of the receiving institution or of the consortium's referral centre."""
    institution = clinical_institution(actor)
    if institution is None or not actor.can(Permission.REFERRAL_COORDINATE):
        return False
    if institution.pk == referral.destination_institution_id:
        return True
    return led_consortium_ids(institution).filter(id=referral.consortium_id).exists()


def is_receiver(actor: Actor, referral: Referral) -> bool:
    if is_coordinator_for(actor, referral):
        return True
    institution = clinical_institution(actor)
    if institution is None or institution.pk != referral.destination_institution_id:
        return False
    department_id = actor.membership.department_id if actor.membership is not None else None
    return department_id is None or referral.destination_department_id in (None, department_id)


def follow_up_scope_filter(actor: Actor) -> Q:
    """Q over FollowUpTask: the responsible doctor's own tasks and those of the acting institution
    (and its village clinics)."""
    institution = clinical_institution(actor)
    if institution is None:
        return NOTHING
    return Q(institution__in=holding_institution_ids(institution)) | Q(responsible=actor.user)


def access_follow_up(actor: Actor, key: UUID | str) -> FollowUpTask:
    scope = follow_up_scope_filter(actor)
    if scope is NOTHING:
        raise _not_found()
    try:
        return (
            FollowUpTask.objects.select_related("referral", "patient", "institution", "responsible").filter(scope).get(uuid=key)
        )
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise _not_found() from exc


def criteria_scope_filter(actor: Actor, *, for_write: bool = False) -> Q:
    """Q over ReferralCriterion: the county-wide seed and the lines of the actor's consortia to read;
    the lines of the consortia the actor manages to change (the seed: the system administrator)."""
    if for_write:
        scope = managed_consortium_filter(actor, prefix="consortium__")
        if actor.is_system_admin:
            return Q()
        return scope
    if not actor.can(Permission.STRUCTURE_VIEW):
        return NOTHING
    return Q(consortium__isnull=True) | consortium_scope_filter(actor, prefix="consortium__")


def access_criterion(actor: Actor, key: UUID | str, *, for_write: bool = False) -> ReferralCriterion:
    scope = criteria_scope_filter(actor, for_write=for_write)
    if scope is NOTHING:
        raise _not_found()
    try:
        return ReferralCriterion.objects.select_related("consortium").filter(scope).get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise _not_found() from exc
