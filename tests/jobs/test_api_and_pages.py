"""The jobs API and pages: queue, follow, scope."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Job
from tests.cases.factories import coordinator

pytestmark = pytest.mark.django_db


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_post_queues_a_job_and_answers_202_with_its_url(
    probe_kind, django_capture_on_commit_callbacks
):
    client = api(coordinator())
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/jobs/", {"kind": "test.probe", "params": {"n": 2}}, format="json"
        )
    assert response.status_code == 202
    job = Job.objects.get()
    assert response["Location"] == f"/api/v1/jobs/{job.pk}/"
    assert response.json()["status"] == "pending"  # answered before the commit ran it
    body = client.get(response["Location"]).json()
    assert {k: body[k] for k in ("kind", "label", "status", "done", "total", "percent")} == {
        "kind": "test.probe",
        "label": "测试任务",
        "status": "succeeded",
        "done": 3,
        "total": 3,
        "percent": 100,
    }
    assert body["result"] == {"steps": 3}


def test_an_unknown_kind_is_a_400_on_the_field():
    response = api(coordinator()).post("/api/v1/jobs/", {"kind": "nope"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["kind"]
    assert response.json()["kind"][0].startswith("未知的任务类型「nope」")


def test_bad_params_are_a_400_under_params(probe_kind):
    response = api(coordinator()).post(
        "/api/v1/jobs/", {"kind": "test.probe", "params": {"bad": True}}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"params": {"bad": ["不能为真"]}}
    assert Job.objects.count() == 0


def test_anonymous_callers_are_refused():
    assert APIClient().get("/api/v1/jobs/").status_code in {401, 403}


def test_someone_elses_job_is_not_found_in_the_api_or_the_pages(probe_kind):
    job = services.job_create(actor=coordinator("c1"), kind="test.probe", data={})
    other = coordinator("c2")
    assert api(other).get(f"/api/v1/jobs/{job.pk}/").status_code == 404
    assert api(other).get("/api/v1/jobs/").json()["results"] == []
    assert page(other).get(job.get_absolute_url()).status_code == 404
    assert page(other).get(reverse("jobs:job-progress", args=[job.pk])).status_code == 404


def test_the_job_page_polls_while_pending_and_shows_the_outcome_when_done(probe_kind):
    user = coordinator()
    job = services.job_create(actor=user, kind="test.probe", data={})
    body = page(user).get(job.get_absolute_url()).content.decode()
    assert f'data-job-progress="{reverse("jobs:job-progress", args=[job.pk])}"' in body
    assert "排队等待处理…" in body
    assert "js/jobs.js" in body
    services.job_run(job_id=job.pk)
    body = page(user).get(job.get_absolute_url()).content.decode()
    assert "data-job-progress" not in body
    assert "已完成" in body


def test_the_progress_json_is_never_cached(probe_kind):
    user = coordinator()
    job = services.job_create(actor=user, kind="test.probe", data={})
    response = page(user).get(reverse("jobs:job-progress", args=[job.pk]))
    assert response.json()["status"] == "pending"
    assert "no-cache" in response["Cache-Control"]


def test_the_list_page_shows_my_jobs_and_the_nav_links_to_it(probe_kind):
    user = coordinator()
    job = services.job_create(actor=user, kind="test.probe", data={})
    body = page(user).get(reverse("jobs:job-list")).content.decode()
    assert f'href="{job.get_absolute_url()}"' in body
    assert "测试任务" in body
    dashboard = page(user).get(reverse("cases:dashboard")).content.decode()
    assert f'href="{reverse("jobs:job-list")}"' in dashboard


def test_the_schema_documents_the_jobs_api():
    response = api(coordinator()).get("/api/v1/schema/")
    assert response.status_code == 200
    assert "/api/v1/jobs/{id}/" in response.content.decode()
