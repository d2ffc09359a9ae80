from celery import shared_task

from .services import job_run as run
from .services import jobs_sweep


@shared_task(acks_late=True, reject_on_worker_lost=True)
def job_run(job_id: int) -> bool:
    """Run a queued batch (jobs.services.job_run). Idempotent: the job is claimed with
    a conditional UPDATE, so a redelivered message does nothing."""
    return run(job_id=job_id)


@shared_task
def job_sweep() -> list[int]:
    """Re-dispatch jobs left pending, or stranded by a dead worker."""
    return jobs_sweep()
