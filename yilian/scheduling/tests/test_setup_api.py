"""/api/v1 set-up of schedules, rules, quotas, generation, leave, wards and beds (SCHEDULE_MANAGE):
the authorisation matrix with "denied changes nothing", a whole set-up, and bad input as 4xx."""

from __future__ import annotations

import datetime as dt
import json

from django.test import Client

from yilian.scheduling.models import Bed, BedStatus, Schedule, Slot
from yilian.scheduling.testing import make_clinic, make_ward, next_weekday
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


def _post(client: Client, url: str, body: object):  # type: ignore[no-untyped-def]
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_schedule_create_matrix(world: World):
    run_matrix(
        world,
        Endpoint(
            "POST",
            lambda w: "/api/v1/scheduling/schedules",
            data=lambda w: {"institution": str(w.a.uuid), "kind": "equipment", "name": "CT室", "capability": "ct"},
            json_body=True,
        ),
        allowed={"consortium_manager": 201},
        denied_status={
            "anonymous": 401,
            "lead_clinician": 403,
            "township_clinician": 403,
            "village_doctor": 403,
            "bureau_supervisor": 403,
            "other_consortium_user": 403,
        },
        watched=WATCHED,
    )
    assert Schedule.objects.get().capability == "ct"


def test_a_whole_set_up_through_the_api(world: World, login):
    client = login("consortium_manager")
    created = _post(
        client,
        "/api/v1/scheduling/schedules",
        {
            "institution": str(world.a.uuid),
            "kind": "department",
            "name": "心内科普通门诊",
            "department": str(world.cardiology.uuid),
        },
    )
    assert created.status_code == 201, created.content
    schedule = created.json()["id"]
    monday = next_weekday(weekday=0)
    template = _post(
        client,
        f"/api/v1/scheduling/schedules/{schedule}/templates",
        {
            "weekdays": "01234",
            "start_time": "08:00",
            "end_time": "10:00",
            "slot_minutes": 30,
            "capacity": 4,
            "valid_from": monday.isoformat(),
        },
    )
    assert template.status_code == 201, template.content
    quota = _post(
        client,
        f"/api/v1/scheduling/schedules/{schedule}/quotas",
        {"kind": "institution", "institution": str(world.b.uuid), "units_per_slot": 1},
    )
    assert quota.status_code == 201 and quota.json()["target"] == "水步镇卫生院"
    generated = _post(
        client,
        f"/api/v1/scheduling/schedules/{schedule}/generate",
        {"start_date": monday.isoformat(), "end_date": monday.isoformat()},
    )
    assert generated.status_code == 200 and generated.json()["created"] == 4
    assert client.get(f"/api/v1/scheduling/schedules/{schedule}/quotas").json()[0]["units_per_slot"] == 1
    assert Slot.objects.filter(schedule__uuid=schedule).count() == 4
    ward = _post(
        client, "/api/v1/scheduling/wards", {"institution": str(world.a.uuid), "name": "心内科二病区", "code": "XN2", "beds": 3}
    )
    assert ward.status_code == 201 and ward.json()["beds"] == 3
    bed = Bed.objects.get(ward__code="XN2", code="01")
    closed = _post(client, f"/api/v1/scheduling/beds/{bed.uuid}/state", {"action": "close"})
    assert closed.status_code == 200 and closed.json()["status"] == BedStatus.CLOSED
    again = _post(client, f"/api/v1/scheduling/beds/{bed.uuid}/state", {"action": "close"})
    assert again.status_code == 422  # only a free bed can be closed


def test_set_up_bad_input_is_4xx_and_changes_nothing(world: World, login):
    clinic = make_clinic(world)
    make_ward(world)
    client = login("consortium_manager")
    url = f"/api/v1/scheduling/schedules/{clinic.schedule.uuid}"
    before = Schedule.objects.count(), Slot.objects.count()
    cases = [
        (
            "/api/v1/scheduling/schedules",
            {"institution": str(world.t.uuid), "kind": "department", "name": "x"},
        ),  # other consortium
        ("/api/v1/scheduling/schedules", {"institution": str(world.a.uuid), "kind": "department", "name": "x" * 61}),
        ("/api/v1/scheduling/schedules", {"institution": str(world.a.uuid), "kind": "equipment", "name": "无设备"}),
        (
            f"{url}/templates",
            {
                "weekdays": "9",
                "start_time": "08:00",
                "end_time": "07:00",
                "slot_minutes": 10**12,
                "capacity": 1,
                "valid_from": "2026-01-01",
            },
        ),
        (
            f"{url}/templates",
            {
                "weekdays": "0",
                "start_time": "12:00",
                "end_time": "08:00",
                "slot_minutes": 30,
                "capacity": 1,
                "valid_from": "2026-01-01",
            },
        ),
        (f"{url}/quotas", {"kind": "institution", "institution": str(world.t.uuid), "units_per_slot": 1}),
        (f"{url}/generate", {"start_date": "2026-01-01", "end_date": "2030-01-01"}),
        ("/api/v1/scheduling/wards", {"institution": str(world.a.uuid), "name": "w", "code": "XN1", "beds": 1}),  # duplicate code
        ("/api/v1/scheduling/wards", {"institution": str(world.a.uuid), "name": "w", "code": "W9", "beds": 10**9}),
        (
            "/api/v1/scheduling/leave",
            {
                "practitioner_user": str(world.user("lead_clinician").uuid),
                "starts_at": "2026-01-02T00:00:00+08:00",
                "ends_at": "2026-01-01T00:00:00+08:00",
                "reason": "x",
            },
        ),
    ]
    for address, body in cases:
        response = _post(client, address, body)
        assert 400 <= response.status_code < 500, (address, body, response.status_code, response.content)
        assert "code" in response.json() and "message" in response.json()
    assert (Schedule.objects.count(), Slot.objects.count()) == before
    assert Bed.objects.filter(ward__code="W9").count() == 0
    assert (
        _post(
            client, f"{url}/generate", {"start_date": dt.date.today().isoformat(), "end_date": dt.date.today().isoformat()}
        ).status_code
        == 200
    )
