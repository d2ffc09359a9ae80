"""Long batches run by a Celery worker, with progress (issue 5 item 1).

A Job is one user action that is too long for a request: seating a plan's candidates,
approving or issuing hundreds of certificates. The work itself is a service of the app
that owns it (exams.scheduling.sessions_allocate, issuance.services.certificates_issue,
...), registered here as a kind (jobs.registry); this app imports none of them, the way
`audit` imports no app.
"""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _


class JobStatus(models.TextChoices):
    PENDING = "pending", _("排队中")
    RUNNING = "running", _("处理中")
    SUCCEEDED = "succeeded", _("已完成")
    FAILED = "failed", _("失败")


class Job(models.Model):
    """One queued batch and its outcome.

    The status is a plain field moved by conditional UPDATEs (a worker claims a pending
    job; the claim is fenced on `started_at`), not a transition: like an import job it
    has no actor-driven workflow. The batch's own writes are one transaction in its
    service (all or nothing); `result` is what the page shows afterwards, `error` why
    nothing was written.
    """

    kind = models.CharField("类型", max_length=64)
    params = models.JSONField("参数", default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="提交人", on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField("提交时间", auto_now_add=True)
    status = models.CharField(
        "状态", max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING
    )
    total = models.PositiveIntegerField("总数", default=0)
    attempts = models.PositiveSmallIntegerField("执行次数", default=0)
    started_at = models.DateTimeField("开始时间", null=True, blank=True)
    finished_at = models.DateTimeField("完成时间", null=True, blank=True)
    result = models.JSONField("结果", default=dict, blank=True)
    error = models.TextField("失败原因", blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "后台任务"
        verbose_name_plural = "后台任务"
        indexes = [
            # The sweep's look-up: jobs nobody is working on.
            models.Index(fields=["status", "created_at"], name="jobs_status_created"),
            models.Index(fields=["created_by", "-created_at"], name="jobs_creator_recent"),
        ]

    def __str__(self) -> str:
        return f"后台任务 #{self.pk} {self.kind}"

    def get_absolute_url(self) -> str:
        return reverse("jobs:job-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in {JobStatus.SUCCEEDED, JobStatus.FAILED}
