"""A batch issue queued through the API and run by a real Celery worker (Redis broker,
PostgreSQL): the job is followed to its end, then its PDFs, as the page follows them."""

import time

import pytest
from celery.contrib.testing.worker import start_worker
from celery.worker import state
from rest_framework.test import APIClient

from config.celery import app as celery_app
from issuance import services
from issuance.keys import issuer_keys_ensure
from issuance.models import Certificate, CertificateStatus, Issuer
from tests.issuance.factories import BOTH, institution, officer, passed_cases

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def poll(client, url, done, *, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if done(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"still {body} after {seconds} s")


def test_a_batch_issue_job_runs_in_the_worker_and_its_pdfs_follow(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SIGNING_KEYS_DIR = tmp_path / "keys"
    inst = institution()
    actor = officer(inst)
    # Opening the certificates runs in-process; only the job and the PDFs go to the worker.
    celery_app.conf.task_always_eager = True
    cases = passed_cases([BOTH] * 4)
    services.certificates_open(case_ids=[c.pk for c in cases])
    ids = list(Certificate.objects.filter(issuer=inst).order_by("pk").values_list("pk", flat=True))
    services.certificates_approve(
        actor=actor, certificates=list(Certificate.objects.filter(pk__in=ids))
    )
    for issuer in Issuer.objects.all():
        issuer_keys_ensure(issuer)
    client = APIClient()
    client.force_authenticate(actor)
    celery_app.conf.task_always_eager = False
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        response = client.post(
            "/api/v1/jobs/", {"kind": "issuance.issue", "params": {"ids": ids}}, format="json"
        )
        assert response.status_code == 202
        assert response.json()["status"] == "pending"
        job = poll(client, response["Location"], lambda body: body["finished"])
        assert (job["status"], job["done"], job["total"]) == ("succeeded", 4, 4), job
        job = poll(client, response["Location"], lambda body: body["follow_up"]["finished"])
    assert job["follow_up"]["done"] == 4
    assert state.total_count["jobs.tasks.job_run"] >= 1  # run by the worker
    issued = Certificate.objects.filter(pk__in=ids)
    assert {c.status for c in issued} == {CertificateStatus.ISSUED}
    assert all(c.pdf_sha256 for c in issued)
