"""/api/v1/mpi: the review queue of the master patient index over the API — scope as the pages,
both sides in full, decisions (merge, keep apart, link to another candidate), merges and unmerge,
access-log rows with basis mpi_review, bad input in the error shape, and the authorisation matrix."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.conf import settings

from yilian.access.models import AccessAction, AccessBasis, AccessLog
from yilian.accounts.actors import Actor
from yilian.accounts.services import api_key_create
from yilian.patients.identities import IdentityData
from yilian.patients.models import IdentityLinkEvent, MatchReview, PatientMerge, ReviewStatus, SourceIdentity
from yilian.patients.services import identity_ingest, patient_merge
from yilian.testing.matrix import Endpoint, run_matrix, snapshot
from yilian.testing.world import PERSONAS, World

pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")

BORN = dt.date(1958, 3, 7)
ALL = (*PERSONAS, "institution_admin", "system_admin", "privacy_officer", "hr_officer")
REVIEWERS = ("consortium_manager", "institution_admin", "system_admin")
WATCHED = (
    "patients.Patient",
    "patients.SourceIdentity",
    "patients.MatchReview",
    "patients.PatientMerge",
    "patients.IdentityLinkEvent",
    "access.AccessLog",
    "access.AccessGrant",
)


def _k1_review(world: World) -> MatchReview:
    """黄美玲 (registered at B, consortium K1) sent by C with name and birth date only."""
    outcome = identity_ingest(institution=world.c, data=IdentityData(local_id="C-1", name="黄美玲", birth_date=BORN))
    return MatchReview.objects.get(identity=outcome.identity)


def _k2_review(world: World) -> MatchReview:
    """甄伟 (registered at T, consortium K2) sent by D: nothing to do with B's admin or K1's manager."""
    outcome = identity_ingest(institution=world.d, data=IdentityData(local_id="D-1", name="甄伟", birth_date=BORN))
    return MatchReview.objects.get(identity=outcome.identity)


def _two_candidates(world: World) -> tuple[MatchReview, MatchReview]:
    """A sends 黄美玲 first (a new patient at A, review against B's 黄美玲); then C sends 黄美玲 too,
    whose identity gets two open items: B's 黄美玲 and A's new one."""
    identity_ingest(institution=world.a, data=IdentityData(local_id="A-1", name="黄美玲", birth_date=BORN))
    outcome = identity_ingest(institution=world.c, data=IdentityData(local_id="C-1", name="黄美玲", birth_date=BORN))
    at_b = MatchReview.objects.get(identity=outcome.identity, candidate=world.patients["at_b"])
    at_a = MatchReview.objects.get(identity=outcome.identity, candidate__home_institution=world.a)
    return at_b, at_a


def _post(client: Any, url: str, body: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json")


def _ids(response: Any) -> set[str]:
    return {item["id"] for item in response.json()["items"]}


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "message_en", "fields"} and body["code"] == code
    return body


# --- reads ------------------------------------------------------------------------------------------


def test_list_is_scoped_as_the_pages(world: World, login) -> None:  # type: ignore[no-untyped-def]
    k1, k2 = _k1_review(world), _k2_review(world)
    seen = {persona: _ids(login(persona).get("/api/v1/mpi/reviews?status=all")) for persona in REVIEWERS}
    assert seen["consortium_manager"] == {str(k1.uuid)}  # K1 leads A; the item touches C and B
    assert seen["institution_admin"] == {str(k1.uuid)}  # B's admin: the candidate is registered at B
    assert seen["system_admin"] == {str(k1.uuid), str(k2.uuid)}


def test_list_masks_id_numbers_and_logs_shown_patients_as_review(world: World, login) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    response = login("consortium_manager").get("/api/v1/mpi/reviews")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    item = body["items"][0]
    assert item["status"] == "open" and item["candidate"]["name"] == "黄美玲"
    assert item["candidate"]["masked_id_number"] == "4407**********0029"
    assert "440781196205120029" not in response.content.decode()
    logs = AccessLog.objects.filter(user=world.user("consortium_manager"))
    assert {log.patient_id for log in logs} == {review.identity.patient_id, review.candidate_id}
    assert {(log.action, log.basis, log.path) for log in logs} == {
        (AccessAction.LIST, AccessBasis.MPI_REVIEW, "/api/v1/mpi/reviews")
    }


def test_list_status_filter_and_query_bound(world: World, login, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    for n in range(6):
        identity_ingest(institution=world.c, data=IdentityData(local_id=f"C-{n}", name="黄美玲", birth_date=BORN))
    decided = MatchReview.objects.order_by("id").first()
    assert decided is not None
    MatchReview.objects.filter(pk=decided.pk).update(status=ReviewStatus.DISTINCT)
    client = login("consortium_manager")
    with django_assert_max_num_queries(12):
        response = client.get("/api/v1/mpi/reviews?status=all&page_size=50")
    assert response.status_code == 200 and response.json()["count"] == MatchReview.objects.count()
    assert _ids(client.get("/api/v1/mpi/reviews?status=distinct")) == {str(decided.uuid)}
    assert str(decided.uuid) not in _ids(client.get("/api/v1/mpi/reviews"))


def test_detail_shows_both_sides_in_full_and_logs_each_read(world: World, login) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    response = login("institution_admin").get(f"/api/v1/mpi/reviews/{review.uuid}")
    assert response.status_code == 200
    body = response.json()
    assert body["incoming_identity"]["local_id"] == "C-1" and body["incoming_identity"]["institution"]["id"] == str(world.c.uuid)
    assert body["candidate_side"]["id_number"] == "440781196205120029"  # the review duty sees it whole
    assert body["candidate_side"]["id"] == str(world.patients["at_b"].uuid)
    assert [i["local_id"] for i in body["incoming_side"]["identities"]] == ["C-1"]
    assert {row["field"]: row["level"] for row in body["comparison"]}["name"] == review.comparison["name"]
    assert body["alternatives"] == []
    logs = AccessLog.objects.filter(user=world.user("institution_admin"))
    assert sorted(log.patient_id for log in logs) == sorted([review.identity.patient_id, review.candidate_id])
    assert {(log.action, log.basis) for log in logs} == {(AccessAction.VIEW_SUMMARY, AccessBasis.MPI_REVIEW)}


def test_pages_log_review_reads_with_the_review_basis(world: World, login) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    client = login("consortium_manager")
    assert client.get("/patients/review/").status_code == 200
    assert client.get(f"/patients/review/{review.uuid}/").status_code == 200
    assert client.get("/patients/merges/").status_code == 200
    logs = AccessLog.objects.filter(user=world.user("consortium_manager"))
    assert logs.count() == 4  # two patients listed, the same two read side by side
    assert set(logs.values_list("basis", flat=True)) == {AccessBasis.MPI_REVIEW}


# --- decisions ----------------------------------------------------------------------------------------


def test_merge_decision_merges_and_is_recorded(world: World, login) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    response = _post(
        login("consortium_manager"), f"/api/v1/mpi/reviews/{review.uuid}/decision", {"decision": "merge", "reason": "电话核实"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    merge = PatientMerge.objects.get()
    assert body["status"] == "linked" and body["merge_id"] == str(merge.uuid) and body["decided_by_name"]
    assert merge.reason == "电话核实" and merge.actor_user == world.user("consortium_manager")
    assert SourceIdentity.objects.get(pk=review.identity_id).patient == world.patients["at_b"]


def test_distinct_decision_keeps_them_apart_and_a_second_decision_is_refused(world: World, login) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    client = login("system_admin")
    url = f"/api/v1/mpi/reviews/{review.uuid}/decision"
    assert _post(client, url, {"decision": "distinct"}).json()["status"] == "distinct"
    before = snapshot(WATCHED)
    body = _error(_post(client, url, {"decision": "merge"}), 422, "validation_error")
    assert "已审核" in body["message"] and body["message_en"]
    assert snapshot(WATCHED) == before
    assert not PatientMerge.objects.exists()


def test_link_to_another_candidate(world: World, login) -> None:  # type: ignore[no-untyped-def]
    at_b, at_a = _two_candidates(world)
    client = login("consortium_manager")
    detail = client.get(f"/api/v1/mpi/reviews/{at_b.uuid}").json()
    assert [a["review_id"] for a in detail["alternatives"]] == [str(at_a.uuid)]
    response = _post(
        client,
        f"/api/v1/mpi/reviews/{at_b.uuid}/decision",
        {"decision": "link_other", "other_review": str(at_a.uuid), "reason": "与人民医院档案为同一人"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "distinct"
    at_b.refresh_from_db()
    at_a.refresh_from_db()
    assert at_b.status == ReviewStatus.DISTINCT and at_b.merge is None
    assert at_a.status == ReviewStatus.LINKED and at_a.merge is not None and at_a.merge.reason == "与人民医院档案为同一人"
    assert SourceIdentity.objects.get(pk=at_b.identity_id).patient_id == at_a.candidate_id
    assert IdentityLinkEvent.objects.filter(merge=at_a.merge).count() == 1


def test_link_to_another_candidate_on_the_page(world: World, login) -> None:  # type: ignore[no-untyped-def]
    at_b, at_a = _two_candidates(world)
    client = login("consortium_manager")
    page = client.get(f"/patients/review/{at_b.uuid}/").content.decode()
    assert 'data-testid="alternatives"' in page and str(at_a.uuid) in page
    assert client.post(f"/patients/review/{at_b.uuid}/", {"decision": "link_other"}).status_code == 200  # no candidate chosen
    at_b.refresh_from_db()
    assert at_b.status == ReviewStatus.OPEN
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    english = client.get(f"/patients/review/{at_b.uuid}/").content.decode()
    assert "Another candidate is this person" in english and "Another candidate" in english
    response = client.post(f"/patients/review/{at_b.uuid}/", {"decision": "link_other", "other_review": str(at_a.uuid)})
    assert response.status_code == 302
    assert SourceIdentity.objects.get(pk=at_b.identity_id).patient_id == at_a.candidate_id


def test_bad_decisions_are_4xx_in_the_error_shape_and_change_nothing(world: World, login) -> None:  # type: ignore[no-untyped-def]
    at_b, _at_a = _two_candidates(world)
    k2 = _k2_review(world)
    lone = _k1_review_elsewhere(world)
    client = login("consortium_manager")
    url = f"/api/v1/mpi/reviews/{at_b.uuid}/decision"
    before = snapshot(WATCHED)
    cases: list[tuple[Any, int, str, str | None]] = [
        ({"decision": "maybe"}, 422, "validation_error", "decision"),
        ({}, 422, "validation_error", "decision"),
        ({"decision": "merge", "reason": "长" * 501}, 422, "validation_error", "reason"),
        ({"decision": "merge", "reason": "a\x00b"}, 422, "validation_error", "reason"),
        ({"decision": "merge", "surprise": 1}, 422, "validation_error", "surprise"),
        ({"decision": "link_other"}, 422, "validation_error", "other_review"),
        ({"decision": "link_other", "other_review": "not-a-uuid"}, 422, "validation_error", "other_review"),
        ({"decision": "link_other", "other_review": str(at_b.uuid)}, 422, "validation_error", "other_review"),
        ({"decision": "link_other", "other_review": str(lone.uuid)}, 422, "validation_error", "other_review"),
        ({"decision": "link_other", "other_review": str(k2.uuid)}, 422, "validation_error", "other_review"),
        ("{not json", 400, "bad_request", None),
        ("[]", 422, "validation_error", None),
    ]
    for body, status, code, field in cases:
        error = _error(_post(client, url, body), status, code)
        if field is not None:
            assert field in error["fields"], (body, error)
    _error(
        _post(client, "/api/v1/mpi/reviews/00000000-0000-4000-8000-000000000000/decision", {"decision": "merge"}),
        404,
        "not_found",
    )
    _error(_post(client, "/api/v1/mpi/reviews/not-a-uuid/decision", {"decision": "merge"}), 404, "not_found")
    _error(client.get(f"/api/v1/mpi/reviews/{k2.uuid}"), 404, "not_found")  # outside K1: the same as missing
    _error(client.get("/api/v1/mpi/reviews?status=bogus"), 422, "validation_error")
    _error(client.get("/api/v1/mpi/reviews?page_size=100000"), 400, "bad_request")
    _error(client.get("/api/v1/mpi/merges?status=bogus"), 422, "validation_error")
    _error(client.get(url), 405, "method_not_allowed")
    assert snapshot(WATCHED) == before  # neither item, nor any patient, link or log row changed


def _k1_review_elsewhere(world: World) -> MatchReview:
    """Another K1 item with a different incoming identity (陈大明 at V, sent by C)."""
    outcome = identity_ingest(institution=world.c, data=IdentityData(local_id="C-9", name="陈大明", birth_date=BORN))
    return MatchReview.objects.get(identity=outcome.identity)


# --- merges and unmerge -------------------------------------------------------------------------------


def test_merge_list_and_unmerge(world: World, login, actor_of) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    incoming = review.identity.patient
    merge = patient_merge(actor=actor_of("consortium_manager"), survivor=review.candidate, merged=incoming, reason="误判前合并")
    client = login("institution_admin")
    listed = client.get("/api/v1/mpi/merges")
    assert listed.status_code == 200 and _ids(listed) == {str(merge.uuid)}
    assert listed.json()["items"][0]["reason"] == "误判前合并" and listed.json()["items"][0]["unmerged_at"] is None
    logs = AccessLog.objects.filter(user=world.user("institution_admin"))
    assert {log.patient_id for log in logs} == {incoming.pk, review.candidate_id}
    assert set(logs.values_list("basis", flat=True)) == {AccessBasis.MPI_REVIEW}

    response = client.post(f"/api/v1/mpi/merges/{merge.uuid}/unmerge")
    assert response.status_code == 200, response.content
    assert response.json()["unmerged_at"] is not None and response.json()["unmerged_by_name"]
    assert SourceIdentity.objects.get(pk=review.identity_id).patient == incoming
    assert _ids(client.get("/api/v1/mpi/merges?status=undone")) == {str(merge.uuid)}
    assert _ids(client.get("/api/v1/mpi/merges?status=active")) == set()

    before = snapshot(WATCHED)
    assert "已撤销" in _error(client.post(f"/api/v1/mpi/merges/{merge.uuid}/unmerge"), 422, "validation_error")["message"]
    assert snapshot(WATCHED) == before


def test_a_decision_can_be_undone_through_the_merges(world: World, login) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    incoming = review.identity.patient_id
    client = login("consortium_manager")
    merge_id = _post(client, f"/api/v1/mpi/reviews/{review.uuid}/decision", {"decision": "merge"}).json()["merge_id"]
    assert client.post(f"/api/v1/mpi/merges/{merge_id}/unmerge").status_code == 200
    review.refresh_from_db()
    assert review.status == ReviewStatus.OPEN and review.merge is None
    assert SourceIdentity.objects.get(pk=review.identity_id).patient_id == incoming


def test_an_api_key_is_no_reviewer(world: World, client) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    _key, raw = api_key_create(actor=Actor(user=world.user("system_admin")), institution=world.b, name="HIS")
    headers = {"Authorization": f"Bearer {raw}"}
    before = snapshot(WATCHED)
    assert client.get("/api/v1/mpi/reviews", headers=headers).status_code == 403
    assert client.get(f"/api/v1/mpi/reviews/{review.uuid}", headers=headers).status_code == 403
    response = client.post(
        f"/api/v1/mpi/reviews/{review.uuid}/decision",
        data={"decision": "merge"},
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 403
    assert snapshot(WATCHED) == before


# --- the authorisation matrix ---------------------------------------------------------------------------

DENIED_API: dict[str, int | set[int]] = {"anonymous": 401, **{p: {403, 404} for p in ALL if p != "anonymous"}}


@pytest.mark.parametrize(
    "url",
    [
        lambda w, r: "/api/v1/mpi/reviews",
        lambda w, r: f"/api/v1/mpi/reviews/{r.uuid}",
        lambda w, r: "/api/v1/mpi/merges",
    ],
    ids=["reviews", "review", "merges"],
)
def test_read_matrix(world: World, url) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    run_matrix(
        world,
        Endpoint("GET", lambda w: url(w, review)),
        allowed=dict.fromkeys(REVIEWERS, 200),
        denied_status=DENIED_API,
        personas=ALL,
        watched=WATCHED,
    )


def test_read_matrix_outside_the_scope(world: World) -> None:
    review = _k2_review(world)
    run_matrix(
        world,
        Endpoint("GET", lambda w: f"/api/v1/mpi/reviews/{review.uuid}"),
        allowed={"system_admin": 200},
        denied_status={**DENIED_API, "consortium_manager": 404, "institution_admin": 404},
        personas=ALL,
        watched=WATCHED,
    )


@pytest.mark.parametrize("allowed", REVIEWERS)
def test_decision_matrix(world: World, allowed: str) -> None:
    review = _k1_review(world)
    run_matrix(
        world,
        Endpoint(
            "POST",
            lambda w: f"/api/v1/mpi/reviews/{review.uuid}/decision",
            data=lambda w: {"decision": "distinct"},
            json_body=True,
        ),
        allowed={allowed: 200},
        denied_status=DENIED_API,
        personas=[p for p in ALL if p not in REVIEWERS or p == allowed],
        watched=WATCHED,
    )
    review.refresh_from_db()
    assert review.status == ReviewStatus.DISTINCT


@pytest.mark.parametrize("allowed", REVIEWERS)
def test_unmerge_matrix(world: World, actor_of, allowed: str) -> None:  # type: ignore[no-untyped-def]
    review = _k1_review(world)
    merge = patient_merge(
        actor=actor_of("consortium_manager"), survivor=review.candidate, merged=review.identity.patient, reason="核实"
    )
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/api/v1/mpi/merges/{merge.uuid}/unmerge"),
        allowed={allowed: 200},
        denied_status=DENIED_API,
        personas=[p for p in ALL if p not in REVIEWERS or p == allowed],
        watched=WATCHED,
    )
    merge.refresh_from_db()
    assert merge.unmerged_at is not None


def test_decision_outside_the_scope_changes_nothing(world: World) -> None:
    review = _k2_review(world)
    run_matrix(
        world,
        Endpoint(
            "POST", lambda w: f"/api/v1/mpi/reviews/{review.uuid}/decision", data=lambda w: {"decision": "merge"}, json_body=True
        ),
        allowed={},
        denied_status={**DENIED_API, "consortium_manager": 404, "institution_admin": 404},
        personas=[p for p in ALL if p != "system_admin"],
        watched=WATCHED,
    )
    review.refresh_from_db()
    assert review.status == ReviewStatus.OPEN
