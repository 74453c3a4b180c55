"""Referral services: every legal and illegal step for each side, deadlines with controlled time,
grants, bookings given back, arrival from the shared record, down referrals and follow-up tasks."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils import timezone

from yilian.access.models import GrantScope, GrantSource
from yilian.notifications.models import Notification, NotificationKind
from yilian.notifications.sms import ConsoleSmsGateway
from yilian.organizations.models import Capability, InstitutionCapability
from yilian.patients.access import access_patient
from yilian.records.data import EncounterData
from yilian.records.models import EncounterClass
from yilian.records.services import encounter_upsert
from yilian.referrals.access import access_referral
from yilian.referrals.models import Direction, FollowUpTask, Referral, ReferralEvent, ReferralStatus, Urgency
from yilian.referrals.selectors import destination_suggest
from yilian.referrals.services import (
    FollowUpSpec,
    follow_up_done,
    referral_accept,
    referral_cancel,
    referral_complete,
    referral_confirm_arrival,
    referral_reject,
    referral_schedule,
    referral_submit,
    referrals_escalate,
    referrals_expire,
    referrals_mark_arrived,
)
from yilian.referrals.testing import clinic_slot, coordinator, lead, refer_down, refer_up, township
from yilian.scheduling.models import BookingStatus, SlotPool
from yilian.scheduling.testing import actor_for, make_ward
from yilian.testing.world import World

S = ReferralStatus


def _snapshot(referral: Referral) -> tuple:
    referral = Referral.objects.get(pk=referral.pk)
    return (referral.status, referral.accepted_at, referral.booking_id, referral.ended_at, referral.events.count())


# --- submit ---------------------------------------------------------------------------------------


def test_submit_creates_the_receivers_grant_notifies_and_texts(world: World, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        referral = refer_up(world)
    assert referral.status == S.SUBMITTED
    assert referral.number.startswith("ZZ") and len(referral.number) == 16
    grant = referral.grant
    assert grant is not None and grant.is_active
    assert (grant.grantee_institution_id, grant.source, grant.scope) == (world.a.pk, GrantSource.REFERRAL, GrantScope.RECORD)
    assert grant.source_reference == referral.number
    assert referral.accept_by - referral.submitted_at == dt.timedelta(hours=48)
    assert Notification.objects.filter(recipient=world.user("lead_clinician"), kind=NotificationKind.REFERRAL).exists()
    assert any(referral.number in sms.text for sms in ConsoleSmsGateway.messages())
    # The receiver now reads the patient's record through the grant.
    patient = access_patient(lead(world), world.patients["at_b"].uuid, scope=GrantScope.RECORD)
    assert patient.grant == grant  # type: ignore[attr-defined]


def test_one_open_referral_per_patient_and_direction(world: World):
    refer_up(world)
    with pytest.raises(ValidationError) as error:
        refer_up(world)
    assert error.value.code == "conflict"
    assert Referral.objects.count() == 1


@pytest.mark.parametrize(
    ("destination", "direction", "field"),
    [
        ("t", Direction.UP, "destination_institution"),  # another consortium
        ("c", Direction.UP, "direction"),  # a township is not a level up from a township
        ("a", Direction.DOWN, "direction"),
        ("a", Direction.LATERAL, "direction"),
        ("b", Direction.UP, "destination_institution"),  # itself
    ],
)
def test_bad_destinations_are_refused_and_nothing_is_written(world: World, destination: str, direction: str, field: str):
    with pytest.raises(ValidationError) as error:
        referral_submit(
            actor=township(world),
            patient=world.patients["at_b"],
            direction=direction,
            destination_institution=getattr(world, destination),
            reason="原因",
            diagnosis_name="高血压",
        )
    assert field in error.value.message_dict
    assert not Referral.objects.exists()


def test_bad_input_is_refused(world: World):
    with pytest.raises(ValidationError) as error:
        refer_up(world, required_capability=Capability.PCI)
    assert "required_capability" in error.value.message_dict
    with pytest.raises(ValidationError):
        referral_submit(
            actor=township(world),
            patient=world.patients["at_b"],
            direction=Direction.UP,
            destination_institution=world.a,
            reason="x" * 1001,
            diagnosis_name="高血压",
        )
    with pytest.raises(ValidationError):
        referral_submit(
            actor=township(world),
            patient=world.patients["at_b"],
            direction=Direction.UP,
            destination_institution=world.a,
            reason="原因",
            diagnosis_name="高血压",
            diagnosis_code="Q99.99X",
        )
    assert not Referral.objects.exists()


def test_a_patient_the_sender_cannot_see_cannot_be_referred(world: World):
    with pytest.raises(ValidationError):
        referral_submit(
            actor=township(world),
            patient=world.patients["at_t"],
            direction=Direction.UP,
            destination_institution=world.a,
            reason="原因",
            diagnosis_name="高血压",
        )


def test_criteria_are_stored_as_a_snapshot(world: World):
    from yilian.referrals.models import ReferralCriterion

    chosen = list(ReferralCriterion.objects.filter(disease="hypertension", direction="up")[:2])
    referral = refer_up(world, criteria_ids=[c.pk for c in chosen])
    ReferralCriterion.objects.filter(pk=chosen[0].pk).update(text="改过的标准")
    referral.refresh_from_db()
    assert [c["text"] for c in referral.criteria] == [chosen[0].text, chosen[1].text]


# --- sides and states -----------------------------------------------------------------------------


def test_sides_the_sender_cannot_accept_and_the_receiver_cannot_cancel(world: World):
    referral = refer_up(world)
    before = _snapshot(referral)
    with pytest.raises(PermissionDenied):
        referral_accept(actor=township(world), referral=referral)
    with pytest.raises(PermissionDenied):
        referral_cancel(actor=lead(world), referral=referral, reason="不要了")
    with pytest.raises(PermissionDenied):
        referral_reject(actor=actor_for(world, "other_consortium_user"), referral=referral, reason="否")
    assert _snapshot(referral) == before


def test_outsiders_do_not_find_the_referral(world: World):
    referral = refer_up(world)
    for persona in ("other_consortium_user", "consortium_manager", "bureau_supervisor", "village_doctor"):
        with pytest.raises(Http404):
            access_referral(actor_for(world, persona), referral.uuid)
    assert access_referral(lead(world), referral.uuid) == referral
    assert access_referral(coordinator(world), referral.uuid) == referral


# state → the steps allowed from it (by the side that may take them)
STEPS = {
    "accept": {S.SUBMITTED},
    "reject": {S.SUBMITTED},
    "cancel": {S.SUBMITTED, S.ACCEPTED, S.SCHEDULED},
    "arrive": {S.ACCEPTED, S.SCHEDULED},
    "complete": {S.ARRIVED},
}


def _bring_to(world: World, state: str) -> Referral:
    referral = refer_up(world)
    receiver = lead(world)
    if state == S.SUBMITTED:
        return referral
    if state in (S.REJECTED,):
        return referral_reject(actor=receiver, referral=referral, reason="科室无床")
    if state == S.CANCELLED:
        return referral_cancel(actor=township(world), referral=referral, reason="患者拒绝")
    if state == S.EXPIRED:
        referrals_expire(now=referral.expires_at + dt.timedelta(minutes=1))
        return Referral.objects.get(pk=referral.pk)
    referral = referral_accept(actor=receiver, referral=referral)
    if state == S.ACCEPTED:
        return referral
    if state == S.SCHEDULED:
        return referral_schedule(actor=coordinator(world), referral=referral, slot=clinic_slot(world))
    referral = referral_confirm_arrival(actor=receiver, referral=referral)
    if state == S.ARRIVED:
        return referral
    return referral_complete(actor=receiver, referral=referral, result_summary="冠脉造影未见明显狭窄，调整降压方案")


def _take(world: World, step: str, referral: Referral) -> Referral:
    if step == "accept":
        return referral_accept(actor=lead(world), referral=referral)
    if step == "reject":
        return referral_reject(actor=lead(world), referral=referral, reason="无床")
    if step == "cancel":
        return referral_cancel(actor=township(world), referral=referral, reason="患者改变主意")
    if step == "arrive":
        return referral_confirm_arrival(actor=lead(world), referral=referral)
    return referral_complete(actor=lead(world), referral=referral, result_summary="结果")


@pytest.mark.parametrize("state", list(S.values))
@pytest.mark.parametrize("step", list(STEPS))
def test_every_step_from_every_state(world: World, state: str, step: str):
    referral = _bring_to(world, state)
    assert referral.status == state
    if state in STEPS[step]:
        after = _take(world, step, referral)
        expected = {
            "accept": S.ACCEPTED,
            "reject": S.REJECTED,
            "cancel": S.CANCELLED,
            "arrive": S.ARRIVED,
            "complete": S.COMPLETED,
        }[step]
        assert Referral.objects.get(pk=referral.pk).status == expected == after.status
    else:
        before = _snapshot(referral)
        with pytest.raises(ValidationError) as error:
            _take(world, step, referral)
        assert error.value.code == "state"
        assert _snapshot(referral) == before


def test_reject_needs_a_reason_and_ends_the_grant(world: World, django_capture_on_commit_callbacks):
    referral = refer_up(world)
    with pytest.raises(ValidationError):
        referral_reject(actor=lead(world), referral=referral, reason="  ")
    with django_capture_on_commit_callbacks(execute=True):
        referral = referral_reject(actor=lead(world), referral=referral, reason="本院心内科床位已满，建议转中医院")
    referral.grant.refresh_from_db()  # type: ignore[union-attr]
    assert not referral.grant.is_active  # type: ignore[union-attr]
    assert Notification.objects.filter(recipient=world.user("township_clinician"), title__contains="拒绝").exists()
    with pytest.raises(Http404):
        access_patient(lead(world), world.patients["at_b"].uuid)


# --- booking as part of accepting -----------------------------------------------------------------


def test_coordinator_accepts_and_books_the_townships_reserved_unit(world: World, django_capture_on_commit_callbacks):
    slot = clinic_slot(world)
    referral = refer_up(world)
    with django_capture_on_commit_callbacks(execute=True):
        referral = referral_accept(actor=coordinator(world), referral=referral, slot=slot, instructions="携带医保卡、既往检查单")
    assert referral.status == S.SCHEDULED
    assert referral.booking is not None and referral.booking.pool.quota is not None
    assert referral.booking.for_institution == world.b
    assert referral.appointment_start == slot.start
    assert any("携带医保卡" in sms.text for sms in ConsoleSmsGateway.messages())
    # the doctor who referred sees the booking
    assert Notification.objects.filter(recipient=world.user("township_clinician"), title__contains="接收").exists()


def test_a_taken_slot_refuses_the_whole_accept(world: World):
    slot = clinic_slot(world)
    SlotPool.objects.filter(slot=slot).update(booked=models_f_capacity())
    referral = refer_up(world)
    before = _snapshot(referral)
    with pytest.raises(ValidationError) as error:
        referral_accept(actor=coordinator(world), referral=referral, slot=slot)
    assert error.value.code == "conflict"
    assert _snapshot(referral) == before


def models_f_capacity():  # type: ignore[no-untyped-def]
    from django.db.models import F

    return F("capacity")


def test_a_closed_bed_refuses_the_accept(world: World):
    ward = make_ward(world)
    bed = ward.beds.get(code="01")
    from yilian.scheduling.services import bed_set_closed

    bed_set_closed(actor=coordinator(world), bed=bed, closed=True)
    referral = refer_up(world, urgency=Urgency.URGENT)
    with pytest.raises(ValidationError) as error:
        referral_accept(actor=coordinator(world), referral=referral, bed=bed)
    assert error.value.code == "closed"
    assert Referral.objects.get(pk=referral.pk).status == S.SUBMITTED


def test_cancel_gives_the_booking_back_and_ends_the_grant(world: World):
    slot = clinic_slot(world)
    referral = referral_accept(actor=coordinator(world), referral=refer_up(world), slot=slot)
    assert sum(SlotPool.objects.filter(slot=slot).values_list("booked", flat=True)) == 1
    referral = referral_cancel(actor=township(world), referral=referral, reason="患者已去省城就诊")
    assert sum(SlotPool.objects.filter(slot=slot).values_list("booked", flat=True)) == 0
    assert referral.booking.status == BookingStatus.CANCELLED  # type: ignore[union-attr]
    referral.grant.refresh_from_db()  # type: ignore[union-attr]
    assert not referral.grant.is_active  # type: ignore[union-attr]


def test_rebooking_gives_the_old_unit_back(world: World):
    slot = clinic_slot(world)
    referral = referral_accept(actor=coordinator(world), referral=refer_up(world), slot=slot)
    later_slot = slot.schedule.slots.exclude(pk=slot.pk).order_by("start").first()
    referral = referral_schedule(actor=coordinator(world), referral=referral, slot=later_slot)
    assert referral.booking.slot == later_slot  # type: ignore[union-attr]
    assert sum(SlotPool.objects.filter(slot=slot).values_list("booked", flat=True)) == 0


def test_moving_a_referral_to_another_bed_frees_the_first_and_a_refused_bed_keeps_it(world: World):
    from yilian.scheduling.models import BedStatus, ReservationStatus
    from yilian.scheduling.services import bed_set_closed

    ward = make_ward(world, beds=3)
    first, second, closed = (ward.beds.get(code=code) for code in ("01", "02", "03"))
    referral = referral_accept(actor=coordinator(world), referral=refer_up(world), bed=first)
    bed_set_closed(actor=coordinator(world), bed=closed, closed=True)
    with pytest.raises(ValidationError):
        referral_schedule(actor=coordinator(world), referral=referral, bed=closed)
    referral.refresh_from_db()
    assert referral.bed_reservation.bed == first and referral.bed_reservation.status == ReservationStatus.ACTIVE  # type: ignore[union-attr]
    first.refresh_from_db()
    assert first.status == BedStatus.RESERVED
    referral = referral_schedule(actor=coordinator(world), referral=referral, bed=second)
    assert referral.bed_reservation.bed == second  # type: ignore[union-attr]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (BedStatus.FREE, BedStatus.RESERVED)


# --- deadlines, expiry, arrival -------------------------------------------------------------------


def test_overdue_referrals_escalate_to_the_coordinator_once(world: World, django_capture_on_commit_callbacks):
    coordinator(world)
    referral = refer_up(world, urgency=Urgency.EMERGENCY)
    assert referral.accept_by - referral.submitted_at == dt.timedelta(minutes=30)
    with django_capture_on_commit_callbacks(execute=True):
        assert referrals_escalate(now=referral.accept_by - dt.timedelta(minutes=1)) == 0
        assert referrals_escalate(now=referral.accept_by + dt.timedelta(minutes=1)) == 1
        assert referrals_escalate(now=referral.accept_by + dt.timedelta(minutes=5)) == 0
    assert Notification.objects.filter(recipient=world.user("coordinator"), title__contains="超时").count() == 1
    assert ReferralEvent.objects.filter(referral=referral, kind=ReferralEvent.Kind.ESCALATED).count() == 1


def test_consortium_deadlines_override_the_defaults(world: World):
    from yilian.referrals.models import ReferralDeadline

    ReferralDeadline.objects.create(consortium=world.k1, urgency=Urgency.URGENT, accept_minutes=60, expire_minutes=120)
    referral = refer_up(world, urgency=Urgency.URGENT)
    assert referral.accept_by - referral.submitted_at == dt.timedelta(minutes=60)


def test_unanswered_referrals_expire_and_lose_their_grant(world: World):
    referral = refer_up(world)
    assert referrals_expire(now=referral.expires_at - dt.timedelta(minutes=1)) == 0
    assert referrals_expire(now=referral.expires_at + dt.timedelta(minutes=1)) == 1
    referral.refresh_from_db()
    assert referral.status == S.EXPIRED
    assert referral.grant is not None and referral.grant.revoked_at is not None
    # a new referral for the same patient and direction is possible again
    refer_up(world)


def test_arrival_from_the_shared_record(world: World):
    slot = clinic_slot(world)
    referral = referral_accept(actor=coordinator(world), referral=refer_up(world), slot=slot)
    patient = world.patients["at_b"]
    from yilian.patients.models import SourceIdentity

    def identity_at(institution, local_id):  # type: ignore[no-untyped-def]
        return SourceIdentity.objects.create(
            institution=institution,
            local_id=local_id,
            name=patient.name,
            sex=patient.sex,
            birth_date=patient.birth_date,
            patient=patient,
        )

    assert referrals_mark_arrived() == 0
    # A visit at another institution is not an arrival.
    encounter_upsert(
        institution=world.c,
        identity=identity_at(world.c, "C-0001"),
        source_id="C-1",
        data=EncounterData(encounter_class=EncounterClass.OUTPATIENT, started_at=timezone.now()),
    )
    assert referrals_mark_arrived() == 0
    at_a = identity_at(world.a, "A-0001")
    encounter_upsert(
        institution=world.a,
        identity=at_a,
        source_id="MZ-1",
        data=EncounterData(encounter_class=EncounterClass.OUTPATIENT, started_at=timezone.now(), department_name="心内科"),
    )
    assert referrals_mark_arrived(patient_ids=[patient.pk], institution_id=world.a.pk) == 1
    referral.refresh_from_db()
    assert referral.status == S.ARRIVED and "MZ-1" in referral.arrival_source
    assert referral.booking.status == BookingStatus.FULFILLED  # type: ignore[union-attr]
    assert referrals_mark_arrived() == 0


# --- down referrals -------------------------------------------------------------------------------


def test_down_referral_needs_acknowledgment_with_a_follow_up_task(world: World, django_capture_on_commit_callbacks):
    referral = refer_down(world)
    receiver = township(world)
    with pytest.raises(ValidationError) as error:
        referral_accept(actor=receiver, referral=referral)
    assert "follow_ups" in error.value.message_dict
    due = timezone.localdate() + dt.timedelta(days=14)
    spec = FollowUpSpec(responsible=world.user("township_clinician"), due_date=due, what_to_check="血压、用药依从性")
    with django_capture_on_commit_callbacks(execute=True):
        referral = referral_accept(actor=receiver, referral=referral, note="已接收，安排家庭医生随访", follow_ups=[spec])
    assert referral.status == S.ACCEPTED
    task = FollowUpTask.objects.get(referral=referral)
    assert (task.due_date, task.responsible, task.institution) == (due, world.user("township_clinician"), world.b)
    assert Notification.objects.filter(recipient=world.user("township_clinician"), kind=NotificationKind.FOLLOW_UP).exists()
    referral = referral_confirm_arrival(actor=receiver, referral=referral)
    referral = referral_complete(actor=receiver, referral=referral, result_summary="已纳入高血压规范管理")
    assert referral.status == S.COMPLETED
    task = follow_up_done(actor=receiver, task=task, result="血压 132/84 mmHg，控制满意")
    assert task.status == "done"


def test_follow_up_responsible_must_work_at_the_receiver(world: World):
    referral = refer_down(world)
    spec = FollowUpSpec(
        responsible=world.user("lead_clinician"), due_date=timezone.localdate() + dt.timedelta(days=7), what_to_check="血压"
    )
    with pytest.raises(ValidationError):
        referral_accept(actor=township(world), referral=referral, follow_ups=[spec])
    assert Referral.objects.get(pk=referral.pk).status == S.SUBMITTED
    assert not FollowUpTask.objects.exists()


def test_completion_shortens_the_grant(world: World):
    referral = _bring_to(world, S.COMPLETED)
    grant = referral.grant
    assert grant is not None
    grant.refresh_from_db()
    assert grant.expires_at <= timezone.now() + dt.timedelta(days=7, minutes=1)
    assert grant.is_active


def test_referral_centre_coordinator_receives_a_lateral_referral_between_members(world: World):
    referral = referral_submit(
        actor=township(world),
        patient=world.patients["at_b"],
        direction=Direction.LATERAL,
        destination_institution=world.c,
        reason="冲蒌镇卫生院有康复科",
        diagnosis_name="脑梗死恢复期",
    )
    referral = referral_accept(actor=coordinator(world), referral=referral, note="转诊中心协调接收")
    assert referral.status == S.ACCEPTED


# --- destination suggestion -----------------------------------------------------------------------


def test_suggestion_ranks_by_capability_level_and_free_capacity(world: World):
    clinic_slot(world)
    make_ward(world)
    InstitutionCapability.objects.create(institution=world.a, capability=Capability.PCI)
    suggestions = destination_suggest(township(world), direction=Direction.UP, required_capability=Capability.PCI)
    assert suggestions and suggestions[0].institution == world.a
    first = suggestions[0]
    assert first.department == world.cardiology
    assert first.free_units > 0 and first.reserved_units > 0
    assert any("预留" in reason for reason in first.reasons)
    # Without PCI anywhere, nothing qualifies.
    InstitutionCapability.objects.all().delete()
    assert destination_suggest(township(world), direction=Direction.UP, required_capability=Capability.PCI) == []
    # From a village clinic, the township above comes first for a routine referral.
    village = actor_for(world, "village_doctor")
    ranked = destination_suggest(village, direction=Direction.UP)
    assert ranked[0].institution == world.b
    assert any(s.warnings for s in ranked if s.institution == world.a)


def test_an_emergency_patient_seen_before_acceptance_arrives_by_itself(world: World):
    from yilian.patients.models import SourceIdentity

    referral = refer_up(world, urgency=Urgency.EMERGENCY)
    patient = world.patients["at_b"]
    identity = SourceIdentity.objects.create(
        institution=world.a, local_id="A-9", name=patient.name, sex=patient.sex, birth_date=patient.birth_date, patient=patient
    )
    encounter_upsert(
        institution=world.a,
        identity=identity,
        source_id="JZ-1",
        data=EncounterData(encounter_class=EncounterClass.EMERGENCY, started_at=timezone.now()),
    )
    assert referrals_mark_arrived(patient_ids=[patient.pk]) == 1
    referral.refresh_from_db()
    assert referral.status == S.ARRIVED and referral.accepted_at is not None


def test_a_routine_patient_seen_before_acceptance_waits_for_the_receiver(world: World):
    from yilian.patients.models import SourceIdentity

    referral = refer_up(world)
    patient = world.patients["at_b"]
    identity = SourceIdentity.objects.create(
        institution=world.a, local_id="A-9", name=patient.name, sex=patient.sex, birth_date=patient.birth_date, patient=patient
    )
    encounter_upsert(
        institution=world.a,
        identity=identity,
        source_id="MZ-9",
        data=EncounterData(encounter_class=EncounterClass.OUTPATIENT, started_at=timezone.now()),
    )
    assert referrals_mark_arrived(patient_ids=[patient.pk]) == 0
    referral.refresh_from_db()
    assert referral.status == S.SUBMITTED
