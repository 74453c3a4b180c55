"""The review queue pages: scope (MPI_REVIEW), side-by-side, decisions, unmerge, access log."""

from __future__ import annotations

import datetime as dt

from yilian.access.models import AccessAction, AccessLog
from yilian.patients.identities import IdentityData
from yilian.patients.models import MatchReview, PatientMerge, ReviewStatus, SourceIdentity
from yilian.patients.services import identity_ingest, patient_merge
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS

BORN = dt.date(1958, 3, 7)
# Everyone the review pages are checked against: the matrix personas plus the other MPI_REVIEW holders.
ALL = (*PERSONAS, "institution_admin", "system_admin", "privacy_officer")
WATCHED = (
    "patients.Patient",
    "patients.SourceIdentity",
    "patients.MatchReview",
    "patients.PatientMerge",
    "patients.IdentityLinkEvent",
    "access.AccessLog",
)


def _review_at_k1(world) -> MatchReview:  # type: ignore[no-untyped-def]
    """黄美玲 (registered at B, consortium K1) sent by C with name and birth date only."""
    outcome = identity_ingest(institution=world.c, data=IdentityData(local_id="C-1", name="黄美玲", birth_date=BORN))
    return MatchReview.objects.get(identity=outcome.identity)


def test_review_list_shows_open_items_and_logs_patients_shown(world, login, django_assert_max_num_queries) -> None:
    review = _review_at_k1(world)
    client = login("consortium_manager")
    with django_assert_max_num_queries(14):
        response = client.get("/patients/review/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "黄美玲" in body and str(review.uuid) in body
    logged = AccessLog.objects.filter(user=world.user("consortium_manager"), action=AccessAction.LIST)
    assert {row.patient_id for row in logged} == {review.identity.patient_id, review.candidate_id}


def test_review_list_queries_do_not_grow_with_rows(world, login, django_assert_max_num_queries) -> None:
    for n in range(6):
        identity_ingest(institution=world.c, data=IdentityData(local_id=f"C-{n}", name="黄美玲", birth_date=BORN))
    assert MatchReview.objects.count() >= 6
    client = login("consortium_manager")
    with django_assert_max_num_queries(14):
        assert client.get("/patients/review/").status_code == 200


def test_review_detail_side_by_side_logs_every_identity_read(world, login) -> None:
    review = _review_at_k1(world)
    client = login("institution_admin")  # admin at B, where the candidate is registered
    response = client.get(f"/patients/review/{review.uuid}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count("黄美玲") >= 2 and "440781196205120029" in body  # candidate's full ID number
    logged = AccessLog.objects.filter(user=world.user("institution_admin"), action=AccessAction.VIEW_SUMMARY)
    assert sorted(row.patient_id for row in logged) == sorted([review.identity.patient_id, review.candidate_id])


def test_review_decision_same_person_merges(world, login) -> None:
    review = _review_at_k1(world)
    client = login("consortium_manager")
    response = client.post(f"/patients/review/{review.uuid}/", {"decision": "merge", "reason": "电话核实为同一人"})
    assert response.status_code == 302
    review.refresh_from_db()
    assert review.status == ReviewStatus.LINKED
    assert SourceIdentity.objects.get(pk=review.identity_id).patient == world.patients["at_b"]
    merge = PatientMerge.objects.get()
    assert merge.reason == "电话核实为同一人" and merge.actor_user == world.user("consortium_manager")


def test_review_decision_refuses_bad_input(world, login) -> None:
    review = _review_at_k1(world)
    client = login("consortium_manager")
    for data in ({}, {"decision": "maybe"}, {"decision": "merge", "reason": "长" * 501}):
        response = client.post(f"/patients/review/{review.uuid}/", data)
        assert response.status_code == 200
        assert (
            "请选择审核结论" in response.content.decode()
            or "审核结论无效" in response.content.decode()
            or ("500" in response.content.decode())
        )
    review.refresh_from_db()
    assert review.status == ReviewStatus.OPEN and not PatientMerge.objects.exists()


def test_unmerge_page_restores_links(world, login, actor_of) -> None:
    review = _review_at_k1(world)
    incoming = review.identity.patient
    merge = patient_merge(actor=actor_of("consortium_manager"), survivor=review.candidate, merged=incoming, reason="误判前合并")
    client = login("consortium_manager")
    assert "误判前合并" in client.get("/patients/merges/").content.decode()
    assert client.post(f"/patients/merges/{merge.uuid}/undo/", {}).status_code == 302  # not confirmed
    merge.refresh_from_db()
    assert merge.unmerged_at is None
    assert client.post(f"/patients/merges/{merge.uuid}/undo/", {"confirm": "on"}).status_code == 302
    merge.refresh_from_db()
    assert merge.unmerged_at is not None
    assert SourceIdentity.objects.get(pk=review.identity_id).patient == incoming


def test_review_list_matrix(world) -> None:
    _review_at_k1(world)
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/patients/review/"),
        allowed={"consortium_manager": 200, "institution_admin": 200, "system_admin": 200},
        denied_status={"anonymous": 302, **dict.fromkeys(set(ALL) - {"anonymous"}, 403)},
        personas=ALL,
        watched=WATCHED,
    )


def test_review_detail_matrix_follows_scope(world) -> None:
    # A K1 item: K1's manager (at the lead A), B's admin (candidate registered at B) and the system
    # admin may look; nobody else, including the K2 clinician.
    review = _review_at_k1(world)
    run_matrix(
        world,
        Endpoint("GET", lambda w: f"/patients/review/{review.uuid}/"),
        allowed={"consortium_manager": 200, "institution_admin": 200, "system_admin": 200},
        denied_status={"anonymous": 302, **{key: {403, 404} for key in set(ALL) - {"anonymous"}}},
        personas=ALL,
        watched=WATCHED,
    )


def test_review_outside_scope_is_not_found_for_an_institution_admin(world, login) -> None:
    # A K2 item (甄伟 at T, sent by D): B's admin has MPI_REVIEW but nothing to do with it.
    outcome = identity_ingest(institution=world.d, data=IdentityData(local_id="D-1", name="甄伟", birth_date=BORN))
    review = MatchReview.objects.get(identity=outcome.identity)
    client = login("institution_admin")
    assert client.get(f"/patients/review/{review.uuid}/").status_code == 404
    assert str(review.uuid) not in client.get("/patients/review/").content.decode()
    assert client.post(f"/patients/review/{review.uuid}/", {"decision": "merge"}).status_code == 404
    review.refresh_from_db()
    assert review.status == ReviewStatus.OPEN


def test_decision_matrix(world) -> None:
    review = _review_at_k1(world)
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/patients/review/{review.uuid}/", data=lambda w: {"decision": "distinct"}),
        allowed={"system_admin": 302},
        denied_status={
            "anonymous": 302,
            **{key: {403, 404} for key in set(ALL) - {"anonymous", "consortium_manager", "institution_admin"}},
        },
        personas=[p for p in ALL if p not in ("consortium_manager", "institution_admin")],
        watched=WATCHED,
    )
    review.refresh_from_db()
    assert review.status == ReviewStatus.DISTINCT


def test_unmerge_matrix(world, actor_of) -> None:
    review = _review_at_k1(world)
    merge = patient_merge(
        actor=actor_of("consortium_manager"), survivor=review.candidate, merged=review.identity.patient, reason="核实"
    )
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/patients/merges/{merge.uuid}/undo/", data=lambda w: {"confirm": "on"}),
        allowed={"institution_admin": 302},
        denied_status={"anonymous": 302, **{key: {403, 404} for key in set(ALL) - {"anonymous"}}},
        personas=[p for p in ALL if p not in ("consortium_manager", "system_admin")],
        watched=WATCHED,
    )
    merge.refresh_from_db()
    assert merge.unmerged_at is not None


def test_merge_list_queries_do_not_grow_with_rows(world, login, actor_of, django_assert_max_num_queries) -> None:
    actor = actor_of("consortium_manager")
    for n in range(5):
        outcome = identity_ingest(institution=world.c, data=IdentityData(local_id=f"M-{n}", name=f"合并{n}号", birth_date=BORN))
        patient_merge(actor=actor, survivor=world.patients["at_b"], merged=outcome.patient, reason=f"第{n}次")
    client = login("consortium_manager")
    with django_assert_max_num_queries(12):
        response = client.get("/patients/merges/")
    assert response.status_code == 200 and response.content.decode().count("撤销合并") >= 5
    logged = AccessLog.objects.filter(user=world.user("consortium_manager"), action=AccessAction.LIST)
    assert logged.count() == 6  # five merged patients and the survivor, once each


def test_merge_list_matrix(world) -> None:
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/patients/merges/"),
        allowed={"consortium_manager": 200, "institution_admin": 200, "system_admin": 200},
        denied_status={"anonymous": 302, **dict.fromkeys(set(ALL) - {"anonymous"}, 403)},
        personas=ALL,
        watched=WATCHED,
    )


def test_bad_addresses_are_not_found(world, login) -> None:
    client = login("consortium_manager")
    assert client.get("/patients/review/not-a-uuid/").status_code == 404
    assert client.get("/patients/review/00000000-0000-4000-8000-000000000000/").status_code == 404
    assert client.post("/patients/merges/00000000-0000-4000-8000-000000000000/undo/", {"confirm": "on"}).status_code == 404
    assert client.get("/patients/merges/00000000-0000-4000-8000-000000000000/undo/").status_code == 405
    for query in ("?page=999999", "?page=x&page_size=100000000", "?show=%00"):
        assert client.get(f"/patients/review/{query}").status_code == 200  # nonsense pages give the last page
