"""Bulk registration through the API with a real Redis broker and Celery worker."""

import time
from io import BytesIO

import pytest
from celery.worker import state
from django.core.management import call_command
from openpyxl import Workbook
from rest_framework.test import APIClient

from cases.imports import COLUMNS
from cases.models import Candidate, HeldCertificate
from tests.cases.factories import coordinator, make_id_number

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def workbook(rows) -> BytesIO:
    wb = Workbook()
    ws = wb.active
    ws.title = "考生"
    ws.append(COLUMNS)
    for row in rows:
        ws.append(row)
    buffer = BytesIO()
    wb.save(buffer)
    buffer.seek(0)
    buffer.name = "candidates.xlsx"
    return buffer


def wait_for(client, url, *, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in {"succeeded", "failed"}:
            return body
        time.sleep(0.2)
    raise AssertionError(f"import job still {body['status']} after {seconds} s")


def test_import_is_run_by_the_worker_after_commit(celery_worker):
    client = APIClient()
    client.force_authenticate(coordinator())
    rows = []
    for n in range(20):
        number = make_id_number()
        row = [f"考生{n}", number, "13800138000", "高中/中专/技校", 2, None]
        if n % 2 == 0:
            row += ["MEM-ELEC-LV", f"T{number}", "山西省应急管理厅", "2025-03-01", None, None]
        rows.append(row)
    response = client.post(
        "/api/v1/candidate-imports/", {"file": workbook(rows)}, format="multipart"
    )
    assert response.status_code == 202
    job = wait_for(client, response["Location"])
    assert job["status"] == "succeeded", job["errors"]
    assert state.total_count["cases.tasks.candidate_import_run"] >= 1  # run by the worker
    assert job["processed_rows"] == job["total_rows"] == 20
    assert Candidate.objects.count() == 20
    assert HeldCertificate.objects.count() == 10
    call_command("audit_verify")


def test_a_bad_file_fails_in_the_worker_with_the_row_report(celery_worker):
    client = APIClient()
    client.force_authenticate(coordinator())
    rows = [["张三", "110105199001011234", "13800138000", "高中/中专/技校", 2, None]]
    response = client.post(
        "/api/v1/candidate-imports/", {"file": workbook(rows)}, format="multipart"
    )
    job = wait_for(client, response["Location"])
    assert job["status"] == "failed"
    assert job["errors"] == [{"row": 2, "column": "身份证号码", "message": "身份证号码校验位错误"}]
    assert Candidate.objects.count() == 0
