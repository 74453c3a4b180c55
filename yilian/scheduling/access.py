"""Gatekeepers for scheduling. Scope rules, in one place:

- Schedules, slots, wards and beds are structure: anyone with STRUCTURE_VIEW sees those of the
  institutions they see (their consortia's members), so a township doctor can find the lead
  hospital's free slots and beds. They carry no patient identities.
- SCHEDULE_MANAGE (institution admin, referral coordinator, consortium manager) changes schedules,
  templates, quotas, leave, wards and beds of the institutions the actor manages
  (`managed_institution_filter`: own institution and its village clinics; a consortium manager
  also the members of the consortia their institution leads).
- Bookings and bed reservations name a patient: an actor with PATIENT_VIEW sees those made by the
  acting institution and those at the acting institution (the receiving side) whose patient it may
  see — booking opens an expiring "appointment" grant to the receiving institution
  (services.slot_book / bed_reserve); the patient list of each page is written to the access log.
Anything else is "not found" (404).
"""

from __future__ import annotations

from uuid import UUID

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.core.rows import fetch_by_uuid
from yilian.organizations.access import NOTHING, institution_scope_filter, institution_visible, managed_institution_filter
from yilian.patients.access import patient_scope_filter
from yilian.patients.models import Patient
from yilian.scheduling.models import Bed, BedReservation, Booking, Schedule, Slot, SlotPool, Ward


def _not_found() -> Http404:
    return Http404(_("未找到，或您无权访问。"))


def schedule_scope_filter(actor: Actor, prefix: str = "") -> Q:
    """Q over Schedule (through `prefix`) for the schedules an actor may see."""
    return institution_scope_filter(actor, prefix=f"{prefix}institution__")


def managed_schedule_filter(actor: Actor, prefix: str = "") -> Q:
    """Q over Schedule (or Ward, through `prefix`) for those an actor may change."""
    return managed_institution_filter(actor, Permission.SCHEDULE_MANAGE, prefix=f"{prefix}institution__")


def booking_scope_filter(actor: Actor, prefix: str = "") -> Q:
    """Q over Booking / BedReservation: made by the acting institution, or at it."""
    if not actor.can(Permission.PATIENT_VIEW) or actor.institution is None or actor.api_key is not None:
        return NOTHING
    institution = actor.institution
    return Q(**{f"{prefix}for_institution": institution})


def _patients_seen(actor: Actor) -> QuerySet[Patient]:
    return Patient.objects.filter(patient_scope_filter(actor)).values("id")  # type: ignore[return-value]


def bookings_visible_to(actor: Actor) -> QuerySet[Booking]:
    """Bookings made by the acting institution, and those at it whose patient it may see (it holds
    the record, or the booking's appointment grant or another grant is active)."""
    scope = booking_scope_filter(actor)
    if scope is NOTHING:
        return Booking.objects.none()
    received = Q(slot__schedule__institution=actor.institution, patient_id__in=_patients_seen(actor))
    return Booking.objects.filter(scope | received)


def reservations_visible_to(actor: Actor) -> QuerySet[BedReservation]:
    scope = booking_scope_filter(actor)
    if scope is NOTHING:
        return BedReservation.objects.none()
    received = Q(bed__ward__institution=actor.institution, patient_id__in=_patients_seen(actor))
    return BedReservation.objects.filter(scope | received)


def _get(queryset: QuerySet, key: UUID | str):  # type: ignore[no-untyped-def]
    try:
        return queryset.get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise _not_found() from exc


def access_schedule(actor: Actor, key: UUID | str, *, for_write: bool = False) -> Schedule:
    scope = managed_schedule_filter(actor) if for_write else schedule_scope_filter(actor)
    queryset = Schedule.objects.select_related("institution", "department", "practitioner__user").filter(scope)
    return _get(queryset, key)  # type: ignore[no-any-return]


# A slot loaded here carries the actor it was loaded for, so `services.slot_book` need not ask the
# database again whether that actor sees the schedule (the same rule, `schedule_scope_filter`).
_LOADED_FOR = "_scheduling_loaded_for"


def _loaded_for(slot: Slot, actor: Actor) -> Slot:
    setattr(slot, _LOADED_FOR, actor)
    return slot


def loaded_in_scope(actor: Actor, slot: Slot) -> bool:
    """Whether `slot` came through this module's scope for this very actor (one request's Actor)."""
    return getattr(slot, _LOADED_FOR, None) is actor


def access_slot(actor: Actor, key: UUID | str) -> Slot:
    queryset = Slot.objects.select_related("schedule__institution").filter(schedule_scope_filter(actor, prefix="schedule__"))
    return _loaded_for(_get(queryset, key), actor)


# Whether any pool of the slot has a free unit (selectors.slot_is_full reads it), in the same query.
HAS_FREE_UNIT = "has_free_unit"
_HAS_FREE_UNIT_SQL = f"EXISTS (SELECT 1 FROM {SlotPool._meta.db_table} p WHERE p.slot_id = t0.id AND p.booked < p.capacity)"  # noqa: S608 - names from the model


def slot_for_booking(actor: Actor, key: UUID | str) -> Slot | None:
    """The slot `key` if `actor` sees it, with its schedule's institution, department and
    practitioner (what a booking answer shows); None when missing or out of scope alike."""
    slot = fetch_by_uuid(
        Slot,
        key,
        related=("schedule__institution", "schedule__department", "schedule__practitioner__user"),
        extra={HAS_FREE_UNIT: _HAS_FREE_UNIT_SQL},
    )
    # The scope rule of `schedule_scope_filter`, decided on the loaded institution (no subqueries).
    if slot is None or not institution_visible(actor, slot.schedule.institution):
        return None
    return _loaded_for(slot, actor)


def access_booking(actor: Actor, key: UUID | str) -> Booking:
    queryset = bookings_visible_to(actor).select_related(
        "slot__schedule__institution", "pool__quota", "patient", "for_institution", "booked_by"
    )
    return _get(queryset, key)  # type: ignore[no-any-return]


def access_ward(actor: Actor, key: UUID | str, *, for_write: bool = False) -> Ward:
    scope = managed_schedule_filter(actor) if for_write else schedule_scope_filter(actor)
    return _get(Ward.objects.select_related("institution", "department").filter(scope), key)  # type: ignore[no-any-return]


def access_bed(actor: Actor, key: UUID | str, *, for_write: bool = False) -> Bed:
    scope = managed_schedule_filter(actor, prefix="ward__") if for_write else schedule_scope_filter(actor, prefix="ward__")
    return _get(Bed.objects.select_related("ward__institution").filter(scope), key)  # type: ignore[no-any-return]


def access_reservation(actor: Actor, key: UUID | str) -> BedReservation:
    queryset = reservations_visible_to(actor).select_related("bed__ward__institution", "patient", "for_institution")
    return _get(queryset, key)  # type: ignore[no-any-return]


def works_at(actor: Actor, institution_id: int) -> bool:
    """Whether the acting institution is `institution_id` (the receiving side of a booking)."""
    return actor.institution is not None and actor.api_key is None and actor.institution.pk == institution_id
