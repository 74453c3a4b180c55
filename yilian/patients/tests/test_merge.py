"""patient_merge / patient_unmerge: identities move and come back with their links, all audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from yilian.patients.identities import IdentityData
from yilian.patients.models import IdentityLinkEvent, LinkMethod, MatchReview, ReviewStatus, SourceIdentity
from yilian.patients.services import identity_ingest, patient_merge, patient_unmerge, review_decide

BORN = dt.date(1958, 3, 7)


def _duplicate(world):  # type: ignore[no-untyped-def]
    """甄伟 sent again by D with name and birth date only: a new patient and an open review."""
    outcome = identity_ingest(institution=world.d, data=IdentityData(local_id="D-1", name="甄伟", birth_date=BORN, town="大江镇"))
    assert outcome.needs_review
    return outcome


def test_merge_moves_identities_and_unmerge_restores_them(world, actor_of) -> None:
    outcome = _duplicate(world)
    survivor, merged = world.patients["at_t"], outcome.patient
    actor = actor_of("consortium_manager")
    merge = patient_merge(actor=actor, survivor=survivor, merged=merged, reason="同一人：电话核实")
    identity = SourceIdentity.objects.get(pk=outcome.identity.pk)
    assert identity.patient == survivor and identity.link_method == LinkMethod.MANUAL
    merged.refresh_from_db()
    assert merged.merged_into == survivor
    assert merge.actor_user == world.user("consortium_manager") and merge.actor_institution == world.a
    assert IdentityLinkEvent.objects.filter(merge=merge, identity=identity, from_patient=merged, to_patient=survivor).exists()
    # The open review between the two is settled by the merge.
    assert MatchReview.objects.get(identity=identity).status == ReviewStatus.LINKED

    patient_unmerge(actor=actor, merge=merge)
    identity.refresh_from_db()
    merged.refresh_from_db()
    merge.refresh_from_db()
    assert identity.patient == merged
    assert identity.link_method == LinkMethod.NEW and identity.link_score == outcome.identity.link_score
    assert merged.merged_into is None and merge.unmerged_at is not None
    assert MatchReview.objects.get(identity=identity).status == ReviewStatus.OPEN
    assert IdentityLinkEvent.objects.filter(merge=merge).count() == 2  # the move and the move back
    # The survivor keeps its own identity throughout.
    assert SourceIdentity.objects.filter(patient=survivor).count() == 1


def test_unmerge_twice_is_refused(world, actor_of) -> None:
    outcome = _duplicate(world)
    actor = actor_of("consortium_manager")
    merge = patient_merge(actor=actor, survivor=world.patients["at_t"], merged=outcome.patient, reason="核实")
    patient_unmerge(actor=actor, merge=merge)
    with pytest.raises(ValidationError, match="已撤销"):
        patient_unmerge(actor=actor, merge=merge)


@pytest.mark.parametrize("reason", ["", "  ", "x" * 501])
def test_merge_needs_a_reason(world, actor_of, reason) -> None:
    outcome = _duplicate(world)
    with pytest.raises(ValidationError):
        patient_merge(
            actor=actor_of("consortium_manager"), survivor=world.patients["at_t"], merged=outcome.patient, reason=reason
        )
    assert SourceIdentity.objects.get(pk=outcome.identity.pk).patient == outcome.patient


def test_merging_a_patient_into_itself_or_twice_is_refused(world, actor_of) -> None:
    outcome = _duplicate(world)
    actor = actor_of("consortium_manager")
    with pytest.raises(ValidationError, match="自身"):
        patient_merge(actor=actor, survivor=outcome.patient, merged=outcome.patient, reason="x")
    patient_merge(actor=actor, survivor=world.patients["at_t"], merged=outcome.patient, reason="x")
    with pytest.raises(ValidationError, match="已被合并"):
        patient_merge(actor=actor, survivor=world.patients["at_a"], merged=outcome.patient, reason="x")


def test_review_decisions(world, actor_of) -> None:
    outcome = _duplicate(world)
    review = MatchReview.objects.get(identity=outcome.identity)
    decided = review_decide(actor=actor_of("consortium_manager"), review=review, decision="distinct")
    assert decided.status == ReviewStatus.DISTINCT
    assert SourceIdentity.objects.get(pk=outcome.identity.pk).patient == outcome.patient
    with pytest.raises(ValidationError, match="已审核"):
        review_decide(actor=actor_of("consortium_manager"), review=review, decision="merge")


def test_review_same_person_merges(world, actor_of) -> None:
    outcome = _duplicate(world)
    review = MatchReview.objects.get(identity=outcome.identity)
    decided = review_decide(actor=actor_of("consortium_manager"), review=review, decision="merge", reason="电话核实")
    assert decided.status == ReviewStatus.LINKED and decided.merge is not None
    assert decided.merge.reason == "电话核实"
    assert SourceIdentity.objects.get(pk=outcome.identity.pk).patient == world.patients["at_t"]
