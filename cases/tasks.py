"""Celery tasks of the cases app: thin wrappers that take ids and call one service."""

from celery import shared_task

from .imports import import_job_run, import_jobs_sweep


@shared_task(acks_late=True, reject_on_worker_lost=True)
def candidate_import_run(job_id: int) -> bool:
    """Import the XLSX of ImportJob `job_id`. Idempotent (the job is claimed with a
    conditional UPDATE), so a redelivered message does nothing; see import_job_run."""
    return import_job_run(job_id=job_id)


@shared_task
def candidate_import_sweep() -> list[int]:
    """Re-dispatch import jobs left pending or stranded by a dead worker."""
    return import_jobs_sweep()
