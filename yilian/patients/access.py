"""The patient gatekeeper. Patient-identifiable data is loaded only through here.

An actor sees a patient when the acting institution holds the record (or is the township centre
of the village clinic that does), or through an active AccessGrant to the institution or the
user. Management, bureau and admin roles have no PATIENT_VIEW and see nothing. Every read
writes access-log rows (access.services.access_log_record).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Q
from django.http import Http404
from django.utils.translation import gettext as _

from yilian.access.models import AccessAction, AccessGrant
from yilian.access.services import access_log_record
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.organizations.access import NOTHING
from yilian.patients.models import Patient


def _active_grants(actor: Actor):  # type: ignore[no-untyped-def]
    grantee = Q(grantee_institution=actor.institution)
    if actor.user is not None and actor.api_key is None:
        grantee |= Q(grantee_user=actor.user)
    return AccessGrant.objects.active().filter(grantee)


def patient_scope_filter(actor: Actor) -> Q:
    if not actor.can(Permission.PATIENT_VIEW) or actor.institution is None:
        return NOTHING
    institution = actor.institution
    held = Q(home_institution=institution) | Q(home_institution__parent=institution)
    return held | Q(id__in=_active_grants(actor).values("patient_id"))


def basis_grant(actor: Actor, patient: Patient) -> AccessGrant | None:
    """The grant that lets `actor` see `patient`, or None when the acting institution holds the record."""
    institution = actor.institution
    if institution is not None and (
        patient.home_institution_id == institution.id or patient.home_institution.parent_id == institution.id
    ):
        return None
    # Personal (break-glass) grants first, so their use shows up in the review.
    return _active_grants(actor).filter(patient=patient).order_by("-grantee_user_id", "-expires_at").first()


def access_patient(actor: Actor, key: UUID | str, *, action: str = AccessAction.VIEW_SUMMARY, path: str = "") -> Patient:
    """Load one patient for `actor`, logging the read; missing and forbidden are both 404."""
    try:
        patient = Patient.objects.select_related("home_institution", "grid").filter(patient_scope_filter(actor)).get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404(_("未找到，或您无权访问。")) from exc
    access_log_record(actor=actor, patients=[patient], action=action, grant_for=lambda p: basis_grant(actor, p), path=path)
    return patient


def patients_listed(actor: Actor, patients: Sequence[Patient], *, path: str = "") -> None:
    """Log that a list page or API page showed these patients' identities to `actor`."""
    grants = {g.patient_id: g for g in _active_grants(actor).filter(patient__in=[p.pk for p in patients]).order_by("expires_at")}
    access_log_record(actor=actor, patients=patients, action=AccessAction.LIST, grant_for=lambda p: grants.get(p.pk), path=path)
