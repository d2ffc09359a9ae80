"""Batch approval and issuance as background jobs (issuance.jobs), through the API."""

import pytest
from rest_framework.test import APIClient

from issuance import services
from issuance.models import Certificate, CertificateStatus
from jobs.models import Job

from .factories import BOTH, passed_cases

pytestmark = pytest.mark.django_db


@pytest.fixture
def certs(mem, inst):
    cases = passed_cases((BOTH, BOTH))
    services.certificates_open(case_ids=[c.pk for c in cases])
    return list(Certificate.objects.filter(kind="skill").order_by("case_id"))


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post_job(client, capture, kind, params):
    with capture(execute=True):
        response = client.post("/api/v1/jobs/", {"kind": kind, "params": params}, format="json")
    return response


def test_a_batch_issue_job_issues_and_then_follows_the_pdfs(
    certs, inst_officer, django_capture_on_commit_callbacks
):
    services.certificates_approve(actor=inst_officer, certificates=certs)
    client = client_for(inst_officer)
    ids = [c.pk for c in certs]
    response = post_job(
        client,
        django_capture_on_commit_callbacks,
        "issuance.issue",
        {"ids": ids, "on": "2026-11-20"},
    )
    assert response.status_code == 202
    body = client.get(response["Location"]).json()
    assert (body["status"], body["done"], body["total"], body["result"]) == (
        "succeeded",
        2,
        2,
        {"count": 2, "ids": ids},
    )
    assert body["message"] == "已批量发证 2 份证书"
    assert body["follow_up"] == {
        "done": 2,
        "total": 2,
        "finished": True,
        "message": "已生成 2 / 2 份PDF",
    }
    assert [c.number for c in Certificate.objects.filter(pk__in=ids).order_by("case_id")] == [
        "S123414000001265000001",
        "S123414000001265000002",
    ]


def test_a_batch_approve_job_that_a_state_stops_writes_nothing(
    certs, inst_officer, django_capture_on_commit_callbacks
):
    first, second = certs
    services.certificate_approve(actor=inst_officer, certificate=second)
    client = client_for(inst_officer)
    response = post_job(
        client,
        django_capture_on_commit_callbacks,
        "issuance.approve",
        {"ids": [first.pk, second.pk]},
    )
    assert response.status_code == 202
    body = client.get(response["Location"]).json()
    assert body["status"] == "failed"
    assert body["error"].startswith(f"证书 #{second.pk}（")
    first.refresh_from_db()
    assert first.status == CertificateStatus.PENDING


def test_another_issuers_certificate_is_not_found_and_nothing_is_queued(certs, mem_officer):
    response = client_for(mem_officer).post(
        "/api/v1/jobs/",
        {"kind": "issuance.approve", "params": {"ids": [certs[0].pk]}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"params": {"ids": [f"证书不存在：#{certs[0].pk}"]}}
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"ids": ["请先勾选证书"]}),
        ({"ids": ["x"]}, {"ids": ["证书编号应为整数"]}),
        ({"ids": [1], "on": "2026-02-30"}, {"on": ["发证日期格式不正确，应为 YYYY-MM-DD"]}),
    ],
)
def test_bad_params_are_a_400_naming_the_field(certs, inst_officer, params, expected):
    response = client_for(inst_officer).post(
        "/api/v1/jobs/", {"kind": "issuance.issue", "params": params}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"params": expected}


def test_certificate_jobs_are_for_officers(certs):
    from tests.cases.factories import coordinator

    response = client_for(coordinator()).post(
        "/api/v1/jobs/",
        {"kind": "issuance.approve", "params": {"ids": [certs[0].pk]}},
        format="json",
    )
    assert response.status_code == 403
