"""A background job's page in chromium: it polls while the job waits and runs, then
reloads to show the outcome (static/js/jobs.js)."""

import pytest
from playwright.sync_api import Page, expect

from jobs import services as job_services
from jobs.models import Job
from tests.exams.factories import PlanFactory, coordinator, eligible_case, exam_session

from .test_exams import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_the_job_page_follows_a_queued_allocation_to_its_summary(page: Page, live_server):
    coord = coordinator()
    plan = PlanFactory(name="2026年焊工联合评价 第8期")
    exam_session(coord, plan, capacity=1, code="JOB1")
    first, second = eligible_case(coord, plan), eligible_case(coord, plan)
    # Stored as job_create stores it, but not dispatched: a worker has not taken it yet.
    job = Job.objects.create(
        kind="exams.allocate", params={"plan": plan.pk, "sessions": None}, total=2, created_by=coord
    )
    login(page, live_server.url, coord.username)
    page.goto(f"{live_server.url}{job.get_absolute_url()}")
    expect(page.get_by_test_id("job-status")).to_have_text("排队中")
    expect(page.get_by_role("status")).to_have_text("排队等待处理…")

    assert job_services.job_run(job_id=job.pk) is True  # the worker's part

    expect(page.get_by_test_id("job-status")).to_have_text("已完成", timeout=10_000)
    expect(page.get_by_role("status")).to_have_text("自动编排完成：安排 1 人，未安排 1 人")
    expect(page.locator("table.allocated")).to_contain_text(f"#{first.pk}")
    expect(page.locator("ul.unallocated")).to_contain_text(
        f"#{second.pk}：包含其应考科目的场次均已满"
    )
    page.get_by_role("link", name="返回评价计划").click()
    expect(page.get_by_role("heading", name="2026年焊工联合评价 第8期")).to_be_visible()
