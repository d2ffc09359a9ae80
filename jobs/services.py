"""Queue, run, follow and sweep long batches (issue 5 item 1).

A page or API call checks its input through the kind's `prepare` (bad input: a 400
with field messages, nothing queued), stores a Job and dispatches `jobs.tasks.job_run`
after commit. The worker claims the job, runs the kind's one service call and records
the outcome. The service's writes are one transaction (all or nothing), so the
progress a user sees while it runs cannot come from rows it has not committed: it is
published to the cache (Redis in production: CACHE_URL, shared by web and workers; the
embedded default runs the job inside the request, where there is nothing to poll).
"""

import logging
import time
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django_fsm import ConcurrentTransition, TransitionNotAllowed

from audit.exceptions import DomainError
from cases.roles import Role, has_role

from .models import Job, JobStatus
from .registry import kind_get

logger = logging.getLogger(__name__)

# A pending job older than this lost its dispatch (the web process died between commit
# and on_commit, or the broker was down); the sweep sends it again.
PENDING_GRACE = timedelta(minutes=5)
# Progress is published at most this often (and always at the end): a batch of 10,000
# would otherwise make 10,000 cache round trips.
PUBLISH_EVERY = 0.5


def _stale_before(now):
    """A job running since before this was claimed by a worker that died (the task's
    hard time limit has passed): it may be claimed again."""
    return now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def _progress_key(job_id: int) -> str:
    return f"jobs:progress:{job_id}"


def job_create(*, actor, kind: str, data: dict[str, Any]) -> Job:
    """Check `data` with the kind's `prepare` and queue the job.

    Raises ValidationError (field messages) or PermissionDenied before anything is
    stored. The task is dispatched with transaction.on_commit: a worker never sees a
    job that was rolled back. Under the embedded default (eager Celery) the job has
    run by the time this returns.
    """
    job_kind = kind_get(kind)
    prepared = job_kind.prepare(actor=actor, data=data)
    with transaction.atomic(durable=True):
        job = Job.objects.create(
            kind=kind, params=prepared.params, total=prepared.total, created_by=actor
        )
        job_id = job.pk
        transaction.on_commit(lambda: _dispatch(job_id))
    job.refresh_from_db()
    return job


def _dispatch(job_id: int) -> None:
    from .tasks import job_run  # tasks imports this module

    # The soft limit lets the run record a timeout on the job before the hard limit
    # kills it; the hard limit is the global CELERY_TASK_TIME_LIMIT.
    hard = settings.CELERY_TASK_TIME_LIMIT
    job_run.apply_async(args=[job_id], soft_time_limit=max(hard - 30, hard * 0.9))


# What a service raises to refuse a batch: the job fails with its message, no traceback.
EXPECTED = (
    ValidationError,
    DomainError,
    PermissionDenied,
    ConcurrentTransition,
    TransitionNotAllowed,
    SoftTimeLimitExceeded,
)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "；".join(exc.messages)
    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, ConcurrentTransition):
        return _("数据已被他人同时修改，未写入任何数据；请刷新后重试")
    if isinstance(exc, PermissionDenied | TransitionNotAllowed):
        return str(exc) or _("没有权限执行此操作")
    if isinstance(exc, SoftTimeLimitExceeded):
        return _("处理超时，未写入任何数据；请减少数量后分批提交")
    return _("处理时发生系统错误，未写入任何数据；请联系系统管理员")


def job_run(*, job_id: int) -> bool:
    """Run job `job_id`; the body of the job_run task.

    Idempotent: claims the job with a conditional UPDATE (pending -> running, or a
    running job whose worker died: past the hard time limit) and returns False without
    doing anything when the claim fails, so a redelivered message (acks_late) changes
    nothing. The kind's service is one transaction: a run that dies writes nothing and
    the sweep runs the job again. The outcome is recorded only if this run still owns
    the claim.

    If a worker dies after the service committed but before the outcome is recorded
    (a few milliseconds), the re-run finds the work done and the service refuses it
    (e.g. "证书 #12 当前状态为「已发证」"): the job ends failed with that message and
    nothing is written twice.
    """
    now = timezone.now()
    claimed = (
        Job.objects.filter(pk=job_id)
        .filter(
            Q(status=JobStatus.PENDING)
            | Q(status=JobStatus.RUNNING, started_at__lt=_stale_before(now))
        )
        .update(status=JobStatus.RUNNING, started_at=now, attempts=F("attempts") + 1)
    )
    if claimed != 1:
        return False
    job = Job.objects.select_related("created_by").get(pk=job_id)
    owned = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, started_at=now)
    key = _progress_key(job_id)
    timeout = settings.CELERY_TASK_TIME_LIMIT + 3600
    cache.set(key, [0, job.total], timeout)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        clock = time.monotonic()
        if done >= total or clock - last[0] >= PUBLISH_EVERY:
            last[0] = clock
            cache.set(key, [done, total], timeout)

    try:
        # Inside the try: a kind no longer registered fails its job instead of leaving it
        # running for the sweep to dispatch again and again.
        result = kind_get(job.kind).run(job=job, progress=progress)
    except Exception as exc:
        if not isinstance(exc, EXPECTED):
            logger.exception("job %s (%s) failed", job_id, job.kind)
        owned.update(status=JobStatus.FAILED, error=_failure(exc), finished_at=timezone.now())
    else:
        owned.update(status=JobStatus.SUCCEEDED, result=result, finished_at=timezone.now())
    cache.delete(key)  # after the outcome is stored: a poller never sees a running 0
    return True


def jobs_sweep() -> list[int]:
    """Re-dispatch jobs no worker is working on: pending past PENDING_GRACE, or running
    past the task time limit (a worker died mid-run; the redelivered message found the
    job still claimed and left it). Safe to repeat: the task claims before working.
    Returns the ids dispatched. Run by Celery beat (config/settings.py)."""
    now = timezone.now()
    job_ids = list(
        Job.objects.filter(
            Q(status=JobStatus.PENDING, created_at__lt=now - PENDING_GRACE)
            | Q(status=JobStatus.RUNNING, started_at__lt=_stale_before(now))
        ).values_list("pk", flat=True)
    )
    for job_id in job_ids:
        _dispatch(job_id)
    return job_ids


# Reads -------------------------------------------------------------------------------


def job_list(*, user):
    """The jobs `user` may follow, newest first: their own; an admin sees everyone's."""
    jobs = Job.objects.select_related("created_by")
    if has_role(user, Role.ADMIN):
        return jobs
    return jobs.filter(created_by=user)


def job_progress(job: Job, *, follow_up: bool = True) -> dict[str, Any]:
    """What the job page polls and the API returns: status, done/total, a message, and
    when finished the result or the reason it failed; with `follow_up`, what keeps
    going after a succeeded job (a query: lists leave it out)."""
    job_kind = kind_get(job.kind)
    done, total = 0, job.total
    if job.status == JobStatus.RUNNING:
        published = cache.get(_progress_key(job.pk))
        if published:
            done, total = published
    elif job.status == JobStatus.SUCCEEDED:
        done = total
    percent = min(100, done * 100 // total) if total else (100 if job.is_finished else 0)
    if job.status == JobStatus.PENDING:
        message = _("排队等待处理…")
    elif job.status == JobStatus.RUNNING:
        message = _("处理中：%(done)d / %(total)d") % {"done": done, "total": total}
    elif job.status == JobStatus.SUCCEEDED:
        message = job_kind.summary(job) if job_kind.summary else _("已完成")
    else:
        message = _("失败：%(error)s") % {"error": job.error}
    answer = {
        "id": job.pk,
        "kind": job.kind,
        "label": str(job_kind.label),
        "status": job.status,
        "done": done,
        "total": total,
        "percent": percent,
        "message": message,
        "finished": job.is_finished,
        "result": job.result if job.status == JobStatus.SUCCEEDED else None,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
    if follow_up and job_kind.follow_up and job.status == JobStatus.SUCCEEDED:
        answer["follow_up"] = job_kind.follow_up(job)
    return answer
