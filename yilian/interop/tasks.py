"""Background work for interop (run by `manage.py db_worker`)."""

from __future__ import annotations

import logging

from django_tasks import task

logger = logging.getLogger(__name__)


@task()
def import_job_task(job_id: int) -> int:
    """Run a CSV import job to the end (it resumes where a stopped worker left it). Returns the
    number of rows processed."""
    from yilian.interop.services import import_job_fail, import_job_run

    try:
        return import_job_run(job_id=job_id).processed_rows
    except Exception as exc:
        logger.exception("import job %s failed", job_id)
        import_job_fail(job_id=job_id, reason=str(exc))
        raise
