"""A down referral acknowledged over FHIR: the receiving primary institution's HIS accepts the
referral's Task with its follow-up tasks contained in it (one transaction, ≥ 1 required), reads
them back as Tasks (partOf the referral's Task), adds more and records their results. And a
ServiceRequest sent again with the sender's own identifier returns the referral it made."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db.models import Model
from django.test import Client
from django.utils import timezone

from yilian.accounts.roles import Role
from yilian.interop.fhir.schema import validate
from yilian.interop.tests.fhir_his import fhir_get as _get
from yilian.interop.tests.fhir_his import fhir_outcome as _outcome
from yilian.interop.tests.fhir_his import fhir_send as _send
from yilian.interop.tests.fhir_his import his_key as _key
from yilian.notifications.models import Notification
from yilian.patients.models import Patient
from yilian.referrals.models import Direction, FollowUpTask, Referral, ReferralEvent, ReferralStatus
from yilian.referrals.services import FollowUpSpec, referral_accept, referral_submit
from yilian.referrals.testing import coordinator, lead, refer_down, township
from yilian.testing.world import World, add_membership, make_user

FOLLOW_UP = {"coding": [{"system": "urn:yilian:task-kind", "code": "follow-up"}]}


@pytest.fixture
def keys(world: World) -> dict[str, str]:
    """HIS keys: A (the lead hospital, sender of the down referral), B (the township, receiver),
    V (B's village clinic) and T (another consortium)."""
    return {name: _key(world, name) for name in ("a", "b", "v", "t")}


def _practitioner(world: World, persona: str) -> dict[str, str]:
    return {"reference": f"Practitioner/{world.user(persona).uuid}"}


def _due(days: int = 14) -> str:
    return (timezone.localdate() + dt.timedelta(days=days)).isoformat()


def _follow_up(world: World, key: str, responsible: str = "village_doctor", **change: Any) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": key,
        "status": "requested",
        "intent": "plan",
        "code": FOLLOW_UP,
        "owner": _practitioner(world, responsible),
        "restriction": {"period": {"end": _due()}},
        "description": "血压、用药依从性",
    } | change


def _acknowledge(world: World, referral: Referral, *follow_ups: dict[str, Any], owner: str = "township_clinician") -> dict:
    """The receiver's acceptance of a down referral, its follow-up tasks contained and named by input."""
    body: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(referral.uuid),
        "status": "accepted",
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral.uuid}"},
        "owner": _practitioner(world, owner),
        "note": [{"text": "已接收，安排家庭医生随访"}],
    }
    if follow_ups:
        body["contained"] = list(follow_ups)
        body["input"] = [{"type": FOLLOW_UP, "valueReference": {"reference": f"#{f['id']}"}} for f in follow_ups]
    return body


def _counts() -> dict[str, int]:
    models: tuple[type[Model], ...] = (FollowUpTask, ReferralEvent, Notification)
    return {m.__name__: m._default_manager.count() for m in models} | {
        "submitted": Referral.objects.filter(status=ReferralStatus.SUBMITTED).count()
    }


def test_the_township_his_acknowledges_a_down_referral_with_follow_up_tasks(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = refer_down(world)
    url = f"/fhir/Task/{referral.uuid}"
    body = _acknowledge(
        world,
        referral,
        _follow_up(world, "fu1"),  # the village doctor of B's clinic V
        _follow_up(world, "fu2", "township_clinician", description="复查血脂", restriction={"period": {"end": _due(30)}}),
    )
    assert not validate(body)

    accepted = _send(client, keys["b"], "put", url, body)

    assert accepted.status_code == 200, accepted.content
    task = accepted.json()
    assert not validate(task)
    assert task["status"] == "accepted" and task["businessStatus"]["coding"][0]["code"] == "accepted"
    listed = [o for o in task["output"] if o["type"]["coding"][0]["code"] == "follow-up"]
    assert len(listed) == 2
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ACCEPTED and referral.accepted_by == world.user("township_clinician")
    tasks = list(FollowUpTask.objects.order_by("due_date"))
    assert [(t.responsible, t.institution, t.what_to_check) for t in tasks] == [
        (world.user("village_doctor"), world.b, "血压、用药依从性"),
        (world.user("township_clinician"), world.b, "复查血脂"),
    ]
    assert tasks[0].due_date.isoformat() == _due() and tasks[0].created_by == world.user("township_clinician")
    assert [o["valueReference"]["reference"] for o in listed] == [f"Task/{t.uuid}" for t in tasks]

    # The same acceptance again is a safe retry: nothing more is written.
    again = _send(client, keys["b"], "put", url, body)
    assert again.status_code == 200 and FollowUpTask.objects.count() == 2

    # Each follow-up task reads as a Task of its own, part of the referral's Task.
    first = _get(client, keys["b"], f"/fhir/Task/{tasks[0].uuid}")
    assert first.status_code == 200, first.content
    resource = first.json()
    assert not validate(resource)
    assert resource["partOf"] == [{"reference": f"Task/{referral.uuid}"}]
    assert resource["basedOn"] == [{"reference": f"ServiceRequest/{referral.uuid}"}]
    assert resource["owner"]["reference"] == f"Practitioner/{world.user('village_doctor').uuid}"
    assert (resource["status"], resource["description"], resource["restriction"]["period"]["end"]) == (
        "requested",
        "血压、用药依从性",
        _due(),
    )
    # The sending hospital reads the plan on the referral's Task and searches its follow-up tasks.
    seen = _get(client, keys["a"], url).json()
    assert sum(1 for o in seen["output"] if o["type"]["coding"][0]["code"] == "follow-up") == 2
    found = _get(client, keys["a"], "/fhir/Task", {"part-of": f"Task/{referral.uuid}"}).json()
    assert found["total"] == 2 and all(not validate(e["resource"]) for e in found["entry"])
    # The village clinic's HIS finds its doctor's follow-up task (not the referral itself).
    mine = _get(
        client,
        keys["v"],
        "/fhir/Task",
        {"code": "urn:yilian:task-kind|follow-up", "owner": f"Practitioner/{world.user('village_doctor').uuid}"},
    ).json()
    assert [e["resource"]["id"] for e in mine["entry"]] == [str(tasks[0].uuid)]
    assert _get(client, keys["v"], url).status_code == 404
    # A search over referral Tasks never mixes in follow-ups, and a stranger sees none.
    assert _get(client, keys["b"], "/fhir/Task", {"_id": str(tasks[0].uuid)}).json()["total"] == 0
    assert _get(client, keys["t"], "/fhir/Task", {"code": "follow-up"}).json()["total"] == 0
    assert _get(client, keys["t"], f"/fhir/Task/{tasks[0].uuid}").status_code == 404


@pytest.mark.parametrize(
    ("case", "status", "where"),
    [
        ("none", 422, "follow_ups"),
        ("not named", 422, "Task.contained[0]"),
        ("named but missing", 422, "Task.input[0]"),
        ("no owner", 422, "Task.contained[0].owner"),
        ("unknown owner", 422, "Task.contained[0].owner"),
        ("owner by display", 422, "Task.contained[0].owner"),
        ("no due date", 422, "Task.contained[0].restriction.period.end"),
        ("bad due date", 400, "Task.contained[0].restriction.period.end"),  # not an R4 dateTime
        ("past due date", 422, "due_date"),
        ("blank description", 422, "Task.contained[0].description"),
        ("second one bad", 422, "Task.contained[1].description"),
    ],
)
def test_an_acknowledgment_without_a_good_follow_up_task_is_refused_and_changes_nothing(
    world: World, keys, client: Client, case: str, status: int, where: str
) -> None:  # type: ignore[no-untyped-def]
    referral = refer_down(world)
    good = _follow_up(world, "fu1")
    bodies = {
        "none": _acknowledge(world, referral),
        "not named": _acknowledge(world, referral) | {"contained": [good]},
        "named but missing": _acknowledge(world, referral)
        | {"input": [{"type": FOLLOW_UP, "valueReference": {"reference": "#nope"}}]},
        "no owner": _acknowledge(world, referral, {k: v for k, v in good.items() if k != "owner"}),
        "unknown owner": _acknowledge(
            world, referral, good | {"owner": {"reference": "Practitioner/00000000-0000-0000-0000-000000000000"}}
        ),
        "owner by display": _acknowledge(world, referral, good | {"owner": {"display": "陈伯"}}),
        "no due date": _acknowledge(world, referral, good | {"restriction": {}}),
        "bad due date": _acknowledge(world, referral, good | {"restriction": {"period": {"end": "next week"}}}),
        "past due date": _acknowledge(world, referral, good | {"restriction": {"period": {"end": _due(-1)}}}),
        "blank description": _acknowledge(world, referral, good | {"description": "  "}),
        "second one bad": _acknowledge(
            world, referral, good, {k: v for k, v in _follow_up(world, "fu2").items() if k != "description"}
        ),
    }
    before = _counts()

    answer = _send(client, keys["b"], "put", f"/fhir/Task/{referral.uuid}", bodies[case])

    _outcome(answer, status, where)
    assert _counts() == before
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.SUBMITTED and referral.accepted_by is None


def test_the_wrong_side_or_the_wrong_doctor_cannot_acknowledge(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = refer_down(world)
    url = f"/fhir/Task/{referral.uuid}"
    before = _counts()
    # The sending hospital's HIS, as its own cardiologist: the sender is not the receiver.
    _outcome(
        _send(client, keys["a"], "put", url, _acknowledge(world, referral, _follow_up(world, "f"), owner="lead_clinician")), 403
    )
    # Another consortium's HIS cannot name B's doctor, and its own doctor does not see the referral.
    _outcome(_send(client, keys["t"], "put", url, _acknowledge(world, referral, _follow_up(world, "f"))), 403)
    stranger = _acknowledge(world, referral, _follow_up(world, "f"), owner="other_consortium_user")
    _outcome(_send(client, keys["t"], "put", url, stranger), 404)
    # B's HIS, with a responsible doctor who does not work at B or its village clinics.
    for outsider in ("lead_clinician", "other_consortium_user"):
        wrong = _acknowledge(world, referral, _follow_up(world, "f", outsider))
        _outcome(_send(client, keys["b"], "put", url, wrong), 422, "responsible")
    assert _counts() == before
    assert Referral.objects.get(pk=referral.pk).status == ReferralStatus.SUBMITTED


def refer_down_of(world: World, patient: Patient) -> Referral:
    """A down referral of `patient` from A to B."""
    return referral_submit(
        actor=lead(world),
        patient=patient,
        direction=Direction.DOWN,
        destination_institution=world.b,
        reason="病情稳定，转回基层随访",
        diagnosis_name="原发性高血压",
    )


def _accepted_down(world: World, patient: Patient | None = None) -> Referral:
    """A down referral from A that B accepted with one follow-up task (of `patient`, else at_a)."""
    referral = refer_down(world) if patient is None else refer_down_of(world, patient)
    spec = FollowUpSpec(
        responsible=world.user("township_clinician"), due_date=timezone.localdate() + dt.timedelta(days=7), what_to_check="血压"
    )
    return referral_accept(actor=township(world), referral=referral, follow_ups=[spec])


def test_the_receiver_adds_a_follow_up_task_and_the_doctor_records_its_result(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = _accepted_down(world)
    new = _follow_up(world, "ignored", requester=_practitioner(world, "township_clinician"), description="复查空腹血糖")
    new = {k: v for k, v in new.items() if k != "id"} | {"partOf": [{"reference": f"Task/{referral.uuid}"}]}

    created = _send(client, keys["b"], "post", "/fhir/Task", new)

    assert created.status_code == 201, created.content
    task = FollowUpTask.objects.get(what_to_check="复查空腹血糖")
    assert created["Location"].endswith(f"/fhir/Task/{task.uuid}")
    assert task.responsible == world.user("village_doctor") and task.referral == referral
    assert not validate(created.json())

    # The sender's HIS cannot add one (403), a stranger's referral is not found, a bad one is 422.
    from_sender = new | {"requester": _practitioner(world, "lead_clinician")}
    _outcome(_send(client, keys["a"], "post", "/fhir/Task", from_sender), 403)
    elsewhere = new | {"partOf": [{"reference": "Task/00000000-0000-0000-0000-000000000000"}]}
    _outcome(_send(client, keys["b"], "post", "/fhir/Task", elsewhere), 404)
    _outcome(_send(client, keys["b"], "post", "/fhir/Task", {k: v for k, v in new.items() if k != "partOf"}), 422, "Task.partOf")
    _outcome(_send(client, keys["b"], "post", "/fhir/Task", new | {"owner": _practitioner(world, "lead_clinician")}), 422)
    assert FollowUpTask.objects.count() == 2

    # The village doctor's HIS records the result.
    done = {
        "resourceType": "Task",
        "id": str(task.uuid),
        "status": "completed",
        "intent": "plan",
        "owner": _practitioner(world, "village_doctor"),
        "output": [{"type": {"text": "result"}, "valueString": "空腹血糖 6.1 mmol/L"}],
    }
    answer = _send(client, keys["v"], "put", f"/fhir/Task/{task.uuid}", done)
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "completed" and answer.json()["output"][0]["valueString"] == "空腹血糖 6.1 mmol/L"
    task.refresh_from_db()
    assert (task.status, task.result) == ("done", "空腹血糖 6.1 mmol/L")
    assert _send(client, keys["v"], "put", f"/fhir/Task/{task.uuid}", done).status_code == 200  # a safe retry
    # Nobody at T records it.
    strange = done | {"owner": _practitioner(world, "other_consortium_user")}
    _outcome(_send(client, keys["t"], "put", f"/fhir/Task/{task.uuid}", strange), 404)


def test_a_follow_up_task_cannot_be_added_before_acceptance(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = refer_down(world)
    new = {k: v for k, v in _follow_up(world, "x").items() if k != "id"} | {
        "requester": _practitioner(world, "township_clinician"),
        "partOf": [{"reference": f"Task/{referral.uuid}"}],
    }
    _outcome(_send(client, keys["b"], "post", "/fhir/Task", new), 422)
    assert not FollowUpTask.objects.exists()


def test_the_capability_statement_documents_follow_up_tasks(client: Client, db: None) -> None:
    resources = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    task = resources["Task"]
    assert {i["code"] for i in task["interaction"]} == {"create", "update", "read", "search-type"}
    assert {"part-of", "code"} <= {p["name"] for p in task["searchParam"]}
    assert "restriction.period.end" in task["documentation"] and "contained" in task["documentation"]
    assert "identifier" in resources["ServiceRequest"]["documentation"]
    assert {"part-of", "code", "identifier"} <= {p["name"] for p in task["searchParam"]}
    for name in ("ServiceRequest", "Task"):
        assert resources[name]["conditionalCreate"] is True and "If-None-Exist" in resources[name]["documentation"]


# --- ServiceRequest sent again with the sender's own identifier -------------------------------------------

HIS_ORDER = {"system": "urn:oid:2.16.156.10011.1.440781.b", "value": "ZL-2026-0001"}


def _service_request(world: World, **change: Any) -> dict[str, Any]:
    body = {
        "resourceType": "ServiceRequest",
        "identifier": [HIS_ORDER],
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "subject": {"reference": f"Patient/{world.patients['at_b'].uuid}"},
        "requester": _practitioner(world, "township_clinician"),
        "performer": [{"reference": f"Organization/{world.a.uuid}"}, {"reference": f"Organization/{world.cardiology.uuid}"}],
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}], "text": "原发性高血压"}],
        "note": [{"text": "血压控制不佳，连续两次随访未达标"}],
    }
    return body | change


def _written() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (Referral, ReferralEvent, Notification)}


def test_a_resent_service_request_returns_the_referral_it_made(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    first = _send(client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world))
    assert first.status_code == 201, first.content
    referral = Referral.objects.get()
    assert (referral.source_system, referral.source_identifier) == (HIS_ORDER["system"], HIS_ORDER["value"])
    assert HIS_ORDER in first.json()["identifier"] and not validate(first.json())
    written = _written()

    again = _send(client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world))

    assert again.status_code == 200, again.content
    assert again["Location"] == first["Location"] and again.json()["id"] == str(referral.uuid)
    assert _written() == written
    # Still the same referral once the receiver has moved it on; the resend changes nothing.
    Referral.objects.filter(pk=referral.pk).update(status=ReferralStatus.ACCEPTED)
    later = _send(client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world))
    assert later.status_code == 200 and later.json()["id"] == str(referral.uuid)
    assert _written() == written and Referral.objects.get().status == ReferralStatus.ACCEPTED
    # The HIS finds it by its own identifier.
    search = _get(client, keys["b"], "/fhir/ServiceRequest", {"identifier": f"{HIS_ORDER['system']}|{HIS_ORDER['value']}"})
    assert search.json()["total"] == 1
    assert _get(client, keys["b"], "/fhir/ServiceRequest", {"identifier": f"urn:x|{HIS_ORDER['value']}"}).json()["total"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"subject": {"reference": "Patient/AT_V"}},
        {"note": [{"text": "另一个原因"}]},
        {"priority": "routine"},
        {"performer": [{"reference": "Organization/A"}]},  # no department this time
    ],
)
def test_the_identifier_of_another_referral_is_a_conflict(world: World, keys, client: Client, change: dict) -> None:  # type: ignore[no-untyped-def]
    assert _send(client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world)).status_code == 201
    referral = Referral.objects.get()
    written = _written()
    text = json.dumps(change).replace("Patient/AT_V", f"Patient/{world.patients['at_v'].uuid}")
    text = text.replace("Organization/A", f"Organization/{world.a.uuid}")

    answer = _send(client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world, **json.loads(text)))

    body = _outcome(answer, 409)
    assert referral.number in body["issue"][0]["diagnostics"] and HIS_ORDER["value"] in body["issue"][0]["diagnostics"]
    assert _written() == written


def test_identifiers_are_per_sending_institution_and_a_send_without_one_is_not_deduplicated(
    world: World, keys, client: Client
) -> None:  # type: ignore[no-untyped-def]
    assert _send(client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world)).status_code == 201
    # The lead hospital's HIS uses the same identifier for its own (down) referral: a referral of its own.
    down = _service_request(
        world,
        subject={"reference": f"Patient/{world.patients['at_a'].uuid}"},
        requester=_practitioner(world, "lead_clinician"),
        performer=[{"reference": f"Organization/{world.b.uuid}"}],
        priority="routine",
    )
    assert _send(client, keys["a"], "post", "/fhir/ServiceRequest", down).status_code == 201
    assert Referral.objects.count() == 2
    # Without an identifier a second send is the second open referral of the patient: 409, as before.
    plain = _service_request(world, identifier=[], subject={"reference": f"Patient/{world.patients['at_v'].uuid}"})
    assert _send(client, keys["b"], "post", "/fhir/ServiceRequest", plain).status_code == 201
    _outcome(_send(client, keys["b"], "post", "/fhir/ServiceRequest", plain), 409)
    # An identifier too long to keep is refused.
    long = _service_request(world, identifier=[{"system": "urn:x", "value": "x" * 65}])
    _outcome(_send(client, keys["b"], "post", "/fhir/ServiceRequest", long), 422, "ServiceRequest.identifier[0]")
    assert Referral.objects.count() == 3


# --- a follow-up Task sent again with the sender's own identifier -----------------------------------------

HIS_TASK = {"system": "urn:oid:2.16.156.10011.1.440781.b.task", "value": "SF-2026-0001"}


def _new_follow_up(world: World, referral: Referral, **change: Any) -> dict[str, Any]:
    """A follow-up Task B's HIS posts for an accepted referral, with its own identifier."""
    body = {k: v for k, v in _follow_up(world, "x").items() if k != "id"} | {
        "identifier": [HIS_TASK],
        "requester": _practitioner(world, "township_clinician"),
        "partOf": [{"reference": f"Task/{referral.uuid}"}],
        "description": "复查空腹血糖",
    }
    return body | change


def _follow_ups_written() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (FollowUpTask, ReferralEvent, Notification)}


def test_a_resent_follow_up_task_returns_the_task_it_made(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = _accepted_down(world)
    first = _send(client, keys["b"], "post", "/fhir/Task", _new_follow_up(world, referral))
    assert first.status_code == 201, first.content
    task = FollowUpTask.objects.get(what_to_check="复查空腹血糖")
    assert (task.source_institution, task.source_system, task.source_identifier) == (world.b, *HIS_TASK.values())
    assert first.json()["identifier"] == [HIS_TASK] and not validate(first.json())
    written = _follow_ups_written()

    again = _send(client, keys["b"], "post", "/fhir/Task", _new_follow_up(world, referral))

    assert again.status_code == 200, again.content
    assert again["Location"] == first["Location"] and again.json()["id"] == str(task.uuid)
    assert _follow_ups_written() == written
    # Still the same task once the doctor has recorded its result; the resend changes nothing.
    FollowUpTask.objects.filter(pk=task.pk).update(status="done", result="6.1")
    later = _send(client, keys["b"], "post", "/fhir/Task", _new_follow_up(world, referral))
    assert later.status_code == 200 and later.json()["status"] == "completed"
    assert _follow_ups_written() == written
    # The HIS finds it by its own identifier.
    token = f"{HIS_TASK['system']}|{HIS_TASK['value']}"
    found = _get(client, keys["b"], "/fhir/Task", {"code": "follow-up", "identifier": token}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [str(task.uuid)]
    assert _get(client, keys["b"], "/fhir/Task", {"code": "follow-up", "identifier": "urn:x|SF-2026-0001"}).json()["total"] == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"description": "复查血脂"}, "随访内容"),
        ({"restriction": {"period": {"end": "DUE30"}}}, "随访日期"),
        ({"owner": {"reference": "Practitioner/TOWNSHIP"}}, "责任医生"),
        ({"requester": {"reference": "Practitioner/TOWNSHIP_NURSE"}}, "创建人"),
        ({"partOf": [{"reference": "Task/OTHER"}]}, "转诊单"),
    ],
)
def test_the_identifier_of_another_follow_up_task_is_a_conflict(
    world: World, keys, client: Client, change: dict, named: str
) -> None:  # type: ignore[no-untyped-def]
    referral = _accepted_down(world)
    assert _send(client, keys["b"], "post", "/fhir/Task", _new_follow_up(world, referral)).status_code == 201
    other = _accepted_down(world, Patient.objects.create(name="另一位居民", home_institution=world.a))
    nurse = make_user("township_nurse", "黄护士")
    add_membership(nurse, Role.NURSE, institution=world.b)
    written = _follow_ups_written()
    text = json.dumps(change).replace("DUE30", _due(30)).replace("Task/OTHER", f"Task/{other.uuid}")
    text = text.replace("Practitioner/TOWNSHIP_NURSE", f"Practitioner/{nurse.uuid}")
    text = text.replace("Practitioner/TOWNSHIP", f"Practitioner/{world.user('township_clinician').uuid}")

    answer = _send(client, keys["b"], "post", "/fhir/Task", _new_follow_up(world, referral, **json.loads(text)))

    body = _outcome(answer, 409)
    diagnostics = body["issue"][0]["diagnostics"]
    assert HIS_TASK["value"] in diagnostics and referral.number in diagnostics and named in diagnostics, diagnostics
    assert _follow_ups_written() == written


def test_follow_up_identifiers_are_per_sending_institution_and_a_send_without_one_is_not_deduplicated(
    world: World, keys, client: Client
) -> None:  # type: ignore[no-untyped-def]
    referral = _accepted_down(world)
    assert _send(client, keys["b"], "post", "/fhir/Task", _new_follow_up(world, referral)).status_code == 201
    # The lead hospital's referral centre (a receiver of the consortium's referrals) uses the same
    # identifier in its own system: a task of its own.
    coordinator(world)
    from_a = _new_follow_up(world, referral, requester=_practitioner(world, "coordinator"), description="复查心电图")
    assert _send(client, keys["a"], "post", "/fhir/Task", from_a).status_code == 201
    assert FollowUpTask.objects.filter(source_identifier=HIS_TASK["value"]).count() == 2
    # Without an identifier every send is a new task, as before.
    plain = _new_follow_up(world, referral, identifier=[], description="复查尿常规")
    assert [_send(client, keys["b"], "post", "/fhir/Task", plain).status_code for _ in range(2)] == [201, 201]
    assert FollowUpTask.objects.filter(what_to_check="复查尿常规").count() == 2
    # An identifier too long to keep is refused, and writes nothing.
    before = _follow_ups_written()
    long = _new_follow_up(world, referral, identifier=[{"system": "urn:x", "value": "x" * 65}])
    _outcome(_send(client, keys["b"], "post", "/fhir/Task", long), 422, "Task.identifier[0]")
    assert _follow_ups_written() == before


def test_a_follow_up_task_contained_in_the_acknowledgment_keeps_its_identifier(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = refer_down(world)
    contained = _follow_up(world, "fu1") | {"identifier": [HIS_TASK]}
    acknowledged = _send(client, keys["b"], "put", f"/fhir/Task/{referral.uuid}", _acknowledge(world, referral, contained))
    assert acknowledged.status_code == 200, acknowledged.content
    task = FollowUpTask.objects.get()
    assert (task.source_institution, task.source_identifier) == (world.b, HIS_TASK["value"])
    written = _follow_ups_written()
    # The HIS, not sure the acknowledgment went through, posts the same task on its own: the same task.
    alone = {k: v for k, v in contained.items() if k != "id"} | {
        "requester": _practitioner(world, "township_clinician"),
        "partOf": [{"reference": f"Task/{referral.uuid}"}],
    }
    again = _send(client, keys["b"], "post", "/fhir/Task", alone)
    assert again.status_code == 200 and again.json()["id"] == str(task.uuid)
    assert _follow_ups_written() == written
    # An acknowledgment whose follow-up task carries an identifier already used is refused whole.
    other = refer_down_of(world, Patient.objects.create(name="另一位居民", home_institution=world.a))
    written = _follow_ups_written()
    used = _acknowledge(world, other, _follow_up(world, "fu9") | {"identifier": [HIS_TASK]})
    _outcome(_send(client, keys["b"], "put", f"/fhir/Task/{other.uuid}", used), 409)
    assert _follow_ups_written() == written and Referral.objects.get(pk=other.pk).status == ReferralStatus.SUBMITTED


# --- If-None-Exist (FHIR conditional create) on the sender's identifier ------------------------------------


def _conditional(client: Client, key: str, url: str, body: dict[str, Any], header: str) -> Any:
    return client.post(
        url,
        data=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {key}", "If-None-Exist": header},
    )


def test_if_none_exist_on_the_identifier_creates_once_and_then_returns_the_match_as_it_is(
    world: World, keys, client: Client
) -> None:  # type: ignore[no-untyped-def]
    referral = _accepted_down(world)
    header = f"identifier={HIS_TASK['system']}|{HIS_TASK['value']}"
    first = _conditional(client, keys["b"], "/fhir/Task", _new_follow_up(world, referral), header)
    assert first.status_code == 201, first.content
    task = FollowUpTask.objects.get(source_identifier=HIS_TASK["value"])
    written = _follow_ups_written()
    # A match is returned as it is, whatever this send says (FHIR: the server ignores the post).
    changed = _new_follow_up(world, referral, description="复查血脂")
    for form in (header, f"Task?{header}", f"identifier={HIS_TASK['value']}"):
        again = _conditional(client, keys["b"], "/fhir/Task", changed, form)
        assert again.status_code == 200, (form, again.content)
        assert again.json()["id"] == str(task.uuid) and again.json()["description"] == "复查空腹血糖"
        assert again["Location"] == first["Location"]
    assert _follow_ups_written() == written
    # The same for a ServiceRequest.
    order = _service_request(world)
    order_header = f"identifier={HIS_ORDER['system']}|{HIS_ORDER['value']}"
    assert _conditional(client, keys["b"], "/fhir/ServiceRequest", order, order_header).status_code == 201
    other = _service_request(world, note=[{"text": "另一个原因"}])
    assert _conditional(client, keys["b"], "/fhir/ServiceRequest", other, order_header).status_code == 200
    assert Referral.objects.filter(source_identifier=HIS_ORDER["value"]).count() == 1


@pytest.mark.parametrize(
    "header",
    [
        "patient=Patient/x",  # a search other than the identifier
        "identifier=urn:oid:2.16.156.10011.1.440781.b.task|SF-2026-0001&status=requested",
        "identifier=a|1,b|2",
        "identifier=urn:oid:2.16.156.10011.1.440781.b.task|SF-OTHER",  # not the resource's identifier
        "identifier=urn:x|SF-2026-0001",  # another system
        "ServiceRequest?identifier=urn:oid:2.16.156.10011.1.440781.b.task|SF-2026-0001",  # another type
    ],
)
def test_an_if_none_exist_that_is_not_the_resources_identifier_is_refused(
    world: World, keys, client: Client, header: str
) -> None:  # type: ignore[no-untyped-def]
    referral = _accepted_down(world)
    before = _follow_ups_written()

    answer = _conditional(client, keys["b"], "/fhir/Task", _new_follow_up(world, referral), header)

    _outcome(answer, 400, "If-None-Exist")
    assert _follow_ups_written() == before


def test_if_none_exist_where_nothing_identifies_the_resource_is_refused(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = _accepted_down(world)
    before = _follow_ups_written()
    header = f"identifier={HIS_TASK['system']}|{HIS_TASK['value']}"
    # A follow-up Task without an identifier, and a referral's step, cannot be matched.
    _outcome(_conditional(client, keys["b"], "/fhir/Task", _new_follow_up(world, referral, identifier=[]), header), 400)
    step = {
        "resourceType": "Task",
        "status": "accepted",
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral.uuid}"},
        "owner": _practitioner(world, "township_clinician"),
    }
    _outcome(_conditional(client, keys["b"], "/fhir/Task", step, header), 400, "If-None-Exist")
    # Nor is an update a conditional create.
    task = FollowUpTask.objects.get()
    done = {"resourceType": "Task", "id": str(task.uuid), "status": "completed", "intent": "plan"} | {
        "owner": _practitioner(world, "township_clinician"),
        "output": [{"type": {"text": "result"}, "valueString": "血压 130/80"}],
    }
    update = client.put(
        f"/fhir/Task/{task.uuid}",
        data=json.dumps(done, ensure_ascii=False).encode(),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {keys['b']}", "If-None-Exist": header},
    )
    _outcome(update, 400, "If-None-Exist")
    assert _follow_ups_written() == before and FollowUpTask.objects.get().status == "open"
