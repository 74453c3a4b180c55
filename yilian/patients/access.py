"""The patient gatekeeper. Patient-identifiable data is loaded only through here.

An actor sees a patient when the acting institution holds the record — it registered the patient
(home institution) or holds one of the patient's source identities (ADR 0003) — or is the township
centre of a village clinic that does, or through an active AccessGrant to the institution or the
user. Management, bureau and admin roles have no PATIENT_VIEW and see nothing. Every read
writes access-log rows (access.services.access_log_record).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import Http404
from django.utils.translation import gettext as _

from yilian.access.models import AccessAction, AccessBasis, AccessGrant, GrantScope
from yilian.access.services import access_log_record
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission, Role
from yilian.core.rows import fetch_by_uuid, statement_cursor
from yilian.organizations.access import NOTHING, led_consortium_ids
from yilian.organizations.models import ConsortiumMembership, Institution
from yilian.patients.models import MatchReview, Patient, PatientMerge, SourceIdentity


def _active_grants(actor: Actor):  # type: ignore[no-untyped-def]
    grantee = Q(grantee_institution=actor.institution)
    if actor.user is not None and actor.api_key is None:
        grantee |= Q(grantee_user=actor.user)
    return AccessGrant.objects.active().filter(grantee)


def patient_scope_filter(actor: Actor) -> Q:
    if not actor.can(Permission.PATIENT_VIEW) or actor.institution is None:
        return NOTHING
    # One IN over a UNION of index lookups (home institution, identities, grants): an OR across
    # joins made PostgreSQL scan every patient at 1,000,000 residents.
    holders = _holders(actor, actor.institution)
    registered = Patient.objects.filter(home_institution__in=holders).order_by().values("id")
    identified = SourceIdentity.objects.filter(institution__in=holders).order_by().values("patient_id")
    granted = _active_grants(actor).order_by().values("patient_id")
    return Q(id__in=registered.union(identified, granted))


def _holding_institutions(institution: Institution) -> list[int]:
    """The acting institution and its village clinics (a township centre holds their records)."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    with statement_cursor(connection) as cursor:  # plain SQL: it runs for nearly every patient read
        cursor.execute(
            f"SELECT {quote('id')} FROM {quote(Institution._meta.db_table)} WHERE {quote('parent_id')} = %s ORDER BY 1",  # noqa: S608 - names from the model
            [institution.pk],
        )
        return [institution.pk, *(row[0] for row in cursor.fetchall())]


def _holders(actor: Actor, institution: Institution) -> list[int]:
    """`_holding_institutions` of the acting institution, read once per Actor."""
    return actor.remember("patients.holders", lambda: _holding_institutions(institution))


def holds_patient(institution: Institution | None, patient: Patient) -> bool:
    """Whether `institution` holds `patient`'s record (registered it, or holds an identity of it)."""
    if institution is None:
        return False
    if patient.home_institution_id == institution.id or patient.home_institution.parent_id == institution.id:
        return True
    return SourceIdentity.objects.filter(patient=patient, institution__in=_holding_institutions(institution)).exists()


def basis_grant(actor: Actor, patient: Patient, *, scope: str = GrantScope.SUMMARY) -> AccessGrant | None:
    """The grant that lets `actor` see `patient` to `scope`, or None when the acting institution holds
    the record (or no active grant reaches that far). Any grant opens the summary; only a record
    grant opens the whole record, so a later-expiring summary grant never hides a record grant."""
    if holds_patient(actor.institution, patient):
        return None
    return _grant_for(actor, patient, scope)


def _grant_for(actor: Actor, patient: Patient, scope: str) -> AccessGrant | None:
    grants = _active_grants(actor).filter(patient=patient)
    if scope == GrantScope.RECORD:
        grants = grants.filter(scope=GrantScope.RECORD)
    # Personal (break-glass) grants first, so their use shows up in the review.
    return grants.order_by("-grantee_user_id", "-expires_at").first()  # type: ignore[no-any-return]


def access_patient(
    actor: Actor,
    key: UUID | str,
    *,
    action: str = AccessAction.VIEW_SUMMARY,
    path: str = "",
    scope: str = GrantScope.SUMMARY,
) -> Patient:
    """Load one patient for `actor` to `scope`, logging the read with the grant it used; missing and
    forbidden are both 404. A record read needs the record held here or a record grant."""
    if not actor.can(Permission.PATIENT_VIEW) or actor.institution is None:
        raise Http404(_("未找到，或您无权访问。"))
    patient = fetch_by_uuid(Patient, key, related=("home_institution", "grid"))
    if patient is None:
        raise Http404(_("未找到，或您无权访问。"))
    # `patient_scope_filter`'s rule for this one patient, cheapest test first: registered here or at
    # one of our village clinics (the loaded home institution answers), else an identity held here,
    # else an active grant (to `scope`).
    institution = actor.institution
    held = patient.home_institution_id == institution.pk or patient.home_institution.parent_id == institution.pk
    if not held:
        holders = _holders(actor, institution)
        held = SourceIdentity.objects.filter(patient=patient, institution__in=holders).exists()
    grant = None
    if not held:
        grant = _grant_for(actor, patient, scope)
        if grant is None:
            raise Http404(_("未找到，或您无权访问。"))
    access_log_record(actor=actor, patients=[patient], action=action, grant_for=lambda p: grant, path=path)
    patient.grant = grant  # type: ignore[attr-defined]
    return patient


def patients_listed(actor: Actor, patients: Sequence[Patient], *, path: str = "") -> None:
    """Log that a list page or API page showed these patients' identities to `actor`."""
    # Patients registered here (or at our village clinics) are held: only the others need their grant.
    held = set(_holders(actor, actor.institution)) if actor.institution is not None else set()
    others = [p.pk for p in patients if p.home_institution_id not in held]
    grants = {}
    if others:
        grants = {g.patient_id: g for g in _active_grants(actor).filter(patient__in=others).order_by("expires_at")}
    access_log_record(actor=actor, patients=patients, action=AccessAction.LIST, grant_for=lambda p: grants.get(p.pk), path=path)


# --- the review queue of the master patient index -------------------------------------------------
#
# Scope (MPI_REVIEW): a system admin reviews everything; a consortium manager reviews items touching
# any member of the consortia their institution leads; an institution admin reviews items touching
# their institution or its village clinics. An item "touches" an institution when the incoming
# identity came from it or the candidate golden patient is registered there. Reviewers see both
# sides in full — every such read is written to the access log.


def review_institution_ids(actor: Actor) -> list[int] | None:
    """The institutions whose review items `actor` decides; None means all (system admin)."""
    if not actor.can(Permission.MPI_REVIEW):
        return []
    if actor.is_system_admin:
        return None
    institution = actor.institution
    if institution is None:
        return []
    ids = set(_holding_institutions(institution))
    if actor.role == Role.CONSORTIUM_MANAGER:
        members = ConsortiumMembership.objects.current().filter(consortium_id__in=led_consortium_ids(institution))
        ids.update(members.values_list("institution_id", flat=True))
    return sorted(ids)


def review_scope_filter(actor: Actor) -> Q:
    """Q over MatchReview for the items `actor` may see and decide."""
    ids = review_institution_ids(actor)
    if ids is None:
        return Q()
    if not ids:
        return NOTHING
    from_here = MatchReview.objects.filter(identity__institution__in=ids).order_by().values("id")
    about_here = MatchReview.objects.filter(candidate__home_institution__in=ids).order_by().values("id")
    return Q(id__in=from_here.union(about_here))


def merge_scope_filter(actor: Actor) -> Q:
    """Q over PatientMerge for the merges `actor` may see and undo."""
    ids = review_institution_ids(actor)
    if ids is None:
        return Q()
    if not ids:
        return NOTHING
    return Q(actor_institution__in=ids) | Q(survivor__home_institution__in=ids) | Q(merged__home_institution__in=ids)


def access_review(actor: Actor, key: UUID | str) -> MatchReview:
    """Load one review item for a reviewer; missing and out of scope are both 404."""
    try:
        return (
            MatchReview.objects.select_related(
                "identity__institution", "identity__patient__home_institution", "candidate__home_institution"
            )
            .filter(review_scope_filter(actor))
            .get(uuid=key)
        )
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404(_("未找到，或您无权访问。")) from exc


def access_merge(actor: Actor, key: UUID | str) -> PatientMerge:
    try:
        return PatientMerge.objects.select_related("survivor", "merged").filter(merge_scope_filter(actor)).get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404(_("未找到，或您无权访问。")) from exc


def identities_reviewed(
    actor: Actor, patients: Sequence[Patient], *, action: str = AccessAction.VIEW_SUMMARY, path: str = ""
) -> None:
    """Log that a reviewer read these patients' identities in the review queue (pages or API):
    basis `mpi_review` (the review duty, no grant); `action` LIST for the queue and merge lists,
    VIEW_SUMMARY for one item's two sides."""
    access_log_record(
        actor=actor, patients=patients, action=action, grant_for=lambda p: None, path=path, basis=AccessBasis.MPI_REVIEW
    )
