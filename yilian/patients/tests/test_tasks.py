"""Re-linking the whole index in the background: enqueue, run the real worker, audited merges."""

from __future__ import annotations

import datetime as dt

from django_tasks_db.models import DBTaskResult

from yilian.access.tests.test_tasks import run_worker
from yilian.patients import linkage
from yilian.patients.identities import IdentityData
from yilian.patients.models import LinkMethod, MatchReview, PatientMerge, ReviewStatus, SourceIdentity
from yilian.patients.services import SYSTEM_ACTOR_NAME, identity_ingest, linkage_model_store, review_decide
from yilian.patients.tasks import index_relink

BORN = dt.date(1958, 3, 7)


def test_relink_with_a_new_model_merges_and_respects_decisions(world, actor_of, django_capture_on_commit_callbacks) -> None:
    first = identity_ingest(institution=world.d, data=IdentityData(local_id="D-1", name="甄伟", birth_date=BORN, town="大江镇"))
    second = identity_ingest(institution=world.c, data=IdentityData(local_id="C-1", name="黄美玲", birth_date=BORN))
    assert first.method == second.method == LinkMethod.NEW
    # A reviewer already said C-1 is not 黄美玲 at B: the relink must not overrule that.
    review_decide(
        actor=actor_of("consortium_manager"), review=MatchReview.objects.get(identity=second.identity), decision="distinct"
    )
    # A more permissive model: name + birth date now suffice.
    linkage_model_store(parameters=linkage.DEFAULT_PARAMETERS, link_threshold=2.0, review_threshold=-5.0, note="test")

    with django_capture_on_commit_callbacks(execute=True):
        index_relink.enqueue(batch_size=3)
    for _ in range(5):  # each full batch enqueues the next one
        with django_capture_on_commit_callbacks(execute=True):
            run_worker()
    # Six identities stand alone (the world's four and the two above): batches of three, each full
    # batch enqueuing the next, until one comes back short.
    statuses = list(DBTaskResult.objects.values_list("status", flat=True))
    assert len(statuses) >= 2 and set(statuses) == {"SUCCESSFUL"}

    assert SourceIdentity.objects.get(pk=first.identity.pk).patient == world.patients["at_t"]
    merge = PatientMerge.objects.get(merged=first.patient)
    assert merge.actor_name == SYSTEM_ACTOR_NAME and "v1" in merge.reason
    assert SourceIdentity.objects.get(pk=second.identity.pk).patient == second.patient
    assert MatchReview.objects.get(identity=second.identity).status == ReviewStatus.DISTINCT


def test_command_queues_relink_and_refuses_bad_thresholds(world) -> None:
    from io import StringIO

    import pytest
    from django.core.exceptions import ValidationError
    from django.core.management import call_command

    out = StringIO()
    call_command("mpi_linkage", "relink", stdout=out)
    assert "已排队" in out.getvalue() and DBTaskResult.objects.count() == 1
    with pytest.raises(ValidationError, match="阈值"):
        call_command("mpi_linkage", "train", "--link-threshold=1", "--review-threshold=5")
    with pytest.raises(ValidationError, match="少于 1000 条"):
        call_command("mpi_linkage", "train")
