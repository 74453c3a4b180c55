"""The demo county's referrals: every state, the services' invariants on recent and bulk history alike,
the personas' inbox, outbox, board and follow-up tasks, and the demo timer escalating the overdue one."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Count, Q
from django.utils import timezone

from yilian.access.models import GrantSource
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership
from yilian.demo.services import demo_county_delete
from yilian.notifications.models import Notification
from yilian.referrals import selectors
from yilian.referrals.models import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    Direction,
    FollowUpStatus,
    FollowUpTask,
    Referral,
    ReferralEvent,
    ReferralStatus,
)
from yilian.scheduling.models import BookingStatus

pytestmark = pytest.mark.django_db

S = ReferralStatus
K = ReferralEvent.Kind
HISTORY = 150


def build() -> str:
    out = StringIO()
    call_command("demo_county", "--residents=900", "--quiet", f"--referral-history={HISTORY}", stdout=out)
    return out.getvalue()


def actor(username: str, institution: str | None = None) -> Actor:
    memberships = Membership.objects.filter(user__username=username).select_related("user", "institution", "department")
    if institution:
        memberships = memberships.filter(institution__name=institution)
    membership = memberships.order_by("pk").first()
    assert membership is not None, username
    return Actor(user=membership.user, membership=membership)


def test_every_state_with_the_invariants_of_the_services():
    output = build()
    assert "转诊" in output
    now = timezone.now()
    referrals = list(Referral.objects.select_related("grant", "booking__pool", "bed_reservation").prefetch_related("events"))
    statuses = Counter(r.status for r in referrals)
    assert set(statuses) == set(S.values), statuses
    assert {r.direction for r in referrals} == set(Direction.values)
    # Overdue: waiting past the acceptance deadline, some escalated to the coordinator, one not yet.
    overdue = [r for r in referrals if r.status == S.SUBMITTED and r.accept_by < now]
    assert any(r.escalated_at for r in overdue) and any(r.escalated_at is None for r in overdue)
    # Down referrals waiting for the township's acknowledgment, and acknowledged ones with tasks.
    assert any(r.direction == Direction.DOWN and r.status == S.SUBMITTED for r in referrals)
    acknowledged = [r for r in referrals if r.direction == Direction.DOWN and r.status == S.ACCEPTED]
    assert acknowledged and all(r.follow_ups.filter(status=FollowUpStatus.OPEN).exists() for r in acknowledged)
    # Scheduled ones hold a booking in the lead hospital's units reserved for the consortium (号源下沉).
    scheduled = [r for r in referrals if r.status == S.SCHEDULED]
    assert scheduled and all(r.booking and r.booking.status == BookingStatus.BOOKED for r in scheduled)
    assert any(r.booking.pool.quota_id is not None for r in scheduled if r.booking)
    reserved = [r for r in scheduled if r.booking and r.booking.pool.quota_id is not None]
    assert all(r.booking.for_institution_id == r.sender_institution_id for r in reserved if r.booking)
    assert Referral.objects.filter(status=S.ARRIVED, bed_reservation__isnull=False).exists()
    assert Referral.objects.filter(number__regex=r"^ZZ\d{8}9\d{5}$").count() == HISTORY

    # At most one open referral per patient and direction.
    open_pairs = Counter((r.patient_id, r.direction) for r in referrals if r.status in OPEN_STATUSES)
    assert max(open_pairs.values()) == 1
    for r in referrals:
        kinds = [e.kind for e in sorted(r.events.all(), key=lambda e: (e.at, e.pk))]
        assert kinds[0] == K.SUBMITTED, r.number
        assert r.events.all()[0].at == r.submitted_at or min(e.at for e in r.events.all()) == r.submitted_at
        assert r.submitted_at < r.expires_at and r.submitted_at < r.accept_by and r.submitted_at <= now
        assert all(r.submitted_at <= e.at <= now for e in r.events.all()), r.number
        assert (r.escalated_at is not None) == (K.ESCALATED in kinds), r.number
        assert (r.accepted_at is not None) == (K.ACCEPTED in kinds), r.number
        assert (r.arrived_at is not None) == (K.ARRIVED in kinds), r.number
        assert r.number.startswith(f"ZZ{timezone.localtime(r.submitted_at):%Y%m%d}"), r.number
        steps = [t for t in (r.submitted_at, r.accepted_at, r.arrived_at, r.completed_at) if t is not None]
        assert steps == sorted(steps), r.number
        grant = r.grant
        assert grant is not None and grant.source == GrantSource.REFERRAL, r.number
        assert (grant.patient_id, grant.grantee_institution_id, grant.source_reference) == (
            r.patient_id,
            r.destination_institution_id,
            r.number,
        )
        assert grant.starts_at == r.submitted_at
        if r.status in CLOSED_STATUSES:
            assert r.ended_at is not None and r.ended_at <= now, r.number
            assert r.status in kinds or (r.status == S.COMPLETED and K.COMPLETED in kinds), r.number
        else:
            assert r.ended_at is None and grant.revoked_at is None and grant.expires_at > now, r.number
        if r.status in (S.REJECTED, S.CANCELLED, S.EXPIRED):
            assert r.end_reason and grant.revoked_at == r.ended_at, r.number
        if r.status == S.COMPLETED:
            assert r.result_summary and r.completed_at == r.ended_at and r.arrived_at, r.number
            assert r.completed_at is not None and grant.revoked_at is None
            assert grant.expires_at <= r.completed_at + dt.timedelta(days=settings.REFERRAL_GRANT_AFTER_COMPLETION_DAYS)
        if r.direction == Direction.DOWN and r.status in (S.ACCEPTED, S.ARRIVED, S.COMPLETED):
            assert r.follow_ups.exclude(status=FollowUpStatus.CANCELLED).exists(), r.number
            assert K.FOLLOW_UP in kinds, r.number
    # Follow-up tasks belong to a doctor of the receiving institution or of its village clinics.
    for task in FollowUpTask.objects.select_related("referral", "institution"):
        assert task.institution_id == task.referral.destination_institution_id
        assert Membership.objects.filter(
            Q(institution=task.institution) | Q(institution__parent=task.institution), user_id=task.responsible_id
        ).exists()


@pytest.mark.django_db(transaction=True)  # notifications are written when the build's transactions commit
def test_personas_see_their_referrals_at_once_and_the_timer_escalates_the_overdue_one():
    build()
    now = timezone.now()
    township = actor("township_doctor", "水步镇卫生院")
    outbox = selectors.outbox(township)
    assert set(outbox.values_list("status", flat=True)) == set(S.values)
    township_inbox = selectors.inbox(township)
    assert township_inbox.filter(direction=Direction.DOWN, status=S.SUBMITTED).exists()  # to acknowledge
    assert township_inbox.filter(direction=Direction.UP, status=S.SUBMITTED).exists()  # from 石龙村

    lead_doctor = actor("lead_doctor")
    assert selectors.outbox(lead_doctor).filter(direction=Direction.DOWN, status=S.SUBMITTED).exists()
    assert selectors.inbox(lead_doctor).filter(status=S.SUBMITTED, destination_department__name="心血管内科").exists()

    coordinator = actor("coordinator")
    board = selectors.board(coordinator)
    assert board.count() >= 15
    assert selectors.overdue_count(board) >= 3
    assert set(board.values_list("status", flat=True)) == set(OPEN_STATUSES)
    assert selectors.inbox(coordinator).filter(status=S.SUBMITTED).exists()
    assert Notification.objects.filter(recipient=coordinator.user, title__startswith="超时未接收").exists()
    assert Notification.objects.filter(recipient=township.user, title__contains="已被").exists()
    # The notifications name the referrals by their numbers as they stand after the move in time.
    numbers = set(Referral.objects.values_list("number", flat=True))
    named = [re.search(r"ZZ\d{14}", n.title) for n in Notification.objects.filter(title__contains="ZZ")]
    assert named and all(match.group(0) in numbers for match in named if match)

    village = actor("village_doctor")
    assert selectors.outbox(village).exists()
    # Follow-up tasks of the acknowledged down referrals: 陈国栋's for 石龙村's residents, 黄晓敏's for the others.
    acknowledged = Referral.objects.filter(direction=Direction.DOWN, status__in=[S.ACCEPTED, S.ARRIVED])
    assert acknowledged.exists()
    for persona in (village, township):
        mine = acknowledged.filter(follow_ups__responsible=persona.user).distinct()
        tasks = selectors.follow_ups_for(persona).filter(referral__in=mine)
        assert tasks.count() == FollowUpTask.objects.filter(referral__in=mine, status=FollowUpStatus.OPEN).count()
        assert all(t.due_date >= timezone.localdate() for t in tasks)
    assert (
        acknowledged.filter(follow_ups__responsible__in=[village.user, township.user]).distinct().count() == acknowledged.count()
    )
    if acknowledged.filter(patient__home_institution__name="水步镇石龙村卫生站").exists():
        assert selectors.follow_ups_for(village).exists()
    assert selectors.inbox(actor("tcm_doctor")).filter(status=S.SUBMITTED).exists()
    # Nothing leaks across consortia: the other consortium's doctor sees none of the lead's referrals.
    assert not selectors.inbox(actor("tcm_doctor")).filter(destination_institution__name="台山市人民医院").exists()

    waiting = Referral.objects.filter(status=S.SUBMITTED, accept_by__lt=now, escalated_at__isnull=True)
    assert waiting.count() == 1
    out = StringIO()
    call_command("demo_timers", "--once", stdout=out)
    assert "超时上报 1 张" in out.getvalue()
    assert not waiting.exists()
    counts = Referral.objects.aggregate(n=Count("id"))
    assert counts["n"] > HISTORY

    demo_county_delete()
    assert not Referral.objects.exists() and not ReferralEvent.objects.exists() and not FollowUpTask.objects.exists()
