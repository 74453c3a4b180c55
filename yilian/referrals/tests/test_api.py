"""/api/v1/referrals: the lifecycle through HTTP, bad input in the error shape with nothing changed,
the criteria catalogue and deadlines of a consortium manager, and the authorisation matrix."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db.models import F
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessLog
from yilian.accounts.models import ApiKey, hash_api_key
from yilian.referrals.models import FollowUpTask, Referral, ReferralCriterion, ReferralDeadline, ReferralStatus
from yilian.referrals.services import referral_accept
from yilian.referrals.testing import clinic_slot, coordinator, lead, refer_down, refer_up
from yilian.scheduling.models import Booking, SlotPool
from yilian.scheduling.services import bed_set_closed
from yilian.scheduling.testing import bed, make_ward
from yilian.testing.matrix import DEFAULT_WATCHED, Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

S = ReferralStatus
URL = "/api/v1/referrals"
SHAPE = {"code", "message", "message_en", "fields"}
WATCHED = (
    *DEFAULT_WATCHED,
    "referrals.Referral",
    "referrals.ReferralEvent",
    "referrals.FollowUpTask",
    "referrals.ReferralCriterion",
    "referrals.ReferralDeadline",
    "scheduling.Booking",
    "scheduling.SlotPool",
)


def _post(client: Client, url: str, body: dict[str, Any] | None = None, method: str = "post") -> Any:
    return getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")


def _up_body(world: World, **extra: Any) -> dict[str, Any]:
    return {
        "patient": str(world.patients["at_b"].uuid),
        "direction": "up",
        "urgency": "urgent",
        "destination_institution": str(world.a.uuid),
        "destination_department": str(world.cardiology.uuid),
        "reason": "血压控制不佳",
        "diagnosis_name": "原发性高血压",
        "diagnosis_code": "I10",
        **extra,
    }


def _state() -> tuple[Any, ...]:
    return (
        list(Referral.objects.order_by("pk").values_list("status", "booking_id", "accepted_at", "ended_at")),
        list(Booking.objects.order_by("pk").values_list("status", flat=True)),
        list(SlotPool.objects.order_by("pk").values_list("booked", flat=True)),
        FollowUpTask.objects.count(),
    )


# --- the lifecycle over HTTP -------------------------------------------------------------------------


def test_refer_up_accept_with_a_slot_arrive_and_complete(world: World, login) -> None:  # type: ignore[no-untyped-def]
    township, receiver = login("township_clinician"), login("lead_clinician")
    criterion = ReferralCriterion.objects.filter(disease="hypertension", direction="up").first()
    assert criterion is not None
    created = _post(township, URL, _up_body(world, criteria=[str(criterion.uuid)]))
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "submitted" and body["is_sender"] and not body["is_receiver"]
    assert body["criteria"][0]["text"] == criterion.text
    assert body["accept_by"] and body["events"][0]["kind"] == "submitted"
    key = body["id"]

    inbox = receiver.get(URL, {"box": "inbox", "status": "submitted"}).json()
    assert [r["id"] for r in inbox["items"]] == [key]
    assert township.get(URL, {"box": "inbox"}).json()["count"] == 0
    assert township.get(URL, {"box": "outbox", "direction": "up", "urgency": "urgent"}).json()["count"] == 1
    assert township.get(URL, {"box": "outbox", "overdue": "true"}).json()["count"] == 0
    assert AccessLog.objects.filter(patient=world.patients["at_b"], user=world.user("lead_clinician")).exists()

    slot = clinic_slot(world)
    accepted = _post(
        receiver,
        f"{URL}/{key}/accept",
        {"slot": str(slot.uuid), "note": "同意接收", "instructions": "请带既往病历和医保卡"},
    )
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["status"] == "scheduled" and accepted.json()["booking_id"]
    assert accepted.json()["instructions"] == "请带既往病历和医保卡"
    assert Booking.objects.get(uuid=accepted.json()["booking_id"]).patient == world.patients["at_b"]

    arrived = _post(receiver, f"{URL}/{key}/arrive")
    assert arrived.status_code == 200 and arrived.json()["status"] == "arrived"
    done = _post(receiver, f"{URL}/{key}/complete", {"result_summary": "调整降压方案，两周后复诊"})
    assert done.status_code == 200 and done.json()["status"] == "completed"
    detail = township.get(f"{URL}/{key}").json()
    assert detail["result_summary"] == "调整降压方案，两周后复诊"
    assert [e["kind"] for e in detail["events"]] == ["submitted", "accepted", "scheduled", "arrived", "completed"]


def test_down_referral_needs_follow_ups_which_the_doctor_then_closes(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_down(world)
    township = login("township_clinician")
    no_tasks = _post(township, f"{URL}/{referral.uuid}/accept", {})
    assert no_tasks.status_code == 422 and "follow_ups" in no_tasks.json()["fields"]
    outsider = {"responsible": str(world.user("lead_clinician").uuid), "due_date": "2099-01-01", "what_to_check": "血压"}
    wrong = _post(township, f"{URL}/{referral.uuid}/accept", {"follow_ups": [outsider]})
    assert wrong.status_code == 422 and "follow_ups.0.responsible" in wrong.json()["fields"]
    assert Referral.objects.get().status == S.SUBMITTED
    task = {"responsible": str(world.user("township_clinician").uuid), "due_date": "2099-01-01", "what_to_check": "血压、用药"}
    accepted = _post(township, f"{URL}/{referral.uuid}/accept", {"follow_ups": [task]})
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["status"] == "accepted" and len(accepted.json()["follow_ups"]) == 1
    mine = township.get(f"{URL}/follow-ups").json()
    assert mine["count"] == 1 and mine["items"][0]["what_to_check"] == "血压、用药"
    task_id = mine["items"][0]["id"]
    assert login("lead_clinician").get(f"{URL}/follow-ups").json()["count"] == 0
    done = _post(township, f"{URL}/follow-ups/{task_id}/done", {"result": "血压 132/84"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    again = _post(township, f"{URL}/follow-ups/{task_id}/done", {"result": "再次"})
    assert again.status_code == 422 and set(again.json()) == SHAPE
    more = _post(township, f"{URL}/{referral.uuid}/follow-ups", task | {"due_date": "2099-02-01"})
    assert more.status_code == 201 and more.json()["due_date"] == "2099-02-01"


def test_the_coordinator_board_and_the_destination_suggestion(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    Referral.objects.filter(pk=referral.pk).update(accept_by=timezone.now() - dt.timedelta(minutes=5))
    coordinator(world)
    board = login("coordinator").get(URL, {"box": "board", "overdue": "true"}).json()
    assert [(r["id"], r["overdue"]) for r in board["items"]] == [(str(referral.uuid), True)]
    assert login("lead_clinician").get(URL, {"box": "board"}).status_code == 403
    clinic_slot(world)
    suggestions = login("township_clinician").get(f"{URL}/destinations", {"direction": "up"})
    assert suggestions.status_code == 200
    first = suggestions.json()[0]
    assert first["institution"]["name"] == "台山市人民医院" and first["reasons"]
    assert any(s["department"] and s["free_units"] for s in suggestions.json())
    bad = login("township_clinician").get(f"{URL}/destinations", {"direction": "sideways"})
    assert bad.status_code == 422 and set(bad.json()) == SHAPE
    window = login("township_clinician").get(
        f"{URL}/destinations", {"direction": "up", "date_from": "2026-01-01", "date_to": "2027-01-01"}
    )
    assert window.status_code == 422


# --- bad input: 4xx in the error shape, nothing changed -----------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"reason": "长" * 1001}, 422, "reason"),
        ({"diagnosis_name": ""}, 422, "diagnosis_name"),
        ({"diagnosis_code": "Q99.99X"}, 422, "diagnosis_code"),
        ({"clinical_summary": "x" * 4001}, 422, "clinical_summary"),
        ({"reason": "含\x00空字符"}, 422, "reason"),
        ({"direction": "sideways"}, 422, "direction"),
        ({"urgency": "whenever"}, 422, "urgency"),
        ({"destination_institution": "T"}, 422, "destination_institution"),  # another consortium (filled in below)
        ({"destination_institution": "C"}, 422, "direction"),  # a township is not a level up
        ({"destination_institution": "00000000-0000-0000-0000-000000000000"}, 422, "destination_institution"),
        ({"patient": "AT_T"}, 422, "patient"),  # a patient the sender cannot see
        ({"criteria": ["00000000-0000-0000-0000-000000000000"]}, 422, "criteria"),
        ({"criteria": ["00000000-0000-0000-0000-000000000000"] * 51}, 422, "criteria"),
        ({"required_capability": "pci"}, 422, "required_capability"),  # A has no PCI in this world
        ({"wanted_from": "2099-02-01", "wanted_to": "2099-01-01"}, 422, "wanted_to"),
        ({"capacity": 5}, 422, "capacity"),
    ],
)
def test_bad_submissions_are_refused_and_write_nothing(world: World, login, change, status, field) -> None:  # type: ignore[no-untyped-def]
    lookup = {"T": str(world.t.uuid), "C": str(world.c.uuid), "AT_T": str(world.patients["at_t"].uuid)}
    change = {k: lookup.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    response = _post(login("township_clinician"), URL, _up_body(world, **change))
    assert response.status_code == status, response.content
    assert set(response.json()) == SHAPE
    assert field in response.json()["fields"], response.json()
    assert not Referral.objects.exists()


def test_malformed_json_huge_numbers_and_page_sizes(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    broken = client.post(URL, data=b"{not json", content_type="application/json")
    assert broken.status_code == 400 and set(broken.json()) == SHAPE
    assert client.get(URL, {"page_size": 100000}).status_code == 400
    assert client.get(URL, {"page": 10**12}).status_code == 422
    assert client.get(URL, {"box": "everything"}).status_code == 422
    referral = refer_up(world)
    receiver = login("lead_clinician")
    huge = _post(receiver, f"{URL}/{referral.uuid}/accept", {"bed_hours": 10**12})
    assert huge.status_code == 422 and "bed_hours" in huge.json()["fields"]
    tasks = [{"responsible": str(world.user("lead_clinician").uuid), "due_date": "2099-01-01", "what_to_check": "x"}] * 13
    assert _post(receiver, f"{URL}/{referral.uuid}/accept", {"follow_ups": tasks}).status_code == 422
    assert client.get(f"{URL}/not-a-uuid").status_code == 404
    assert Referral.objects.get().status == S.SUBMITTED


def test_duplicate_open_referral_is_a_conflict(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    assert _post(client, URL, _up_body(world)).status_code == 201
    again = _post(client, URL, _up_body(world))
    assert again.status_code == 409 and set(again.json()) == SHAPE
    assert Referral.objects.count() == 1


def test_wrong_state_wrong_side_taken_slot_and_closed_bed_change_nothing(world: World, login) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    township, receiver = login("township_clinician"), login("lead_clinician")
    slot = clinic_slot(world)
    ward = make_ward(world)
    before = _state()
    # Wrong side: the sender accepts, the receiver cancels.
    side = _post(township, f"{URL}/{referral.uuid}/accept", {})
    assert side.status_code == 403 and set(side.json()) == SHAPE
    assert _post(receiver, f"{URL}/{referral.uuid}/cancel", {"reason": "不要了"}).status_code == 403
    # Wrong state: arrival and completion before acceptance.
    for step, body in (("arrive", {}), ("complete", {"result_summary": "x"})):
        response = _post(receiver, f"{URL}/{referral.uuid}/{step}", body)
        assert response.status_code == 422 and "当前状态" in response.json()["message"], step
    # A taken slot.
    SlotPool.objects.filter(slot=slot).update(booked=F("capacity"))
    taken = _post(receiver, f"{URL}/{referral.uuid}/accept", {"slot": str(slot.uuid)})
    assert taken.status_code == 409 and set(taken.json()) == SHAPE
    # A closed bed.
    closed = bed(ward, "01")
    bed_set_closed(actor=coordinator(world), bed=closed, closed=True)
    refused = _post(receiver, f"{URL}/{referral.uuid}/accept", {"bed": str(closed.uuid)})
    assert 400 <= refused.status_code < 500 and set(refused.json()) == SHAPE
    # A slot outside the receiving institution's scope does not exist for this body.
    missing = _post(receiver, f"{URL}/{referral.uuid}/accept", {"slot": "00000000-0000-0000-0000-000000000000"})
    assert missing.status_code == 422 and "slot" in missing.json()["fields"]
    # Reason required, bounded.
    assert _post(receiver, f"{URL}/{referral.uuid}/reject", {"reason": ""}).status_code == 422
    assert _post(receiver, f"{URL}/{referral.uuid}/reject", {"reason": "x" * 501}).status_code == 422
    SlotPool.objects.filter(slot=slot).update(booked=0)
    assert _state()[0] == before[0] and _state()[1:] == (before[1], [0] * len(before[2]), before[3])
    # Accepted: now rejecting is the wrong state.
    referral_accept(actor=lead(world), referral=referral)
    late = _post(receiver, f"{URL}/{referral.uuid}/reject", {"reason": "太晚"})
    assert late.status_code == 422 and Referral.objects.get().status == S.ACCEPTED


def test_member_system_keys_use_fhir_not_this_api(world: World) -> None:
    prefix, raw = ApiKey.generate_raw_key()
    ApiKey.objects.create(institution=world.b, name="HIS", prefix=prefix, key_digest=hash_api_key(raw))
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get(URL).status_code == 403
    assert _post(client, URL, _up_body(world)).status_code == 403
    assert not Referral.objects.exists()


# --- criteria and deadlines -----------------------------------------------------------------------------


def test_a_consortium_manager_edits_the_catalogue_of_the_consortium_it_leads(world: World, login) -> None:  # type: ignore[no-untyped-def]
    manager = login("consortium_manager")
    body = {"consortium": str(world.k1.uuid), "disease": "diabetes", "direction": "up", "text": "糖化血红蛋白 ≥ 9%"}
    created = _post(manager, f"{URL}/criteria", body)
    assert created.status_code == 201, created.content
    key = created.json()["id"]
    listed = login("township_clinician").get(f"{URL}/criteria", {"disease": "diabetes", "direction": "up"}).json()
    assert key in [c["id"] for c in listed["items"]]
    assert key not in [c["id"] for c in login("other_consortium_user").get(f"{URL}/criteria", {"page_size": 100}).json()["items"]]
    edited = _post(manager, f"{URL}/criteria/{key}", {"text": "糖化血红蛋白 ≥ 10%", "position": 3}, method="patch")
    assert edited.status_code == 200 and edited.json()["text"] == "糖化血红蛋白 ≥ 10%"
    assert _post(manager, f"{URL}/criteria/{key}", {"text": None}, method="patch").status_code == 422
    assert _post(manager, f"{URL}/criteria/{key}", {"position": 10**9}, method="patch").status_code == 422
    assert _post(manager, f"{URL}/criteria/{key}", {"required_capability": "warp"}, method="patch").status_code == 422
    capability = _post(manager, f"{URL}/criteria/{key}", {"required_capability": "pci"}, method="patch")
    assert capability.status_code == 200 and capability.json()["required_capability"] == "pci"
    assert _post(manager, f"{URL}/criteria/{key}/deactivate").json()["is_active"] is False
    listed = login("township_clinician").get(f"{URL}/criteria", {"disease": "diabetes", "direction": "up"}).json()
    assert key not in [c["id"] for c in listed["items"]]
    # Another consortium's catalogue, the county-wide seed and oversized text are refused.
    assert _post(manager, f"{URL}/criteria", body | {"consortium": str(world.k2.uuid)}).status_code == 422
    seed = ReferralCriterion.objects.filter(consortium__isnull=True).first()
    assert seed is not None
    assert _post(manager, f"{URL}/criteria/{seed.uuid}/deactivate").status_code == 404
    assert _post(manager, f"{URL}/criteria", body | {"text": "x" * 301}).status_code == 422
    assert ReferralCriterion.objects.filter(consortium__isnull=False).count() == 1


def test_deadlines_per_consortium(world: World, login) -> None:  # type: ignore[no-untyped-def]
    manager = login("consortium_manager")
    listed = login("township_clinician").get(f"{URL}/deadlines").json()
    assert {(d["consortium"]["name"], d["urgency"]) for d in listed} >= {("台山市人民医院医疗卫生共同体", "emergency")}
    assert all(d["is_default"] for d in listed)
    url = f"{URL}/deadlines/{world.k1.uuid}/urgent"
    response = _post(manager, url, {"accept_minutes": 120, "expire_minutes": 600}, method="put")
    assert response.status_code == 200 and response.json()["accept_minutes"] == 120
    assert _post(manager, url, {"accept_minutes": 600, "expire_minutes": 120}, method="put").status_code == 422
    assert _post(manager, url, {"accept_minutes": 10**12, "expire_minutes": 600}, method="put").status_code == 422
    minutes = {"accept_minutes": 60, "expire_minutes": 600}
    assert _post(manager, f"{URL}/deadlines/{world.k2.uuid}/urgent", minutes, method="put").status_code == 404
    assert _post(manager, f"{URL}/deadlines/{world.k1.uuid}/someday", minutes, method="put").status_code == 404
    assert ReferralDeadline.objects.count() == 1
    referral = refer_up(world, urgency="urgent")
    assert referral.accept_by - referral.submitted_at == dt.timedelta(minutes=120)


# --- the authorisation matrix -----------------------------------------------------------------------------


def _referral(w: World) -> Referral:
    return Referral.objects.get(direction="up")


def _ep(method: str, url: Any, data: Any = None) -> Endpoint:
    return Endpoint(method, url, data=data, json_body=data is not None)


CLINICIANS = ("lead_clinician", "township_clinician", "village_doctor", "other_consortium_user")
CANCEL = {"reason": "患者拒绝"}
CRITERION = {"disease": "other", "direction": "up", "text": "外伤"}
CLINICAL_DENIED: dict[str, int | set[int]] = {persona: {403, 404, 422} for persona in PERSONAS} | {"anonymous": 401}


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        (_ep("GET", lambda w: URL), dict.fromkeys(CLINICIANS, 200)),
        (_ep("GET", lambda w: f"{URL}/{_referral(w).uuid}"), {"lead_clinician": 200, "township_clinician": 200}),
        (
            _ep("POST", lambda w: URL, lambda w: _up_body(w, patient=str(w.patients["at_v"].uuid))),
            # B (township centre of V) refers V's patient; V's doctor then meets the open referral (409).
            {"township_clinician": 201, "village_doctor": 409},
        ),
        (_ep("POST", lambda w: f"{URL}/{_referral(w).uuid}/accept", lambda w: {}), {"lead_clinician": 200}),
        (_ep("POST", lambda w: f"{URL}/{_referral(w).uuid}/reject", lambda w: {"reason": "无床"}), {"lead_clinician": 200}),
        (_ep("POST", lambda w: f"{URL}/{_referral(w).uuid}/cancel", lambda w: CANCEL), {"township_clinician": 200}),
        (_ep("POST", lambda w: f"{URL}/{_referral(w).uuid}/arrive", lambda w: {}), {"lead_clinician": 422}),
        (
            _ep("POST", lambda w: f"{URL}/criteria", lambda w: {"consortium": str(w.k1.uuid), **CRITERION}),
            {"consortium_manager": 201},
        ),
        (
            _ep("PUT", lambda w: f"{URL}/deadlines/{w.k1.uuid}/routine", lambda w: {"accept_minutes": 60, "expire_minutes": 600}),
            {"consortium_manager": 200},
        ),
    ],
    ids=["list", "detail", "create", "accept", "reject", "cancel", "arrive", "criterion", "deadline"],
)
def test_api_matrix(world: World, endpoint: Endpoint, allowed: dict[str, int]) -> None:
    refer_up(world)
    run_matrix(world, endpoint, allowed=allowed, denied_status=CLINICAL_DENIED, watched=WATCHED)


def test_the_list_costs_the_same_for_one_referral_or_many(world: World, login, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    refer_up(world)
    client = login("township_clinician")
    with django_assert_max_num_queries(9):
        assert client.get(URL, {"box": "outbox"}).json()["count"] == 1
    refer_up(world, patient_key="at_v")
    for key in ("at_b", "at_v"):
        _post(
            client,
            URL,
            _up_body(
                world,
                patient=str(world.patients[key].uuid),
                direction="lateral",
                destination_institution=str(world.c.uuid),
                destination_department=None,
            ),
        )
    with django_assert_max_num_queries(9):  # the same as for one
        assert client.get(URL, {"box": "outbox"}).json()["count"] == 4
