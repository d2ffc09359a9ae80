"""jobs.services: queueing, claiming, progress, failure and the sweep."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.exceptions import StateConflict
from jobs import services
from jobs.models import Job, JobStatus
from tests.cases.factories import UserFactory, coordinator

pytestmark = pytest.mark.django_db


def queued(user, data=None) -> Job:
    """A job stored without running (its dispatch is an on_commit callback, which the
    test transaction never fires)."""
    return services.job_create(actor=user, kind="test.probe", data=data or {})


def test_create_stores_the_prepared_params_and_size(probe_kind):
    user = coordinator()
    job = queued(user, {"n": 1})
    assert (job.kind, job.params, job.total, job.status, job.created_by) == (
        "test.probe",
        {"n": 1},
        3,
        JobStatus.PENDING,
        user,
    )


def test_create_dispatches_after_commit_and_the_job_runs(
    probe_kind, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = queued(coordinator())
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, {"steps": 3}, 1)
    assert job.started_at is not None
    assert job.finished_at is not None


def test_create_with_an_unknown_kind_names_the_field():
    with pytest.raises(ValidationError) as caught:
        services.job_create(actor=coordinator(), kind="nope", data={})
    assert list(caught.value.message_dict) == ["kind"]
    assert caught.value.message_dict["kind"][0].startswith("未知的任务类型「nope」")
    assert Job.objects.count() == 0


def test_create_with_bad_params_stores_nothing(probe_kind):
    with pytest.raises(ValidationError) as caught:
        queued(coordinator(), {"bad": True})
    assert caught.value.message_dict == {"bad": ["不能为真"]}
    assert Job.objects.count() == 0


def test_progress_is_visible_while_the_batch_runs(probe_kind):
    seen, _behaviour = probe_kind
    job = queued(coordinator())
    assert services.job_run(job_id=job.pk) is True
    assert [(p["status"], p["done"], p["total"], p["percent"]) for p in seen] == [
        ("running", 1, 3, 33),
        # Throttled: a step within PUBLISH_EVERY of the last is not published...
        ("running", 1, 3, 33),
        # ...but the last one always is.
        ("running", 3, 3, 100),
    ]
    assert seen[0]["message"] == "处理中：1 / 3"
    job.refresh_from_db()
    answer = services.job_progress(job)
    assert (answer["status"], answer["done"], answer["total"], answer["finished"]) == (
        "succeeded",
        3,
        3,
        True,
    )
    assert answer["result"] == {"steps": 3}


def test_a_pending_job_reports_nothing_done_yet(probe_kind):
    answer = services.job_progress(queued(coordinator()))
    assert (answer["status"], answer["done"], answer["percent"], answer["message"]) == (
        "pending",
        0,
        0,
        "排队等待处理…",
    )


def test_a_refused_batch_fails_with_the_services_message(probe_kind):
    _seen, behaviour = probe_kind
    behaviour["raise"] = StateConflict("证书 #7 当前状态为「已发证」")
    job = queued(coordinator())
    assert services.job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert (job.status, job.error, job.result) == (
        JobStatus.FAILED,
        "证书 #7 当前状态为「已发证」",
        {},
    )
    assert services.job_progress(job)["message"] == "失败：证书 #7 当前状态为「已发证」"


def test_a_validation_error_fails_with_all_its_messages(probe_kind):
    _seen, behaviour = probe_kind
    behaviour["raise"] = ValidationError({"sessions": ["甲", "乙"]})
    job = queued(coordinator())
    services.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.error == "甲；乙"


def test_a_permission_error_fails_with_its_message(probe_kind):
    _seen, behaviour = probe_kind
    behaviour["raise"] = PermissionDenied("需要以下角色之一：发证机关人员")
    job = queued(coordinator())
    services.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.error == "需要以下角色之一：发证机关人员"


def test_an_unexpected_error_is_logged_and_the_user_told_plainly(probe_kind, caplog):
    _seen, behaviour = probe_kind
    behaviour["raise"] = RuntimeError("disk on fire")
    job = queued(coordinator())
    services.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "处理时发生系统错误，未写入任何数据；请联系系统管理员"
    assert f"job {job.pk} (test.probe) failed" in caplog.text


def test_a_second_run_of_the_same_job_does_nothing(probe_kind):
    seen, _behaviour = probe_kind
    job = queued(coordinator())
    assert services.job_run(job_id=job.pk) is True
    assert services.job_run(job_id=job.pk) is False
    assert len(seen) == 3
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_running_job_is_not_claimed_again_until_its_worker_is_presumed_dead(probe_kind, settings):
    job = queued(coordinator())
    started = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=started)
    assert services.job_run(job_id=job.pk) is False
    Job.objects.filter(pk=job.pk).update(started_at=started - timedelta(seconds=61))
    assert services.job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)


def test_the_sweep_redispatches_lost_and_stranded_jobs_only(
    probe_kind, settings, django_capture_on_commit_callbacks
):
    user = coordinator()
    fresh, lost, stranded, done = (queued(user) for _ in range(4))
    now = timezone.now()
    Job.objects.filter(pk=lost.pk).update(created_at=now - timedelta(minutes=6))
    Job.objects.filter(pk=stranded.pk).update(
        status=JobStatus.RUNNING,
        started_at=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 61),
    )
    Job.objects.filter(pk=done.pk).update(
        status=JobStatus.SUCCEEDED, created_at=now - timedelta(hours=1)
    )
    assert sorted(services.jobs_sweep()) == sorted([lost.pk, stranded.pk])
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {
        fresh.pk: JobStatus.PENDING,
        lost.pk: JobStatus.SUCCEEDED,
        stranded.pk: JobStatus.SUCCEEDED,
        done.pk: JobStatus.SUCCEEDED,
    }


def test_users_follow_their_own_jobs_and_an_admin_everyones(probe_kind):
    mine, theirs = coordinator("c1"), coordinator("c2")
    admin = UserFactory(username="boss", roles=["admin"])
    job = queued(mine)
    other = queued(theirs)
    assert list(services.job_list(user=mine)) == [job]
    assert list(services.job_list(user=theirs)) == [other]
    assert list(services.job_list(user=admin)) == [other, job]


def test_a_job_of_a_kind_no_longer_registered_fails_instead_of_looping(probe_kind):
    job = queued(coordinator())
    Job.objects.filter(pk=job.pk).update(kind="gone.away")
    assert services.job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert (job.status, job.error) == (
        JobStatus.FAILED,
        "未知的任务类型「gone.away」；可用：exams.allocate、issuance.approve、issuance.issue、test.probe",
    )
