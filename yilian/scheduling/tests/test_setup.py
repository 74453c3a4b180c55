"""Set-up pages (SCHEDULE_MANAGE): new schedule, rules, quotas, generation, leave, wards, beds —
who may, that denied requests change nothing, and that bad input is a form error, never a 500."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from yilian.accounts.models import Practitioner
from yilian.scheduling.models import Bed, BedStatus, Quota, Schedule, Slot, SlotTemplate, Ward
from yilian.scheduling.testing import coordinator, make_clinic, make_ward, next_weekday
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import World

WATCHED = (
    "scheduling.Schedule",
    "scheduling.SlotTemplate",
    "scheduling.Quota",
    "scheduling.Slot",
    "scheduling.Ward",
    "scheduling.Bed",
)


def test_new_schedule_matrix(world: World):
    run_matrix(
        world,
        Endpoint(
            "POST",
            lambda w: f"/scheduling/schedules/new/?institution={w.a.uuid}",
            data=lambda w: {
                "kind": "department",
                "name": "心内科普通门诊",
                "department": str(w.cardiology.uuid),
                "location": "门诊楼三楼",
            },
        ),
        allowed={"consortium_manager": 302},
        denied_status={"anonymous": 302},
        watched=WATCHED,
    )
    schedule = Schedule.objects.get()
    assert (schedule.institution, schedule.department, schedule.location) == (world.a, world.cardiology, "门诊楼三楼")


def test_a_whole_set_up_through_the_pages(world: World, login):
    client = login("consortium_manager")
    response = client.post(
        f"/scheduling/schedules/new/?institution={world.a.uuid}",
        {"kind": "department", "name": "心内科普通门诊", "department": str(world.cardiology.uuid)},
    )
    schedule = Schedule.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/scheduling/schedules/{schedule.uuid}/")
    monday = next_weekday(weekday=0)
    client.post(
        f"/scheduling/schedules/{schedule.uuid}/templates/",
        {
            "weekdays": ["0", "2", "4"],
            "start_time": "08:00",
            "end_time": "12:00",
            "slot_minutes": "60",
            "capacity": "5",
            "valid_from": monday.isoformat(),
            "on_makeup_workdays": "on",
        },
    )
    assert SlotTemplate.objects.get(schedule=schedule).weekdays == "024"
    client.post(
        f"/scheduling/schedules/{schedule.uuid}/quotas/",
        {"kind": "institution", "institution": str(world.b.uuid), "units_per_slot": "2", "release_hours_before": "24"},
    )
    assert Quota.objects.get(schedule=schedule).institution == world.b
    client.post(
        f"/scheduling/schedules/{schedule.uuid}/generate/",
        {"start_date": monday.isoformat(), "end_date": (monday + dt.timedelta(days=6)).isoformat()},
    )
    slots = Slot.objects.filter(schedule=schedule)
    assert slots.count() == 12  # Mon, Wed, Fri × 4 hours (no holiday that week is assumed by next_weekday)
    page = client.get(f"/scheduling/schedules/{schedule.uuid}/")
    html = page.content.decode()
    assert "周一、周三、周五" in html and "水步镇卫生院" in html and 'data-testid="generate-form"' in html


def test_leave_through_the_page_only_for_an_expert_clinic(world: World, login):
    from yilian.scheduling.models import Leave, ScheduleKind
    from yilian.scheduling.services import schedule_create

    clinic = make_clinic(world)  # a department clinic: no practitioner to be on leave
    expert = schedule_create(
        actor=coordinator(world),
        institution=world.a,
        kind=ScheduleKind.PRACTITIONER,
        name="李志强专家门诊",
        practitioner=world.user("lead_clinician").practitioner,
    )
    client = login("consortium_manager")
    start = timezone.localtime() + dt.timedelta(days=3)
    leave = {
        "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
        "reason": "外出进修",
    }
    refused = client.post(f"/scheduling/schedules/{clinic.schedule.uuid}/leave/", leave, follow=True)
    assert "只有专家门诊可以登记医生停诊" in refused.content.decode() and not Leave.objects.exists()
    done = client.post(f"/scheduling/schedules/{expert.uuid}/leave/", leave, follow=True)
    assert "停诊已登记" in done.content.decode()
    recorded = Leave.objects.get()
    assert (recorded.practitioner, recorded.reason) == (world.user("lead_clinician").practitioner, "外出进修")


def test_set_up_forms_refuse_bad_input_without_a_500(world: World, login):
    clinic = make_clinic(world)
    client = login("consortium_manager")
    url = f"/scheduling/schedules/{clinic.schedule.uuid}"
    before = SlotTemplate.objects.count(), Quota.objects.count(), Slot.objects.count()
    bad = [
        (
            f"{url}/templates/",
            {"weekdays": ["9"], "start_time": "12:00", "end_time": "08:00", "slot_minutes": "99999", "capacity": "-1"},
        ),
        (
            f"{url}/templates/",
            {
                "weekdays": ["0"],
                "start_time": "12:00",
                "end_time": "08:00",
                "slot_minutes": "30",
                "capacity": "3",
                "valid_from": "2026-01-01",
            },
        ),
        (
            f"{url}/quotas/",
            {"kind": "institution", "institution": str(world.t.uuid), "units_per_slot": "1", "release_hours_before": "24"},
        ),
        (f"{url}/quotas/", {"kind": "nonsense", "units_per_slot": "10" * 30, "release_hours_before": "x"}),
        (f"{url}/generate/", {"start_date": "2026-12-31", "end_date": "2026-01-01"}),
        (f"{url}/generate/", {"start_date": "2026-01-01", "end_date": "2029-01-01"}),
        (f"{url}/leave/", {"starts_at": "x", "ends_at": "y", "reason": "z" * 500}),
    ]
    for address, data in bad:
        response = client.post(address, data)
        assert response.status_code == 302, address
        assert response["Location"].endswith(f"/scheduling/schedules/{clinic.schedule.uuid}/")
    assert (SlotTemplate.objects.count(), Quota.objects.count(), Slot.objects.count()) == before
    messages = client.get(f"{url}/").content.decode()
    assert "一次最多生成" in messages or "结束日期" in messages


def test_set_up_pages_are_denied_to_those_who_do_not_manage(world: World):
    clinic = make_clinic(world)
    run_matrix(
        world,
        Endpoint(
            "POST",
            lambda w: f"/scheduling/schedules/{clinic.schedule.uuid}/generate/",
            data=lambda w: {"start_date": timezone.localdate().isoformat(), "end_date": timezone.localdate().isoformat()},
        ),
        allowed={"consortium_manager": 302},
        denied_status={"anonymous": 302},
        watched=WATCHED,
    )


def test_leave_from_a_practitioner_schedule(world: World, login):
    practitioner = Practitioner.objects.get(user=world.user("lead_clinician"))
    from yilian.scheduling.services import schedule_create

    schedule = schedule_create(
        actor=coordinator(world), institution=world.a, kind="practitioner", name="李志强专家门诊", practitioner=practitioner
    )
    client = login("consortium_manager")
    day = next_weekday()
    response = client.post(
        f"/scheduling/schedules/{schedule.uuid}/leave/",
        {"starts_at": f"{day}T00:00", "ends_at": f"{day}T23:59", "reason": "外出会诊"},
    )
    assert response.status_code == 302
    assert practitioner.leaves.get().reason == "外出会诊"


def test_wards_and_beds(world: World, login):
    client = login("consortium_manager")
    response = client.post(
        f"/scheduling/wards/new/?institution={world.a.uuid}",
        {"name": "心内科二病区", "code": "XN2", "department": str(world.cardiology.uuid), "beds": "6"},
    )
    assert response.status_code == 302
    ward = Ward.objects.get(code="XN2")
    assert ward.beds.count() == 6
    bed = ward.beds.get(code="01")
    assert client.post(f"/scheduling/beds/{bed.uuid}/", {"action": "close"}).status_code == 302
    assert Bed.objects.get(pk=bed.pk).status == BedStatus.CLOSED
    # a clinician of the hospital cannot close beds; one of another consortium does not find them
    assert (
        login("lead_clinician").post(f"/scheduling/beds/{ward.beds.get(code='02').uuid}/", {"action": "close"}).status_code == 404
    )
    assert login("other_consortium_user").post(f"/scheduling/beds/{bed.uuid}/", {"action": "open"}).status_code == 404
    assert client.post(f"/scheduling/beds/{bed.uuid}/", {"action": "open"}).status_code == 302
    assert Bed.objects.get(pk=bed.pk).status == BedStatus.FREE
    board = client.get(f"/scheduling/wards/?institution={world.a.uuid}").content.decode()
    assert 'data-testid="ward-new"' in board and "停用床位" in board


@pytest.mark.parametrize("persona", ["lead_clinician", "township_clinician", "bureau_supervisor"])
def test_no_set_up_buttons_without_schedule_manage(world: World, login, persona: str):
    make_ward(world)
    page = login(persona).get(f"/scheduling/?institution={world.a.uuid}").content.decode()
    assert 'data-testid="schedule-new"' not in page
    assert login(persona).get(f"/scheduling/schedules/new/?institution={world.a.uuid}").status_code in (403, 404)
