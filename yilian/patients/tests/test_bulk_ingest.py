"""identities_ingest: several identities at once with the outcome of identity_ingest one by one
(HL7 batches go through it), including identities met earlier in the same list."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from django.db import transaction

from yilian.patients.identities import IdentityData, IdentityOutcome
from yilian.patients.models import IdentityLinkEvent, LinkMethod, MatchReview, Patient, SourceIdentity
from yilian.patients.services import IdentityRowError, identities_ingest, identity_ingest

BORN = dt.date(1990, 1, 2)
TWIN = IdentityData(local_id="T-10", name="甄美", sex="2", birth_date=BORN, phone="13911112222", town="大江镇")


def _state(world: Any) -> dict[str, Any]:
    identities = list(SourceIdentity.objects.filter(institution=world.t).select_related("patient"))
    by_patient: dict[int, list[str]] = {}
    for identity in identities:
        by_patient.setdefault(identity.patient_id, []).append(identity.local_id)
    return {
        "people": sorted(sorted(group) for group in by_patient.values()),
        "links": sorted((i.local_id, i.link_method, round(i.link_score or 0, 6), i.phone) for i in identities),
        "world patient": sorted(i.local_id for i in identities if i.patient.home_institution_id != world.t.pk),
        "events": IdentityLinkEvent.objects.filter(identity__institution=world.t).count(),
        "reviews": sorted(
            (r.identity.local_id, r.candidate.name, round(r.score, 6))
            for r in MatchReview.objects.filter(identity__institution=world.t).select_related("identity", "candidate")
        ),
        "patients": Patient.objects.count(),
    }


def _outcomes(outcomes: list[IdentityOutcome]) -> list[tuple[str, bool, str, bool]]:
    return [(o.identity.local_id, o.created, o.method, o.needs_review) for o in outcomes]


LISTS = {
    "new people linking to each other and to the world": [
        IdentityData(local_id="T-1", name="伍國華", sex="1", birth_date=dt.date(1958, 3, 7), id_number="440781195803070012"),
        TWIN,
        dataclasses.replace(TWIN, local_id="T-11", phone="13911113333"),  # same name, birth date, town
        dataclasses.replace(TWIN, local_id="T-12", name="甄媄", phone=""),  # a look-alike character
        IdentityData(local_id="T-13", name="司徒雷", sex="1", id_number="440781200001010011"),
        IdentityData(local_id="T-14", name="司徒雷", sex="1", id_number="440781200001010011"),  # its ID, met in the list
        TWIN,  # the first one again, unchanged
    ],
    "a known identity changes": [
        TWIN,
        dataclasses.replace(TWIN, phone="13800000000"),
        dataclasses.replace(TWIN, local_id="T-11"),
    ],
}


@pytest.mark.parametrize("name", list(LISTS))
def test_the_same_outcome_as_one_by_one(world: Any, name: str) -> None:
    data = LISTS[name]
    identity_ingest(institution=world.t, data=TWIN)  # already known before the list

    class Undo(Exception):
        pass

    expected: dict[str, Any] = {}
    try:
        with transaction.atomic():
            one_by_one = _outcomes([identity_ingest(institution=world.t, data=item) for item in data])
            expected = _state(world)
            raise Undo
    except Undo:
        pass
    together = _outcomes(identities_ingest(institution=world.t, data=data))
    assert together == one_by_one
    assert _state(world) == expected
    assert any(method == LinkMethod.NATIONAL_ID for _local, _created, method, _review in together) == (
        name != "a known identity changes"
    )


def test_refused_identity_is_named_and_nothing_is_written(world: Any) -> None:
    before = (Patient.objects.count(), SourceIdentity.objects.count())
    with pytest.raises(IdentityRowError) as raised:
        identities_ingest(
            institution=world.t,
            data=[TWIN, dataclasses.replace(TWIN, local_id="T-20", birth_date=dt.date(2999, 1, 1))],
        )
    assert raised.value.index == 1
    assert "birth_date" in raised.value.message_dict
    assert (Patient.objects.count(), SourceIdentity.objects.count()) == before


def test_more_identities_than_one_statement_takes(world: Any) -> None:
    # More parameters than one INSERT may carry on SQLite (999): patients, identities and link
    # events go in several statements, each row still given its own key.
    data = [
        IdentityData(local_id=f"T-{n:03d}", name=f"新人{n:03d}", sex="1", birth_date=BORN + dt.timedelta(days=n), town=f"{n}镇")
        for n in range(100)
    ]
    outcomes = identities_ingest(institution=world.t, data=data)
    assert [(o.created, o.method) for o in outcomes] == [(True, LinkMethod.NEW)] * 100
    stored = {i.local_id: i for i in SourceIdentity.objects.filter(institution=world.t).select_related("patient")}
    for item, outcome in zip(data, outcomes, strict=True):
        identity = stored[item.local_id]
        assert (outcome.identity.pk, outcome.patient.pk) == (identity.pk, identity.patient_id)
        assert identity.patient.name == item.name
    assert IdentityLinkEvent.objects.filter(identity__institution=world.t, to_patient_id=stored["T-099"].patient_id).count() == 1
