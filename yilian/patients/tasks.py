"""Background work of the master patient index (run by `manage.py db_worker`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db import transaction
from django_tasks import task

RELINK_BATCH = 2000
# Below this, random sampling and EM have too few pairs to estimate anything.
MIN_TRAINING_IDENTITIES = 1000


@task()
def index_relink(after_id: int = 0, batch_size: int = RELINK_BATCH) -> dict[str, Any]:
    """Re-link the whole index with the active model, one batch of identities per task run; each
    run enqueues the next batch on commit until every identity has been examined."""
    from yilian.patients.services import index_relink_batch

    with transaction.atomic():
        counts = index_relink_batch(after_id=after_id, batch_size=batch_size)
        if counts.examined == batch_size:
            transaction.on_commit(lambda: index_relink.enqueue(after_id=counts.last_id, batch_size=batch_size))
    return dataclasses.asdict(counts)


@task()
def linkage_train(link_threshold: float = 6.0, review_threshold: float = 0.0) -> int:
    """Train the Fellegi–Sunter model on every source identity (Splink, no labels) and store it
    as the next active version; returns the version."""
    from django.core.exceptions import ValidationError
    from django.utils.translation import gettext as _

    from yilian.patients.models import SourceIdentity
    from yilian.patients.services import linkage_model_store, linkage_thresholds_check
    from yilian.patients.training import identity_frame, train

    linkage_thresholds_check(link_threshold=link_threshold, review_threshold=review_threshold)
    if SourceIdentity.objects.count() < MIN_TRAINING_IDENTITIES:
        raise ValidationError(_("源身份少于 %(count)d 条，无法训练匹配模型。") % {"count": MIN_TRAINING_IDENTITIES})

    fields = ("pk", "name", "sex", "birth_date", "id_number", "phone", "town")
    rows = ({"unique_id": row.pop("pk"), **row} for row in SourceIdentity.objects.values(*fields).iterator(chunk_size=10000))
    frame = identity_frame(rows)
    parameters, _linker = train([frame], u_pairs=min(5e6, max(1e4, len(frame) * 20)))
    model = linkage_model_store(
        parameters=parameters,
        link_threshold=link_threshold,
        review_threshold=review_threshold,
        trained_on=len(frame),
        note="Splink EM",
    )
    return model.version
