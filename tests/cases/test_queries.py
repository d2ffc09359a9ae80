"""List pages and API lists cost the same number of queries for few and many rows."""

from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cases import services

from .factories import PlanFactory, coordinator, hold, register

pytestmark = pytest.mark.django_db


def submitted_cases(coord, plan, n):
    for i in range(n):
        candidate = register(coord, name=f"考生{i}")
        hold(coord, candidate, "SAMR-WELD", verified=i % 2 == 0)
        case = services.case_create(actor=coord, candidate=candidate, plan=plan)
        services.case_submit(actor=coord, case=case, on=date(2026, 6, 1))


def count(fetch) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = fetch()
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "url",
    [
        "/cases/review/",
        "/cases/",
        "/candidates/",
        "/api/v1/cases/",
        "/api/v1/candidates/",
        "/api/v1/held-certificates/",
    ],
)
def test_list_queries_do_not_grow_with_rows(url):
    coord = coordinator()
    plan = PlanFactory()
    client = APIClient()
    client.force_login(coord)
    submitted_cases(coord, plan, 2)
    few = count(lambda: client.get(url))
    submitted_cases(coord, plan, 8)
    many = count(lambda: client.get(url))
    assert many == few, f"{url}: {few} queries for 2 rows, {many} for 10"


def test_review_queue_flags_unverified_and_revoked_basis_certificates():
    coord = coordinator()
    plan = PlanFactory()
    candidate = register(coord)
    held = hold(coord, candidate, "SAMR-WELD", verified=False)
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    services.case_submit(actor=coord, case=case, on=date(2026, 6, 1))
    client = APIClient()
    client.force_login(coord)
    page = client.get("/cases/review/").content.decode()
    assert f"证书 SAMR-WELD {held.number} 尚未核验（未核验）" in page
