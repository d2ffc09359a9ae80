"""Certificates API: reads scoped to the officer's issuer, the transitions with their
403 / 409 / 400 answers, all-or-nothing batches, the signed PDF, the due-for-review
list, and a query count independent of the number of certificates. The rules themselves
are tested with the services (test_services.py)."""

from datetime import date

import pytest
from dateutil.relativedelta import relativedelta
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from issuance import services
from issuance.models import Certificate, CertificateStatus, SerialCounter
from issuance.pdf import certificate_pdf_store, pdf_signature_status
from tests.cases.factories import UserFactory

from .factories import BOTH, passed_cases

pytestmark = pytest.mark.django_db

ON = date(2026, 11, 20)
URL = "/api/v1/certificates/"


@pytest.fixture
def certs(mem, inst):
    """The pending certificates of two cases that earned both: {"qualification": [first
    case's, second case's], "skill": [...]}."""
    cases = passed_cases((BOTH, BOTH))
    services.certificates_open(case_ids=[c.pk for c in cases])
    by_kind = {"qualification": [], "skill": []}
    for case in cases:
        for certificate in Certificate.objects.filter(case=case).order_by("kind"):
            by_kind[certificate.kind].append(certificate)
    return by_kind


@pytest.fixture
def storage(settings, tmp_path):
    """PDFs and signing keys under a throwaway directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SIGNING_KEYS_DIR = tmp_path / "keys"


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def fresh(certificate):
    return Certificate.objects.get(pk=certificate.pk)


def issued(actor, certificate, on=ON):
    services.certificate_approve(actor=actor, certificate=certificate)
    return services.certificate_issue(actor=actor, certificate=certificate, on=on)


# Reads -------------------------------------------------------------------------------


def test_an_officer_lists_only_the_certificates_of_their_issuer(certs, mem_officer, inst_officer):
    mine = client_for(mem_officer).get(URL).json()
    theirs = client_for(inst_officer).get(URL).json()
    assert sorted(row["id"] for row in mine["results"]) == sorted(
        c.pk for c in certs["qualification"]
    )
    assert sorted(row["id"] for row in theirs["results"]) == sorted(c.pk for c in certs["skill"])
    assert (mine["count"], theirs["count"]) == (2, 2)


def test_an_admin_lists_every_issuers_certificates(certs):
    admin = UserFactory(username="root", is_superuser=True)
    assert client_for(admin).get(URL).json()["count"] == 4


def test_the_officer_sees_the_holder_with_the_id_number_masked(certs, mem_officer):
    certificate = certs["qualification"][0]
    row = client_for(mem_officer).get(f"{URL}{certificate.pk}/").json()
    assert row["holder_name"] == certificate.holder_name
    assert row["holder_id_number"] == certificate.masked_id_number
    assert certificate.holder_id_number not in str(row)
    assert row["status"] == "pending"
    assert (row["issuer"], row["type_code"], row["number"]) == ("mem-14", "MEM-WELD-FC", None)
    assert (row["pdf_available"], row["pdf_url"], row["verification_url"]) == (False, None, None)


def test_another_issuers_certificate_is_not_found(certs, mem_officer):
    response = client_for(mem_officer).get(f"{URL}{certs['skill'][0].pk}/")
    assert response.status_code == 404


def test_the_list_filters_by_exact_number(certs, inst_officer):
    first, second = certs["skill"]
    first, second = issued(inst_officer, first), issued(inst_officer, second)
    api = client_for(inst_officer)
    body = api.get(URL, {"number": first.number}).json()
    assert [row["id"] for row in body["results"]] == [first.pk]
    assert body["results"][0]["number"] == first.number
    assert api.get(URL, {"number": first.number[:-1]}).json()["count"] == 0


def test_the_list_filters_by_status_and_kind(certs, inst_officer):
    issued(inst_officer, certs["skill"][0])
    api = client_for(inst_officer)
    assert [r["id"] for r in api.get(URL, {"status": "pending"}).json()["results"]] == [
        certs["skill"][1].pk
    ]
    assert api.get(URL, {"status": "issued", "kind": "skill"}).json()["count"] == 1
    assert api.get(URL, {"kind": "qualification"}).json()["count"] == 0


def test_an_unknown_status_filter_is_a_400(certs, inst_officer):
    response = client_for(inst_officer).get(URL, {"status": "lost"})
    assert response.status_code == 400
    assert list(response.json()) == ["status"]


@pytest.mark.parametrize("roles", [["grader"], ["coordinator"], ["reviewer"]])
def test_other_roles_get_403(certs, roles):
    api = client_for(UserFactory(roles=roles))
    assert api.get(URL).status_code == 403
    assert api.post(f"{URL}{certs['skill'][0].pk}/approve/").status_code == 403
    assert fresh(certs["skill"][0]).status == CertificateStatus.PENDING


def test_an_officer_without_an_issuer_sees_nothing(certs):
    api = client_for(UserFactory(roles=["issuer_officer"]))
    assert api.get(URL).json()["count"] == 0


# Transitions -------------------------------------------------------------------------


def test_approve_then_issue_through_the_api(certs, inst_officer):
    certificate = certs["skill"][0]
    api = client_for(inst_officer)
    approved = api.post(f"{URL}{certificate.pk}/approve/")
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    response = api.post(f"{URL}{certificate.pk}/issue/", {"on": "2026-11-20"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "issued"
    assert body["number"] == "S123414000001265000001"
    assert body["issued_on"] == "2026-11-20"
    assert body["verification_url"].startswith("http://")
    assert body["verification_url"].endswith(f"/verify/{fresh(certificate).verification_code}/")


def test_approving_another_issuers_certificate_is_403(certs, mem_officer):
    certificate = certs["skill"][0]
    response = client_for(mem_officer).post(f"{URL}{certificate.pk}/approve/")
    assert response.status_code == 403
    assert response.json()["detail"] == "只能办理本机构的证书"
    assert fresh(certificate).status == CertificateStatus.PENDING


@pytest.mark.parametrize("name", ["issue", "refuse", "revoke"])
def test_every_transition_on_another_issuers_certificate_is_403(certs, inst_officer, name):
    response = client_for(inst_officer).post(
        f"{URL}{certs['qualification'][0].pk}/{name}/", {"reason": "核查"}, format="json"
    )
    assert response.status_code == 403


def test_issuing_twice_is_409_and_takes_no_second_serial(certs, inst_officer):
    certificate = certs["skill"][0]
    api = client_for(inst_officer)
    api.post(f"{URL}{certificate.pk}/approve/")
    first = api.post(f"{URL}{certificate.pk}/issue/", {"on": "2026-11-20"}, format="json")
    second = api.post(f"{URL}{certificate.pk}/issue/", {"on": "2026-11-20"}, format="json")
    assert (first.status_code, second.status_code) == (200, 409)
    assert second.json()["current_state"] == "issued"
    assert second.json()["detail"] == "证书当前状态为「已发证」，不能变为「已发证」"
    assert fresh(certificate).number == first.json()["number"] == "S123414000001265000001"
    assert list(SerialCounter.objects.values_list("period", "last")) == [("2026-5", 1)]


def test_approving_an_issued_certificate_is_409(certs, inst_officer):
    certificate = issued(inst_officer, certs["skill"][0])
    response = client_for(inst_officer).post(f"{URL}{certificate.pk}/approve/")
    assert response.status_code == 409
    assert response.json()["target_state"] == "approved"


def test_revoking_without_a_reason_is_400(certs, inst_officer):
    certificate = issued(inst_officer, certs["skill"][0])
    response = client_for(inst_officer).post(
        f"{URL}{certificate.pk}/revoke/", {"reason": "  "}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"reason": ["请填写撤销理由"]}
    assert fresh(certificate).status == CertificateStatus.ISSUED


def test_revoking_with_a_reason(certs, inst_officer):
    certificate = issued(inst_officer, certs["skill"][0])
    response = client_for(inst_officer).post(
        f"{URL}{certificate.pk}/revoke/", {"reason": "考核舞弊，经查属实"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["reason"]) == ("revoked", "考核舞弊，经查属实")
    assert body["revoked_on"] == timezone.localdate().isoformat()
    assert fresh(certs["qualification"][0]).status == CertificateStatus.PENDING


def test_refusing_needs_a_reason(certs, mem_officer):
    certificate = certs["qualification"][0]
    api = client_for(mem_officer)
    assert api.post(f"{URL}{certificate.pk}/refuse/").json() == {"reason": ["请填写不予发证的理由"]}
    response = api.post(f"{URL}{certificate.pk}/refuse/", {"reason": "资料不实"}, format="json")
    assert (response.status_code, response.json()["status"]) == (200, "refused")


# Batches -----------------------------------------------------------------------------


def test_batch_approve_approves_them_all(certs, inst_officer):
    ids = [c.pk for c in certs["skill"]]
    response = client_for(inst_officer).post(f"{URL}batch-approve/", {"ids": ids}, format="json")
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert sorted(r["id"] for r in response.json()["results"]) == sorted(ids)
    assert {fresh(c).status for c in certs["skill"]} == {CertificateStatus.APPROVED}


def test_batch_approve_with_another_issuers_certificate_is_403_and_changes_nothing(
    certs, inst_officer
):
    ids = [c.pk for c in certs["skill"]] + [certs["qualification"][0].pk]
    response = client_for(inst_officer).post(f"{URL}batch-approve/", {"ids": ids}, format="json")
    assert response.status_code == 403
    assert f"证书 #{certs['qualification'][0].pk}" in response.json()["detail"]
    assert {fresh(c).status for c in certs["skill"]} == {CertificateStatus.PENDING}


def test_batch_approve_with_one_already_approved_changes_nothing(certs, inst_officer):
    first, second = certs["skill"]
    services.certificate_approve(actor=inst_officer, certificate=second)
    response = client_for(inst_officer).post(
        f"{URL}batch-approve/", {"ids": [first.pk, second.pk]}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"证书 #{second.pk}（")
    assert "不能变为「已审批」" in response.json()["detail"]
    assert fresh(first).status == CertificateStatus.PENDING


def test_batch_with_an_unknown_id_is_400_and_changes_nothing(certs, inst_officer):
    response = client_for(inst_officer).post(
        f"{URL}batch-approve/", {"ids": [certs["skill"][0].pk, 999999]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"ids": ["证书不存在：#999999"]}
    assert fresh(certs["skill"][0]).status == CertificateStatus.PENDING


def test_batch_without_ids_is_400(certs, inst_officer):
    response = client_for(inst_officer).post(f"{URL}batch-approve/", {"ids": []}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["ids"]


def test_batch_issue_issues_them_all_with_consecutive_serials(certs, inst_officer):
    first, second = certs["skill"]
    services.certificates_approve(actor=inst_officer, certificates=[first, second])
    response = client_for(inst_officer).post(
        f"{URL}batch-issue/", {"ids": [second.pk, first.pk], "on": "2026-11-20"}, format="json"
    )
    assert response.status_code == 200
    # Serials in case order, whatever the order of the ids.
    assert (fresh(first).number, fresh(second).number) == (
        "S123414000001265000001",
        "S123414000001265000002",
    )


def test_batch_issue_with_one_still_pending_issues_none_and_takes_no_serial(certs, inst_officer):
    first, second = certs["skill"]
    services.certificate_approve(actor=inst_officer, certificate=first)
    response = client_for(inst_officer).post(
        f"{URL}batch-issue/", {"ids": [first.pk, second.pk], "on": "2026-11-20"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"证书 #{second.pk}（")
    assert (fresh(first).status, fresh(first).number) == (CertificateStatus.APPROVED, None)
    assert SerialCounter.objects.filter(last__gt=0).count() == 0


# PDF ---------------------------------------------------------------------------------


def test_the_pdf_is_404_until_rendered_then_the_signed_file(certs, inst_officer, storage):
    certificate = issued(inst_officer, certs["skill"][0])
    api = client_for(inst_officer)
    before = api.get(f"{URL}{certificate.pk}/pdf/")
    assert before.status_code == 404
    assert before.json()["detail"] == "证书PDF尚未生成（后台生成中），请稍后再试"

    assert certificate_pdf_store(certificate.pk) is True
    response = api.get(f"{URL}{certificate.pk}/pdf/", HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        f'attachment; filename="certificate-{certificate.pk}.pdf"'
    )
    content = b"".join(response.streaming_content)
    certificate = fresh(certificate)
    with default_storage.open(certificate.pdf, "rb") as handle:
        assert content == handle.read()
    assert pdf_signature_status(content, certificate.issuer) == {
        "intact": True,
        "valid": True,
        "trusted": True,
    }
    assert api.get(f"{URL}{certificate.pk}/").json()["pdf_url"] == (
        f"/api/v1/certificates/{certificate.pk}/pdf/"
    )


def test_a_missing_pdf_asked_for_as_pdf_is_answered_in_json(certs, inst_officer):
    certificate = issued(inst_officer, certs["skill"][0])
    response = client_for(inst_officer).get(
        f"{URL}{certificate.pk}/pdf/", HTTP_ACCEPT="application/pdf"
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


def test_another_issuers_pdf_is_not_found(certs, mem_officer):
    response = client_for(mem_officer).get(f"{URL}{certs['skill'][0].pk}/pdf/")
    assert response.status_code == 404


# Due for review ----------------------------------------------------------------------


def test_due_for_review_lists_issued_certificates_due_within_the_window(
    certs, mem_officer, inst_officer
):
    today = timezone.localdate()
    # MEM certificates are reviewed 3 years after issue: one is overdue by 10 days, one
    # due in 30 days; the skill-level certificate has no review date.
    overdue = issued(
        mem_officer, certs["qualification"][0], on=today - relativedelta(years=3, days=10)
    )
    soon = issued(
        mem_officer,
        certs["qualification"][1],
        on=today - relativedelta(years=3) + relativedelta(days=30),
    )
    issued(inst_officer, certs["skill"][0])
    api = client_for(mem_officer)
    body = api.get(f"{URL}due-for-review/").json()
    assert [r["id"] for r in body["results"]] == [overdue.pk, soon.pk]
    assert body["results"][1]["review_due"] == (today + relativedelta(days=30)).isoformat()
    assert [
        r["id"] for r in api.get(f"{URL}due-for-review/", {"within_days": 10}).json()["results"]
    ] == [overdue.pk]
    assert client_for(inst_officer).get(f"{URL}due-for-review/").json()["count"] == 0


def test_a_revoked_certificate_is_not_due_for_review(certs, mem_officer):
    today = timezone.localdate()
    certificate = issued(mem_officer, certs["qualification"][0], on=today - relativedelta(years=3))
    services.certificate_revoke(actor=mem_officer, certificate=certificate, reason="注销")
    assert client_for(mem_officer).get(f"{URL}due-for-review/").json()["count"] == 0


# Queries -----------------------------------------------------------------------------


def _list_queries(user) -> tuple[int, int]:
    client = APIClient()
    client.force_login(user)  # the user is re-read per request, as in production
    with CaptureQueriesContext(connection) as captured:
        response = client.get(URL)
    assert response.status_code == 200
    return len(captured), response.json()["count"]


def test_the_list_costs_the_same_queries_for_5_and_25_certificates(mem, inst, mem_officer):
    services.certificates_open(case_ids=[c.pk for c in passed_cases((BOTH,) * 5)])
    few, count_few = _list_queries(mem_officer)
    services.certificates_open(case_ids=[c.pk for c in passed_cases((BOTH,) * 20)])
    many, count_many = _list_queries(mem_officer)
    assert (count_few, count_many) == (5, 25)
    assert few == many
