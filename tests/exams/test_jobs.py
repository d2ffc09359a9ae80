"""Allocation as a background job (exams.jobs): checked before it is queued, run by the
real sessions_allocate, progress reported per case."""

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError

from jobs import services as job_services
from jobs.models import Job, JobStatus
from tests.cases.factories import PlanFactory, UserFactory

from .factories import eligible_case, exam_session

pytestmark = pytest.mark.django_db


def allocate(actor, **data) -> Job:
    return job_services.job_create(actor=actor, kind="exams.allocate", data=data)


def test_the_job_seats_the_plan_and_keeps_the_summary(coord, plan):
    session = exam_session(coord, plan, capacity=2, code="S1")
    cases = [eligible_case(coord, plan) for _ in range(3)]
    job = allocate(coord, plan=plan.pk)
    assert (job.params, job.total) == ({"plan": plan.pk, "sessions": None}, 3)
    assert job_services.job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert [(r["case"], r["session"], r["seat"]) for r in job.result["allocated"]] == [
        (cases[0].pk, session.code, 1),
        (cases[1].pk, session.code, 2),
    ]
    assert job.result["unallocated"] == [
        {"case": cases[2].pk, "reason": "包含其应考科目的场次均已满"}
    ]
    assert job_services.job_progress(job)["message"] == "自动编排完成：安排 2 人，未安排 1 人"


def test_the_job_reports_each_case_as_it_is_seated(coord, plan, monkeypatch):
    exam_session(coord, plan, capacity=5, code="S1")
    for _ in range(3):
        eligible_case(coord, plan)
    job = allocate(coord, plan=plan.pk)
    published = []
    real_set = cache.set

    def recording_set(key, value, *args, **kwargs):
        if key == f"jobs:progress:{job.pk}":
            published.append(list(value))
        return real_set(key, value, *args, **kwargs)

    monkeypatch.setattr(job_services, "PUBLISH_EVERY", 0)
    monkeypatch.setattr(job_services.cache, "set", recording_set)
    job_services.job_run(job_id=job.pk)
    assert published == [[0, 3], [1, 3], [2, 3], [3, 3]]


def test_a_job_for_one_session_allocates_into_it_only(coord, plan):
    first = exam_session(coord, plan, capacity=5, code="S1")
    second = exam_session(coord, plan, capacity=5, code="S2")
    eligible_case(coord, plan)
    job = allocate(coord, plan=plan.pk, sessions=[second.pk])
    job_services.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert [r["session"] for r in job.result["allocated"]] == [second.code]
    assert first.bookings.count() == 0


def test_a_plan_without_open_sessions_is_refused_before_queueing(coord, plan):
    eligible_case(coord, plan)
    with pytest.raises(ValidationError) as caught:
        allocate(coord, plan=plan.pk)
    assert caught.value.message_dict == {"sessions": ["本评价计划没有开放编排的场次"]}
    assert Job.objects.count() == 0


def test_a_session_of_another_plan_is_refused_before_queueing(coord, plan):
    other = PlanFactory(name="另一计划")
    session = exam_session(coord, other, capacity=5, code="X1")
    with pytest.raises(ValidationError) as caught:
        allocate(coord, plan=plan.pk, sessions=[session.pk])
    assert caught.value.message_dict == {"sessions": [f"场次 X1 不属于评价计划「{plan.name}」"]}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "plan", "必须指定评价计划"),
        ({"plan": "abc"}, "plan", "应为编号（整数）"),
        ({"plan": 999999}, "plan", "评价计划 #999999 不存在"),
        ({"sessions": [999999]}, "sessions", "场次不存在：999999"),
    ],
)
def test_bad_input_names_the_field(coord, plan, data, field, message):
    if "sessions" in data:
        data = {"plan": plan.pk, **data}
    with pytest.raises(ValidationError) as caught:
        allocate(coord, **data)
    assert caught.value.message_dict == {field: [message]}


def test_allocation_jobs_are_for_coordinators(plan):
    grader = UserFactory(username="g", roles=["grader"])
    with pytest.raises(PermissionDenied):
        allocate(grader, plan=plan.pk)
    assert Job.objects.count() == 0
