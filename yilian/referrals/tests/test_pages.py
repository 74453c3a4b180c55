"""Referral pages: who may open and do what (authorisation matrices that check denied requests
changed nothing), the steps through the forms, bad input as form errors, the access log, query
counts of the lists, the PDF and the resident's portal."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessAction, AccessLog
from yilian.organizations.models import Institution
from yilian.patients.models import Patient, Sex
from yilian.referrals.models import Direction, FollowUpStatus, FollowUpTask, Referral, ReferralStatus, Urgency
from yilian.referrals.pdf import masked_id_number
from yilian.referrals.services import FollowUpSpec, referral_accept, referral_confirm_arrival, referral_submit
from yilian.referrals.testing import clinic_slot, coordinator, lead, refer_down, refer_up, township
from yilian.scheduling.models import BookingStatus
from yilian.scheduling.testing import make_ward
from yilian.testing.matrix import DEFAULT_WATCHED, Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

S = ReferralStatus
WATCHED = (
    *DEFAULT_WATCHED,
    "referrals.Referral",
    "referrals.ReferralEvent",
    "referrals.FollowUpTask",
    "scheduling.Booking",
    "scheduling.SlotPool",
    "scheduling.BedReservation",
)


def _form(world: World, **extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "direction": Direction.UP,
        "urgency": Urgency.ROUTINE,
        "destination_institution": str(world.a.uuid),
        "destination_department": str(world.cardiology.uuid),
        "diagnosis_name": "原发性高血压",
        "diagnosis_code": "I10",
        "reason": "血压控制不佳，连续两次随访未达标",
        "share_scope": "record",
    }
    data.update(extra)
    return data


def _resident(world: World, n: int, home: Institution | None = None) -> Patient:
    return Patient.objects.create(
        name=f"居民{n}",
        sex=Sex.FEMALE,
        birth_date=dt.date(1960, 1, 1),
        id_number="",
        home_institution=home or world.b,
        town="水步镇",
    )


# --- authorisation matrices -------------------------------------------------------------------------


def test_create_matrix(world: World) -> None:
    patient = world.patients["at_b"]
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/referrals/patients/{patient.uuid}/new/", data=lambda w: _form(w)),
        allowed={"township_clinician": 302},
        denied_status={"consortium_manager": 403, "bureau_supervisor": 403},
        watched=WATCHED,
    )
    referral = Referral.objects.get()
    assert (referral.patient, referral.sender_institution, referral.destination_department) == (
        patient,
        world.b,
        world.cardiology,
    )


def test_accept_matrix(world: World) -> None:
    referral = refer_up(world)
    coordinator(world)
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/referrals/{referral.uuid}/accept/", data=lambda w: {"note": "同意接收"}),
        allowed={"lead_clinician": 302},
        denied_status={"township_clinician": 403},
        watched=WATCHED,
    )
    referral.refresh_from_db()
    assert referral.status == S.ACCEPTED and referral.accepted_by == world.user("lead_clinician")


def test_accept_before_anyone_else_is_refused_to_the_sender_side(world: World) -> None:
    """The sender is refused (403) even while the referral is still waiting: the side decides."""
    referral = refer_up(world)
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/referrals/{referral.uuid}/accept/", data=lambda w: {"note": ""}),
        allowed={},
        denied_status={"township_clinician": 403},
        personas=("township_clinician", "village_doctor", "consortium_manager", "other_consortium_user"),
        watched=WATCHED,
    )
    assert Referral.objects.get(pk=referral.pk).status == S.SUBMITTED


def test_cancel_matrix(world: World) -> None:
    referral = refer_up(world)
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/referrals/{referral.uuid}/cancel/", data=lambda w: {"reason": "患者改去广州就医"}),
        allowed={"township_clinician": 302},
        denied_status={"lead_clinician": 403},
        watched=WATCHED,
    )
    referral.refresh_from_db()
    assert referral.status == S.CANCELLED and referral.end_reason == "患者改去广州就医"


@pytest.mark.parametrize("suffix", ["", "pdf/"])
def test_detail_and_pdf_matrix(world: World, suffix: str) -> None:
    referral = refer_up(world)
    coordinator(world)
    results = run_matrix(
        world,
        Endpoint("GET", lambda w: f"/referrals/{referral.uuid}/{suffix}"),
        allowed={"lead_clinician": 200, "township_clinician": 200, "coordinator": 200},
        personas=(*PERSONAS, "coordinator"),
        watched=WATCHED,
    )
    assert results["other_consortium_user"] == 404 and results["village_doctor"] == 404


def test_board_matrix(world: World) -> None:
    refer_up(world)
    coordinator(world)
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/referrals/board/"),
        allowed={"coordinator": 200},
        personas=(*PERSONAS, "coordinator"),
        watched=WATCHED,
    )


# --- create, suggestion -----------------------------------------------------------------------------


def test_create_page_offers_the_criteria_and_destinations(world: World, login, criteria) -> None:  # type: ignore[no-untyped-def]
    patient = world.patients["at_b"]
    response = login("township_clinician").get(f"/referrals/patients/{patient.uuid}/new/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "意识丧失或模糊" in body and 'data-capability="pci"' in body
    assert [i.name for i in response.context["form"].fields["destination_institution"].queryset] == [
        "冲蒌镇卫生院",
        "台山市人民医院",
        "水步镇石龙村卫生站",
    ]
    log = AccessLog.objects.get(user=world.user("township_clinician"), patient=patient)
    assert log.action == AccessAction.VIEW_SUMMARY


def test_create_with_criteria_stores_them_and_redirects_to_the_detail(world: World, login, criteria) -> None:  # type: ignore[no-untyped-def]
    patient = world.patients["at_b"]
    client = login("township_clinician")
    page = client.get(f"/referrals/patients/{patient.uuid}/new/")
    pci = next(c for c in page.context["criteria"] if c.required_capability == "pci")
    from yilian.organizations.models import Capability, InstitutionCapability

    InstitutionCapability.objects.create(institution=world.a, capability=Capability.PCI)
    data = _form(world, criteria=[str(pci.pk)], urgency=Urgency.EMERGENCY, required_capability="pci")
    response = client.post(f"/referrals/patients/{patient.uuid}/new/", data)
    referral = Referral.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/referrals/{referral.uuid}/"
    assert referral.criteria == [{"id": pci.pk, "disease": "hypertension", "text": pci.text}]
    assert (referral.urgency, referral.required_capability) == (Urgency.EMERGENCY, "pci")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"diagnosis_name": ""}, "diagnosis_name"),
        ({"destination_institution": "not-a-uuid"}, "destination_institution"),
        ({"destination_institution": "00000000-0000-0000-0000-000000000000"}, "destination_institution"),
        ({"direction": "sideways"}, "direction"),
        ({"criteria": ["abc"]}, "criteria"),
        ({"criteria": ["999999"]}, "criteria"),
        ({"diagnosis_code": "XYZ99"}, "diagnosis_code"),
        ({"wanted_from": "2030-02-10", "wanted_to": "2030-02-01"}, "wanted_to"),
        ({"wanted_from": "yesterday"}, "wanted_from"),
        ({"reason": "x" * 1001}, "reason"),
        ({"direction": Direction.DOWN}, "direction"),  # B → A is not down: a service rule, on its field
        ({"required_capability": "dialysis"}, "required_capability"),  # A lacks dialysis
    ],
)
def test_bad_input_gives_form_errors_and_writes_nothing(world: World, login, change, field) -> None:  # type: ignore[no-untyped-def]
    patient = world.patients["at_b"]
    response = login("township_clinician").post(f"/referrals/patients/{patient.uuid}/new/", _form(world, **change))
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not Referral.objects.exists()


def test_a_second_open_referral_is_a_form_error(world: World, login) -> None:  # type: ignore[no-untyped-def]
    refer_up(world)
    patient = world.patients["at_b"]
    response = login("township_clinician").post(f"/referrals/patients/{patient.uuid}/new/", _form(world))
    assert response.status_code == 400 and "未结束" in response.content.decode()
    assert Referral.objects.count() == 1


def test_suggestion_lists_the_lead_hospital_with_reasons(world: World, login) -> None:  # type: ignore[no-untyped-def]
    clinic_slot(world)
    response = login("township_clinician").get(
        "/referrals/suggest/",
        {"direction": "up", "urgency": "routine", "wanted_from": "", "wanted_to": ""},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    suggestions = response.context["suggestions"]
    assert suggestions[0].institution == world.a and suggestions[0].department == world.cardiology
    body = response.content.decode()
    assert "上一级机构" in body and f'data-institution="{world.a.uuid}"' in body


def test_suggestion_with_nonsense_input_still_answers(world: World, login) -> None:  # type: ignore[no-untyped-def]
    response = login("township_clinician").get("/referrals/suggest/", {"direction": "x", "wanted_from": "nope", "urgency": "?"})
    assert response.status_code == 200


# --- lists ------------------------------------------------------------------------------------------


def test_outbox_and_inbox_show_each_side_and_log_the_patients(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    outbox = login("township_clinician").get("/referrals/outbox/")
    assert [r.pk for r in outbox.context["referrals"]] == [referral.pk]
    inbox = login("lead_clinician").get("/referrals/inbox/")
    assert [r.pk for r in inbox.context["referrals"]] == [referral.pk]
    assert login("lead_clinician").get("/referrals/outbox/").context["referrals"] == []
    assert AccessLog.objects.filter(patient=referral.patient, action=AccessAction.LIST).count() == 2
    assert login("consortium_manager").get("/referrals/inbox/").status_code == 403


def test_overdue_and_escalated_are_marked(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    Referral.objects.filter(pk=referral.pk).update(
        accept_by=timezone.now() - dt.timedelta(minutes=5), escalated_at=timezone.now()
    )
    response = login("lead_clinician").get("/referrals/inbox/?state=submitted")
    body = response.content.decode()
    assert response.context["overdue"] == 1
    assert 'data-testid="overdue-badge"' in body and 'data-testid="escalated-badge"' in body and "table-danger" in body


def test_state_tabs_filter_and_count(world: World, login) -> None:  # type: ignore[no-untyped-def]
    first = refer_up(world)
    referral_accept(actor=lead(world), referral=first)
    refer_up(world, patient_key="at_v")
    client = login("township_clinician")
    tabs = {t["key"]: t["count"] for t in client.get("/referrals/outbox/").context["tabs"]}
    assert (tabs["open"], tabs["submitted"], tabs["accepted"], tabs["closed"]) == (2, 1, 1, 0)
    accepted = client.get("/referrals/outbox/?state=accepted").context["referrals"]
    assert [r.pk for r in accepted] == [first.pk]
    assert client.get("/referrals/outbox/?state=bogus&page=99").status_code == 200


@pytest.mark.parametrize("url", ["/referrals/outbox/", "/referrals/inbox/", "/referrals/board/", "/referrals/follow-ups/"])
def test_list_queries_do_not_grow_with_rows(  # type: ignore[no-untyped-def]
    world: World, url: str, django_assert_num_queries, django_assert_max_num_queries
) -> None:
    coordinator(world)
    persona = {"/referrals/outbox/": "township_clinician", "/referrals/board/": "coordinator"}.get(url, "lead_clinician")
    if url == "/referrals/follow-ups/":
        persona = "township_clinician"

    def add(n: int) -> None:
        for i in range(n):
            patient = _resident(world, Referral.objects.count() * 10 + i)
            referral = referral_submit(
                actor=township(world),
                patient=patient,
                direction=Direction.UP,
                destination_institution=world.a,
                destination_department=world.cardiology,
                reason="复查",
                diagnosis_name="原发性高血压",
            )
            down = referral_submit(
                actor=lead(world),
                patient=_resident(world, 1000 + Referral.objects.count(), home=world.a),
                direction=Direction.DOWN,
                destination_institution=world.b,
                reason="病情稳定",
                diagnosis_name="原发性高血压",
            )
            referral_accept(
                actor=township(world),
                referral=down,
                follow_ups=[
                    FollowUpSpec(
                        responsible=world.user("township_clinician"), due_date=timezone.localdate(), what_to_check="复测血压"
                    )
                ],
            )
            assert referral.pk

    from yilian.testing.matrix import client_for

    client: Client = client_for(world, persona)
    add(1)
    client.get(url)  # warm the session
    with django_assert_max_num_queries(20) as first:
        assert client.get(url).status_code == 200
    add(3)
    with django_assert_num_queries(len(first.captured_queries)):
        response = client.get(url)
    rows = response.context["referrals"] if "referrals" in response.context else response.context["tasks"]
    assert len(rows) == (8 if url == "/referrals/board/" else 4)  # the board holds both directions


def test_board_shows_pool_use_of_slots_and_beds(world: World, login) -> None:  # type: ignore[no-untyped-def]
    slot = clinic_slot(world)
    make_ward(world, beds=3)
    referral = refer_up(world)
    referral_accept(actor=coordinator(world), referral=referral, slot=slot)
    from yilian.testing.matrix import client_for

    response = client_for(world, "coordinator").get("/referrals/board/")
    assert response.status_code == 200
    schedule = response.context["schedules"][0]
    assert (schedule.capacity_total, schedule.booked_total, schedule.reserved_booked) == (16, 1, 1)
    board = response.context["boards"][0]
    assert board.counts == {"free": 3}
    assert [r.pk for r in response.context["referrals"]] == [referral.pk]


def test_board_reads_slot_and_bed_use_in_one_query_each_whatever_their_number(  # type: ignore[no-untyped-def]
    world: World, django_assert_num_queries
) -> None:
    """The board's slot and bed use come from the scheduling selectors the schedule list and the
    ward list use (one grouped query per kind): more schedules, slots and wards, same queries,
    and the same figures as the schedule list shows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from yilian.scheduling.models import ScheduleKind
    from yilian.scheduling.services import bed_reserve, schedule_create, ward_create
    from yilian.testing.matrix import client_for

    slot = clinic_slot(world)
    ward = make_ward(world, beds=3)
    referral_accept(actor=coordinator(world), referral=refer_up(world), slot=slot)
    client = client_for(world, "coordinator")
    client.get("/referrals/board/")  # warm the session
    with CaptureQueriesContext(connection) as first:
        assert client.get("/referrals/board/").status_code == 200
    queries = [q["sql"] for q in first.captured_queries]  # read now: the next request empties the log
    manager = coordinator(world)
    for i in range(4):
        schedule_create(actor=manager, institution=world.a, kind=ScheduleKind.EQUIPMENT, name=f"CT室{i}", capability="ct")
        ward_create(actor=manager, institution=world.a, name=f"病区{i}", code=f"W{i}", beds=2 + i)
    bed_reserve(actor=manager, bed=ward.beds.get(code="02"), patient=world.patients["at_a"])

    with django_assert_num_queries(len(queries)):
        response = client.get("/referrals/board/")

    uses = {u.ward.code: u for u in response.context["boards"]}
    assert len(uses) == 5 and uses["XN1"].counts == {"free": 2, "reserved": 1} and uses["W3"].counts == {"free": 5}
    assert uses["XN1"].occupancy_percent == 33
    schedules = {s.name: s for s in response.context["schedules"]}
    assert len(schedules) == 5 and (schedules["CT室0"].capacity_total, schedules["CT室0"].booked_total) == (0, 0)
    listed = {s.name: s for s in client_for(world, "coordinator").get("/scheduling/").context["schedules"]}
    cardiology = schedules["心内科普通门诊"]
    assert (cardiology.capacity_total, cardiology.booked_total, cardiology.reserved_capacity, cardiology.reserved_booked) == (
        listed["心内科普通门诊"].capacity_total,
        listed["心内科普通门诊"].booked_total,
        listed["心内科普通门诊"].reserved_capacity,
        listed["心内科普通门诊"].reserved_booked,
    )
    grouped = [sql for sql in queries if "scheduling_slotpool" in sql or "scheduling_bed" in sql]
    assert len(grouped) == 2 and all("GROUP BY" in sql for sql in grouped), grouped


# --- steps through the detail page --------------------------------------------------------------------


def test_coordinator_accepts_with_a_slot_and_a_bed(world: World) -> None:
    slot = clinic_slot(world)
    ward = make_ward(world, beds=2)
    referral = refer_up(world)
    from yilian.testing.matrix import client_for

    client = client_for(world, "coordinator")
    page = client.get(f"/referrals/{referral.uuid}/")
    assert slot in page.context["slots"] and len(page.context["beds"]) == 2
    bed = ward.beds.order_by("code").first()
    assert bed is not None
    response = client.post(
        f"/referrals/{referral.uuid}/accept/",
        {"slot": str(slot.uuid), "bed": str(bed.uuid), "bed_hours": "24", "instructions": "请到门诊楼三楼心内科诊区"},
    )
    assert response.status_code == 302
    referral.refresh_from_db()
    assert referral.status == S.SCHEDULED and referral.booking is not None and referral.bed_reservation is not None
    assert referral.booking.status == BookingStatus.BOOKED and referral.appointment_start == slot.start
    sender_view = client_for(world, "township_clinician").get(f"/referrals/{referral.uuid}/").content.decode()
    assert "请到门诊楼三楼心内科诊区" in sender_view and 'data-testid="appointment"' in sender_view


@pytest.mark.parametrize(
    "data",
    [
        {"slot": "not-a-uuid"},
        {"slot": "00000000-0000-0000-0000-000000000000"},
        {"bed": "00000000-0000-0000-0000-000000000000"},
        {"bed_hours": "1000"},
        {"note": "x" * 501},
    ],
)
def test_bad_accept_input_is_a_form_error_and_changes_nothing(world: World, data) -> None:  # type: ignore[no-untyped-def]
    clinic_slot(world)
    referral = refer_up(world)
    from yilian.testing.matrix import client_for, snapshot

    before = snapshot(WATCHED)
    response = client_for(world, "lead_clinician").post(f"/referrals/{referral.uuid}/accept/", data)
    assert response.status_code == 400 and 'data-testid="step-errors"' in response.content.decode()
    after = snapshot(WATCHED)
    assert after["referrals.Referral"] == before["referrals.Referral"]
    assert after["scheduling.Booking"] == before["scheduling.Booking"]


def test_a_taken_slot_refuses_the_whole_accept(world: World) -> None:
    slot = clinic_slot(world)
    from yilian.scheduling.models import SlotPool

    SlotPool.objects.filter(slot=slot).update(booked=models_f("capacity"))
    referral = refer_up(world)
    from yilian.testing.matrix import client_for

    response = client_for(world, "lead_clinician").post(f"/referrals/{referral.uuid}/accept/", {"slot": str(slot.uuid)})
    assert response.status_code == 400
    assert Referral.objects.get(pk=referral.pk).status == S.SUBMITTED


def models_f(name: str):  # type: ignore[no-untyped-def]
    from django.db.models import F

    return F(name)


def test_reject_needs_a_reason(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    client = login("lead_clinician")
    assert client.post(f"/referrals/{referral.uuid}/reject/", {"reason": "  "}).status_code == 400
    assert Referral.objects.get(pk=referral.pk).status == S.SUBMITTED
    assert client.post(f"/referrals/{referral.uuid}/reject/", {"reason": "本科室无床位"}).status_code == 302
    assert Referral.objects.get(pk=referral.pk).status == S.REJECTED


def test_a_step_from_the_wrong_state_is_a_form_error(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    client = login("lead_clinician")
    response = client.post(f"/referrals/{referral.uuid}/complete/", {"result_summary": "好转"})
    assert response.status_code == 400 and "待接收" in response.content.decode()
    assert client.post(f"/referrals/{referral.uuid}/arrive/").status_code == 400
    assert Referral.objects.get(pk=referral.pk).status == S.SUBMITTED


def test_arrive_and_complete(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    referral_accept(actor=lead(world), referral=referral)
    client = login("lead_clinician")
    assert client.post(f"/referrals/{referral.uuid}/arrive/").status_code == 302
    assert client.post(f"/referrals/{referral.uuid}/complete/", {"result_summary": ""}).status_code == 400
    assert client.post(f"/referrals/{referral.uuid}/complete/", {"result_summary": "血压控制良好，出院"}).status_code == 302
    referral.refresh_from_db()
    assert referral.status == S.COMPLETED and referral.result_summary == "血压控制良好，出院"


def test_down_referral_is_acknowledged_with_follow_up_tasks(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_down(world)
    client = login("township_clinician")
    page = client.get(f"/referrals/{referral.uuid}/")
    doctors = list(page.context["follow_up_formset"].forms[0].fields["responsible"].queryset)
    assert world.user("village_doctor") in doctors and world.user("township_clinician") in doctors
    assert world.user("lead_clinician") not in doctors
    base = {"fu-TOTAL_FORMS": "3", "fu-INITIAL_FORMS": "0", "fu-MIN_NUM_FORMS": "0", "fu-MAX_NUM_FORMS": "12"}
    # Without a task: refused, nothing changes.
    response = client.post(f"/referrals/{referral.uuid}/accept/", base)
    assert response.status_code == 400 and "随访任务" in response.content.decode()
    assert Referral.objects.get(pk=referral.pk).status == S.SUBMITTED
    # A task in the past: refused.
    yesterday = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    village = world.user("village_doctor")
    bad = {**base, "fu-0-responsible": str(village.pk), "fu-0-due_date": yesterday, "fu-0-what_to_check": "复测血压"}
    assert client.post(f"/referrals/{referral.uuid}/accept/", bad).status_code == 400
    assert not FollowUpTask.objects.exists()
    due = (timezone.localdate() + dt.timedelta(days=14)).isoformat()
    good = {**base, "fu-0-responsible": str(village.pk), "fu-0-due_date": due, "fu-0-what_to_check": "复测血压，评估用药"}
    assert client.post(f"/referrals/{referral.uuid}/accept/", good).status_code == 302
    task = FollowUpTask.objects.get()
    assert (task.responsible, task.what_to_check, task.status) == (village, "复测血压，评估用药", FollowUpStatus.OPEN)
    assert Referral.objects.get(pk=referral.pk).status == S.ACCEPTED
    # The village doctor sees it in their list and records the result.
    village_client = login("village_doctor")
    tasks = village_client.get("/referrals/follow-ups/").context["tasks"]
    assert [t.pk for t in tasks] == [task.pk]
    assert village_client.post(f"/referrals/follow-ups/{task.uuid}/done/", {"result": ""}).status_code == 302
    assert FollowUpTask.objects.get().status == FollowUpStatus.OPEN
    village_client.post(f"/referrals/follow-ups/{task.uuid}/done/", {"result": "血压 132/84 mmHg，继续原方案"})
    task.refresh_from_db()
    assert task.status == FollowUpStatus.DONE and task.result == "血压 132/84 mmHg，继续原方案"
    assert login("other_consortium_user").post(f"/referrals/follow-ups/{task.uuid}/done/", {"result": "x"}).status_code == 404


def test_follow_up_added_to_an_arrived_referral(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    referral_accept(actor=lead(world), referral=referral)
    referral_confirm_arrival(actor=lead(world), referral=referral)
    client = login("lead_clinician")
    due = (timezone.localdate() + dt.timedelta(days=30)).isoformat()
    data = {"add-responsible": str(world.user("lead_clinician").pk), "add-due_date": due, "add-what_to_check": "复查心电图"}
    assert client.post(f"/referrals/{referral.uuid}/follow-ups/", data).status_code == 302
    assert FollowUpTask.objects.get().what_to_check == "复查心电图"
    bad = {**data, "add-responsible": str(world.user("village_doctor").pk)}  # not a doctor of the receiver
    assert client.post(f"/referrals/{referral.uuid}/follow-ups/", bad).status_code == 400


# --- the PDF ----------------------------------------------------------------------------------------


def test_pdf_is_a_pdf_and_its_read_is_logged(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    response = login("lead_clinician").get(f"/referrals/{referral.uuid}/pdf/")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF") and b"STSong-Light" in response.content
    log = AccessLog.objects.get(patient=referral.patient, user=world.user("lead_clinician"))
    assert log.action == AccessAction.VIEW_SUMMARY and log.grant_id == referral.grant_id


def test_the_id_number_is_masked_except_its_last_four() -> None:
    assert masked_id_number("440781196205120029") == "**************0029"
    assert masked_id_number("") == "—"


# --- navigation, patient pages, home, portal ------------------------------------------------------------


def test_navigation_by_role(world: World, login) -> None:  # type: ignore[no-untyped-def]
    coordinator(world)
    body = login("township_clinician").get("/").content.decode()
    assert "转出转诊" in body and "随访任务" in body and "转诊调度看板" not in body
    from yilian.testing.matrix import client_for

    assert "转诊调度看板" in client_for(world, "coordinator").get("/").content.decode()
    assert "转出转诊" not in login("consortium_manager").get("/").content.decode()


def test_patient_pages_link_to_a_new_referral(world: World, login) -> None:  # type: ignore[no-untyped-def]
    patient = world.patients["at_b"]
    client = login("township_clinician")
    url = f"/referrals/patients/{patient.uuid}/new/"
    assert url in client.get(f"/patients/{patient.uuid}/").content.decode()
    assert url in client.get("/patients/").content.decode()
    assert url in client.get(f"/records/patients/{patient.uuid}/").content.decode()


def test_home_counts_referrals_waiting(world: World, login) -> None:  # type: ignore[no-untyped-def]
    refer_up(world)
    response = login("lead_clinician").get("/")
    assert response.context["referrals_waiting"] == 1
    assert 'data-testid="referrals-waiting">1<' in response.content.decode()


def test_resident_sees_their_referral_with_time_place_and_instructions(world: World) -> None:
    from yilian.portal.testing import force_resident_login

    slot = clinic_slot(world)
    referral = refer_up(world)
    referral_accept(actor=coordinator(world), referral=referral, slot=slot, instructions="请携带近三个月的血压记录")
    client = force_resident_login(world.patients["at_b"])
    body = client.get("/me/").content.decode()
    assert "台山市人民医院" in body and "已预约" in body and "请携带近三个月的血压记录" in body
    assert timezone.localtime(slot.start).strftime("%Y-%m-%d") in body
    assert "心内科普通门诊" in body


# --- English ------------------------------------------------------------------------------------------


def test_referral_pages_in_english(world: World, login) -> None:  # type: ignore[no-untyped-def]
    from django.conf import settings

    referral = refer_up(world)
    client = login("lead_clinician")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    inbox = client.get("/referrals/inbox/").content.decode()
    detail = client.get(f"/referrals/{referral.uuid}/").content.decode()
    assert "Referrals in" in inbox and "Waiting" in inbox and "Referral number" in inbox
    assert "Accept and book" in detail and "Reason for referral" in detail and "Up" in detail
    assert "<dt>To</dt>" in detail and "<dt>Patient</dt>" in detail


def test_the_referrals_catalogue_is_translated_and_compiled() -> None:
    import ast
    import gettext
    from pathlib import Path

    from django.conf import settings

    folder = Path(settings.BASE_DIR) / "yilian/referrals/locale/en/LC_MESSAGES"
    entries = []
    for block in (folder / "django.po").read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        for line in block.strip().splitlines():
            if line.startswith(("msgctxt ", "msgid ", "msgstr ", "msgid_plural ", "msgstr[")):
                current, _, literal = line.partition(" ")
                fields[current] = ast.literal_eval(literal)
            elif line.startswith('"') and current:
                fields[current] += ast.literal_eval(line)
        if fields.get("msgid") and "msgid_plural" not in fields and "msgctxt" not in fields:
            entries.append((fields["msgid"], fields.get("msgstr", ""), "fuzzy" in block))
    assert len(entries) > 250
    assert not [m for m, s, fuzzy in entries if not s or fuzzy]
    compiled = gettext.GNUTranslations((folder / "django.mo").open("rb"))
    assert not [m for m, s, _f in entries if compiled.gettext(m) != s], "run compilemessages"
