"""Reads of scheduling: slot search with free units per pool, pool use of schedules, the ward board."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from yilian.accounts.actors import Actor
from yilian.organizations.models import ConsortiumMembership
from yilian.scheduling.access import schedule_scope_filter
from yilian.scheduling.models import Bed, BedStatus, QuotaKind, Schedule, Slot, SlotPool, Ward


def _pool_sum(field: str, pools: Q | None = None) -> Coalesce:
    """A correlated SUM over a slot's pools: one query for a page of slots, no join fan-out."""
    subquery = SlotPool.objects.filter(slot=OuterRef("pk"))
    if pools is not None:
        subquery = subquery.filter(pools)
    summed = subquery.order_by().values("slot").annotate(n=Sum(field)).values("n")
    return Coalesce(Subquery(summed, output_field=IntegerField()), Value(0))


def slot_is_full(slot: Slot) -> bool:
    """Whether no pool of `slot` has a free unit (as committed now; `services.slot_book` decides
    under the slot's lock)."""
    return not SlotPool.objects.filter(slot_id=slot.pk, booked__lt=F("capacity")).exists()


def slots_with_use(queryset: QuerySet[Slot]) -> QuerySet[Slot]:
    """Slots annotated with capacity, booked and general-pool free units, pools prefetched."""
    return (
        queryset.select_related("schedule__institution", "schedule__department")
        .annotate(
            total_capacity=_pool_sum("capacity"),
            total_booked=_pool_sum("booked"),
            general_capacity=_pool_sum("capacity", Q(quota__isnull=True)),
            general_booked=_pool_sum("booked", Q(quota__isnull=True)),
        )
        .prefetch_related(
            Prefetch("pools", queryset=SlotPool.objects.select_related("quota__institution", "quota__consortium").order_by("pk"))
        )
    )


def slot_search(
    actor: Actor,
    *,
    institution_id: int | None = None,
    department_id: int | None = None,
    capability: str = "",
    schedule_id: int | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    pool: str = "",
    only_free: bool = False,
) -> QuerySet[Slot]:
    """Open upcoming slots the actor may see, filtered; `pool` keeps slots with free units in the
    general pool (general), in a quota (reserved) or in the green channel (green_channel)."""
    slots = Slot.objects.filter(schedule_scope_filter(actor, prefix="schedule__"), schedule__is_active=True, is_closed=False)
    slots = slots.filter(end__gt=timezone.now())
    if institution_id is not None:
        slots = slots.filter(schedule__institution_id=institution_id)
    if department_id is not None:
        slots = slots.filter(schedule__department_id=department_id)
    if capability:
        slots = slots.filter(schedule__capability=capability)
    if schedule_id is not None:
        slots = slots.filter(schedule_id=schedule_id)
    tz = timezone.get_current_timezone()
    if date_from is not None:
        slots = slots.filter(start__gte=dt.datetime.combine(date_from, dt.time.min, tzinfo=tz))
    if date_to is not None:
        slots = slots.filter(start__lt=dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz))
    free = Q(booked__lt=F("capacity"))
    if pool == "general":
        slots = slots.filter(id__in=SlotPool.objects.filter(free, quota__isnull=True).values("slot_id"))
    elif pool == "reserved":
        slots = slots.filter(
            id__in=SlotPool.objects.filter(free, _reserved_for(actor), released_at__isnull=True).values("slot_id")
        )
    elif pool == "green_channel":
        slots = slots.filter(
            id__in=SlotPool.objects.filter(free, quota__kind=QuotaKind.GREEN_CHANNEL, released_at__isnull=True).values("slot_id")
        )
    elif only_free:
        slots = slots.filter(id__in=SlotPool.objects.filter(free).values("slot_id"))
    return slots_with_use(slots).order_by("start", "schedule_id")


def _reserved_for(actor: Actor) -> Q:
    """Q over SlotPool: the quotas the acting institution may book from (its own, its township
    centre's for a village clinic, its consortia's)."""
    institution = actor.institution
    if institution is None:
        return Q(pk__in=[])
    consortia = ConsortiumMembership.objects.current().filter(institution=institution).values("consortium_id")
    own = Q(quota__kind=QuotaKind.INSTITUTION, quota__institution_id__in=[institution.pk, institution.parent_id])
    return own | Q(quota__kind=QuotaKind.CONSORTIUM, quota__consortium_id__in=consortia)


def schedules_with_use(queryset: QuerySet[Schedule], *, date_from: dt.datetime, date_to: dt.datetime) -> QuerySet[Schedule]:
    """Schedules annotated with upcoming slots, capacity and bookings in [date_from, date_to)."""
    window = Q(slot__start__gte=date_from, slot__start__lt=date_to, slot__is_closed=False)

    def summed(field: str, extra: Q | None = None) -> Coalesce:
        pools = SlotPool.objects.filter(window, slot__schedule=OuterRef("pk"))
        if extra is not None:
            pools = pools.filter(extra)
        inner = pools.order_by().values("slot__schedule").annotate(n=Sum(field)).values("n")
        return Coalesce(Subquery(inner, output_field=IntegerField()), Value(0))

    slot_count = (
        Slot.objects.filter(schedule=OuterRef("pk"), start__gte=date_from, start__lt=date_to, is_closed=False)
        .order_by()
        .values("schedule")
        .annotate(n=Count("*"))
        .values("n")
    )
    return queryset.select_related("institution", "department", "practitioner__user").annotate(
        slot_count=Coalesce(Subquery(slot_count, output_field=IntegerField()), Value(0)),
        capacity_total=summed("capacity"),
        booked_total=summed("booked"),
        reserved_capacity=summed("capacity", Q(quota__isnull=False)),
        reserved_booked=summed("booked", Q(quota__isnull=False)),
    )


@dataclass
class WardBoard:
    ward: Ward
    beds: list[Bed]
    counts: dict[str, int]

    @property
    def occupancy_percent(self) -> int:
        usable = len(self.beds) - self.counts.get(BedStatus.CLOSED, 0)
        taken = self.counts.get(BedStatus.OCCUPIED, 0) + self.counts.get(BedStatus.RESERVED, 0)
        return round(100 * taken / usable) if usable else 0


def ward_boards(wards: QuerySet[Ward]) -> list[WardBoard]:
    """Each ward with its beds and counts per status: two queries whatever the number of wards."""
    boards = []
    for ward in wards.select_related("institution", "department").prefetch_related(
        Prefetch("beds", queryset=Bed.objects.order_by("code"))
    ):
        beds = list(ward.beds.all())
        counts: dict[str, int] = {}
        for item in beds:
            counts[item.status] = counts.get(item.status, 0) + 1
        boards.append(WardBoard(ward, beds, counts))
    return boards
