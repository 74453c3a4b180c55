"""Reads of scheduling: slot search with free units per pool, pool use of schedules, bed use of wards
(counted, or with the beds for the ward board)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, F, FilteredRelation, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from yilian.accounts.actors import Actor
from yilian.core.rows import fetch
from yilian.organizations.models import ConsortiumMembership
from yilian.scheduling.access import HAS_FREE_UNIT, schedule_scope_filter
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
    under the slot's lock). A slot from `access.slot_for_booking` brought the answer along."""
    free = getattr(slot, HAS_FREE_UNIT, None)
    if free is not None:
        return not free
    return not fetch(SlotPool, "t0.slot_id = %s AND t0.booked < t0.capacity", [slot.pk], tail="LIMIT 1")


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
    """Schedules annotated with their open slots in [date_from, date_to): how many, their units and
    bookings, all of them and those of reserved quotas (号源下沉). One grouped query over the
    schedules, their slots in the window and those slots' pools, whatever their number (the
    schedule list and the coordinator's board); no correlated subquery per schedule."""
    upcoming = FilteredRelation(
        "slots", condition=Q(slots__start__gte=date_from, slots__start__lt=date_to, slots__is_closed=False)
    )
    reserved = Q(upcoming__pools__quota__isnull=False)
    return (
        queryset.select_related("institution", "department", "practitioner__user")
        .annotate(upcoming=upcoming)
        .annotate(
            slot_count=Count("upcoming", distinct=True),
            capacity_total=Sum("upcoming__pools__capacity", default=0),
            booked_total=Sum("upcoming__pools__booked", default=0),
            reserved_capacity=Sum("upcoming__pools__capacity", filter=reserved, default=0),
            reserved_booked=Sum("upcoming__pools__booked", filter=reserved, default=0),
        )
    )


@dataclass
class WardUse:
    """One ward's beds counted per status (statuses without beds left out)."""

    ward: Ward
    counts: dict[str, int]

    @property
    def bed_count(self) -> int:
        return sum(self.counts.values())

    @property
    def occupancy_percent(self) -> int:
        """(occupied + reserved) / beds not closed."""
        usable = self.bed_count - self.counts.get(BedStatus.CLOSED, 0)
        taken = self.counts.get(BedStatus.OCCUPIED, 0) + self.counts.get(BedStatus.RESERVED, 0)
        return round(100 * taken / usable) if usable else 0


def ward_use(wards: QuerySet[Ward]) -> list[WardUse]:
    """Each ward with its beds counted per status: one grouped query, and no bed row loaded (a
    county hospital has about a thousand). The ward list of the API and the coordinator's board."""
    per_status = {f"beds_{status}": Count("beds", filter=Q(beds__status=status)) for status in BedStatus.values}
    rows = wards.select_related("institution", "department").annotate(**per_status)
    return [WardUse(ward, {s: n for s in BedStatus.values if (n := getattr(ward, f"beds_{s}"))}) for ward in rows]


@dataclass
class WardBoard(WardUse):
    """A ward with its beds too (the ward board page shows each bed)."""

    beds: list[Bed] = field(default_factory=list)


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
        boards.append(WardBoard(ward, counts, beds))
    return boards
