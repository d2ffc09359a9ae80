"""The officers' pages: the queue of my issuer's certificates with batch approve / issue /
ZIP / print, one certificate with its transitions and audit history, the due-for-review
list; other roles get 403. The rules themselves are tested with the services."""

import io
import zipfile
from datetime import date

import pytest
from dateutil.relativedelta import relativedelta
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from issuance import services
from issuance.models import Certificate, CertificateStatus
from issuance.pdf import certificate_pdf_store, pdf_signature_status
from tests.cases.factories import UserFactory

from .factories import BOTH, passed_cases

pytestmark = pytest.mark.django_db

ON = date(2026, 11, 20)
QUEUE = reverse("issuance:certificate-queue")


@pytest.fixture
def certs(mem, inst):
    """The pending certificates of two cases that earned both, by kind, in case order."""
    cases = passed_cases((BOTH, BOTH))
    services.certificates_open(case_ids=[c.pk for c in cases])
    by_kind = {"qualification": [], "skill": []}
    for case in cases:
        for certificate in Certificate.objects.filter(case=case).order_by("kind"):
            by_kind[certificate.kind].append(certificate)
    return by_kind


@pytest.fixture
def storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SIGNING_KEYS_DIR = tmp_path / "keys"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def fresh(certificate):
    return Certificate.objects.get(pk=certificate.pk)


def issued(actor, certificate, on=ON):
    services.certificate_approve(actor=actor, certificate=certificate)
    return services.certificate_issue(actor=actor, certificate=certificate, on=on)


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def rows(response) -> list[int]:
    return [c.pk for c in response.context["page"].object_list]


# Queue -------------------------------------------------------------------------------


def test_the_queue_shows_my_issuers_pending_certificates(certs, mem_officer, inst_officer):
    issued(mem_officer, certs["qualification"][1])
    response = logged_in(mem_officer).get(QUEUE)
    assert response.status_code == 200
    assert rows(response) == [certs["qualification"][0].pk]
    page = response.content.decode()
    first = certs["qualification"][0]
    assert first.masked_id_number in page
    assert first.holder_id_number not in page  # shown only through the audited reveal
    assert f'href="{reverse("issuance:certificate-detail", args=[first.pk])}"' in page
    for skill in certs["skill"]:
        assert reverse("issuance:certificate-detail", args=[skill.pk]) not in page
    assert "批量审批" in page
    assert [(v, n) for v, _, n in response.context["tabs"]] == [
        ("pending", 1),
        ("approved", 0),
        ("issued", 1),
        ("revoked", 0),
        ("refused", 0),
    ]


def test_the_queue_tab_shows_one_status(certs, inst_officer):
    services.certificate_approve(actor=inst_officer, certificate=certs["skill"][1])
    response = logged_in(inst_officer).get(QUEUE, {"status": "approved"})
    assert rows(response) == [certs["skill"][1].pk]
    assert "批量发证" in response.content.decode()


def test_the_queue_counts_issued_certificates_still_without_pdf(certs, inst_officer):
    issued(inst_officer, certs["skill"][0])
    response = logged_in(inst_officer).get(QUEUE, {"status": "issued"})
    assert response.context["awaiting_pdf"] == 1
    assert "还有 1 份已发证书尚未生成PDF" in response.content.decode()


def test_the_nav_shows_certificates_to_officers_only(certs, inst_officer):
    link = f'href="{QUEUE}"'
    assert link in logged_in(inst_officer).get(reverse("cases:dashboard")).content.decode()
    grader = UserFactory(username="g1", roles=["grader"])
    assert link not in logged_in(grader).get(reverse("cases:dashboard")).content.decode()


def batch(django_capture_on_commit_callbacks, user, name, data):
    """Post a batch from the queue and follow it to its job's page, the job having run
    after commit (eager Celery)."""
    client = logged_in(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("issuance:certificate-batch", args=[name]), data)
    assert response.status_code == 302
    return client.get(response["Location"])


def test_batch_approve_runs_as_a_job_and_its_page_says_so(
    certs, inst_officer, django_capture_on_commit_callbacks
):
    ids = [c.pk for c in certs["skill"]]
    response = batch(
        django_capture_on_commit_callbacks,
        inst_officer,
        "approve",
        {"ids": ids, "status": "pending"},
    )
    job = response.context["job"]
    assert response.wsgi_request.path == job.get_absolute_url()
    assert (job.kind, job.status, job.result) == (
        "issuance.approve",
        "succeeded",
        {"count": 2, "ids": ids},
    )
    body = response.content.decode()
    assert "已批量审批 2 份证书" in body
    assert f"{QUEUE}?status=approved" in body
    assert {fresh(c).status for c in certs["skill"]} == {CertificateStatus.APPROVED}


def test_a_failing_batch_changes_nothing_and_names_the_certificate(
    certs, inst_officer, django_capture_on_commit_callbacks
):
    first, second = certs["skill"]
    services.certificate_approve(actor=inst_officer, certificate=second)
    response = batch(
        django_capture_on_commit_callbacks, inst_officer, "approve", {"ids": [first.pk, second.pk]}
    )
    job = response.context["job"]
    assert job.status == "failed"
    assert job.error.startswith(f"证书 #{second.pk}（")
    assert f"失败：证书 #{second.pk}（" in response.content.decode()
    assert fresh(first).status == CertificateStatus.PENDING


def test_batch_issue_via_the_page_with_a_date_shows_the_pdfs_to_come(
    certs, inst_officer, django_capture_on_commit_callbacks, storage
):
    services.certificates_approve(actor=inst_officer, certificates=certs["skill"])
    response = batch(
        django_capture_on_commit_callbacks,
        inst_officer,
        "issue",
        {"ids": [c.pk for c in certs["skill"]], "on": "2026-11-20", "status": "approved"},
    )
    body = response.content.decode()
    assert "已批量发证 2 份证书" in body
    assert [fresh(c).number for c in certs["skill"]] == [
        "S123414000001265000001",
        "S123414000001265000002",
    ]
    assert {fresh(c).issued_on for c in certs["skill"]} == {ON}
    # Eager Celery rendered the PDFs after the batch's commit, before the page.
    assert response.context["progress"]["follow_up"] == {
        "done": 2,
        "total": 2,
        "finished": True,
        "message": "已生成 2 / 2 份PDF",
    }
    assert "已生成 2 / 2 份PDF" in body


def test_a_batch_with_a_bad_date_stays_on_the_queue(certs, inst_officer):
    response = logged_in(inst_officer).post(
        reverse("issuance:certificate-batch", args=["issue"]),
        {"ids": [certs["skill"][0].pk], "on": "2026-13-01", "status": "approved"},
    )
    assert response["Location"] == f"{QUEUE}?status=approved"
    assert texts(response) == ["发证日期格式不正确"]


def test_a_batch_with_nothing_ticked_says_so(certs, inst_officer):
    response = logged_in(inst_officer).post(reverse("issuance:certificate-batch", args=["approve"]))
    assert texts(response) == ["请先勾选证书"]


def test_a_batch_with_another_issuers_certificate_is_refused_as_not_found(certs, inst_officer):
    other = certs["qualification"][0]
    response = logged_in(inst_officer).post(
        reverse("issuance:certificate-batch", args=["approve"]),
        {"ids": [certs["skill"][0].pk, other.pk]},
    )
    assert response.status_code == 302
    assert texts(response) == [f"证书不存在：#{other.pk}"]
    assert fresh(certs["skill"][0]).status == CertificateStatus.PENDING
    from jobs.models import Job

    assert Job.objects.count() == 0


# Downloads ---------------------------------------------------------------------------


def test_zip_and_print_file_of_the_rendered_certificates(certs, mem_officer, storage):
    first, second = (issued(mem_officer, c) for c in certs["qualification"])
    assert certificate_pdf_store(first.pk) is True  # the second is still being rendered
    client = logged_in(mem_officer)
    ids = {"ids": [first.pk, second.pk], "status": "issued"}

    response = client.post(reverse("issuance:certificate-zip"), ids)
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="certificates-')
    assert (response["X-Certificates-Included"], response["X-Certificates-Skipped"]) == ("1", "1")
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    # MEM numbers embed the ID number: never a file name.
    assert archive.namelist() == [f"certificate-{first.pk}.pdf"]
    signed = archive.read(f"certificate-{first.pk}.pdf")
    assert pdf_signature_status(signed, first.issuer)["valid"] is True
    assert texts(response) == ["已下载 1 份；跳过 1 份（PDF尚未生成或不是已发证书）"]

    certificate_pdf_store(second.pk)
    response = client.post(reverse("issuance:certificate-print"), ids)
    assert response["Content-Type"] == "application/pdf"
    merged = PdfReader(io.BytesIO(response.content))
    assert len(merged.pages) == 2
    assert "/AcroForm" not in merged.trailer["/Root"]  # no broken signatures carried over


def test_a_download_with_nothing_rendered_says_so(certs, mem_officer):
    certificate = issued(mem_officer, certs["qualification"][0])
    response = logged_in(mem_officer).post(
        reverse("issuance:certificate-zip"), {"ids": [certificate.pk], "status": "issued"}
    )
    assert response.status_code == 302
    assert texts(response) == ["所选证书中没有已生成PDF的已发证书"]


# One certificate ---------------------------------------------------------------------


def test_the_detail_shows_the_certificate_and_its_audit_history(certs, inst_officer, storage):
    certificate = issued(inst_officer, certs["skill"][0])
    certificate_pdf_store(certificate.pk)
    response = logged_in(inst_officer).get(certificate.get_absolute_url())
    assert response.status_code == 200
    page = response.content.decode()
    assert certificate.number in page
    assert certificate.masked_id_number in page
    assert certificate.holder_id_number not in page
    assert reverse("issuance:certificate-pdf", args=[certificate.pk]) in page
    assert [e.action for e in response.context["events"]] == [
        "certificate.open",
        "certificate.approve",
        "certificate.issue",
        "certificate.render",
    ]
    for label in ("生成待发证书", "审批通过", "已审批 → 已发证", "生成证书PDF"):
        assert label in page
    assert [t["name"] for t in response.context["transitions"]] == ["revoke"]


def test_the_pdf_page_link_downloads_the_stored_file(certs, inst_officer, storage):
    certificate = issued(inst_officer, certs["skill"][0])
    client = logged_in(inst_officer)
    url = reverse("issuance:certificate-pdf", args=[certificate.pk])
    assert client.get(url).status_code == 404
    certificate_pdf_store(certificate.pk)
    response = client.get(url)
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        f'attachment; filename="certificate-{certificate.pk}.pdf"'
    )


def test_the_detail_of_another_issuers_certificate_is_404(certs, mem_officer):
    response = logged_in(mem_officer).get(certs["skill"][0].get_absolute_url())
    assert response.status_code == 404


def test_approve_then_issue_from_the_detail_page(certs, inst_officer):
    certificate = certs["skill"][0]
    client = logged_in(inst_officer)
    url = reverse("issuance:certificate-transition", args=[certificate.pk, "approve"])
    assert client.post(url).status_code == 302
    url = reverse("issuance:certificate-transition", args=[certificate.pk, "issue"])
    response = client.post(url, {"on": "2026-11-20"})
    assert response.status_code == 302
    assert texts(response) == ["已执行：审批通过", "已执行：发证"]
    assert fresh(certificate).number == "S123414000001265000001"


def test_the_revoke_form_requires_a_reason(certs, inst_officer):
    certificate = issued(inst_officer, certs["skill"][0])
    url = reverse("issuance:certificate-transition", args=[certificate.pk, "revoke"])
    response = logged_in(inst_officer).post(url, {"reason": ""})
    assert response.status_code == 400
    (revoke,) = response.context["transitions"]
    assert revoke["form"].errors == {"reason": ["请填写撤销理由"]}
    assert "请填写撤销理由" in response.content.decode()
    assert fresh(certificate).status == CertificateStatus.ISSUED


def test_revoking_from_the_detail_page(certs, inst_officer):
    certificate = issued(inst_officer, certs["skill"][0])
    url = reverse("issuance:certificate-transition", args=[certificate.pk, "revoke"])
    response = logged_in(inst_officer).post(url, {"reason": "证书信息有误"})
    assert response.status_code == 302
    certificate = fresh(certificate)
    assert (certificate.status, certificate.reason) == (CertificateStatus.REVOKED, "证书信息有误")


def test_issuing_twice_from_the_page_is_409(certs, inst_officer):
    certificate = issued(inst_officer, certs["skill"][0])
    url = reverse("issuance:certificate-transition", args=[certificate.pk, "issue"])
    response = logged_in(inst_officer).post(url, {"on": "2026-11-20"})
    assert response.status_code == 409
    assert texts(response) == ["证书当前状态为「已发证」，不能变为「已发证」"]
    assert fresh(certificate).number == certificate.number


def test_acting_on_another_issuers_certificate_from_the_page_is_403(certs, mem_officer):
    certificate = certs["skill"][0]
    url = reverse("issuance:certificate-transition", args=[certificate.pk, "approve"])
    assert logged_in(mem_officer).post(url).status_code == 403
    assert fresh(certificate).status == CertificateStatus.PENDING


def test_a_grader_gets_403(certs):
    client = logged_in(UserFactory(username="g1", roles=["grader"]))
    certificate = certs["skill"][0]
    assert client.get(QUEUE).status_code == 403
    assert client.get(certificate.get_absolute_url()).status_code == 403
    assert client.get(reverse("issuance:certificate-review-due")).status_code == 403
    response = client.post(
        reverse("issuance:certificate-batch", args=["approve"]), {"ids": [certificate.pk]}
    )
    assert response.status_code == 403
    assert fresh(certificate).status == CertificateStatus.PENDING


# Due for review ----------------------------------------------------------------------


def test_the_due_for_review_page(certs, mem_officer):
    today = timezone.localdate()
    overdue = issued(
        mem_officer, certs["qualification"][0], on=today - relativedelta(years=3, days=1)
    )
    later = issued(mem_officer, certs["qualification"][1], on=today - relativedelta(years=2))
    client = logged_in(mem_officer)
    url = reverse("issuance:certificate-review-due")
    response = client.get(url)
    assert rows(response) == [overdue.pk]
    assert "已逾期" in response.content.decode()
    assert rows(client.get(url, {"within_days": 365})) == [overdue.pk, later.pk]


# Queries -----------------------------------------------------------------------------


def _queue_queries(user) -> tuple[int, int]:
    client = logged_in(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(QUEUE)
    assert response.status_code == 200
    return len(captured), len(rows(response))


def test_the_queue_costs_the_same_queries_for_5_and_25_certificates(mem, inst, mem_officer):
    services.certificates_open(case_ids=[c.pk for c in passed_cases((BOTH,) * 5)])
    few, shown_few = _queue_queries(mem_officer)
    services.certificates_open(case_ids=[c.pk for c in passed_cases((BOTH,) * 20)])
    many, shown_many = _queue_queries(mem_officer)
    assert (shown_few, shown_many) == (5, 25)
    assert few == many
