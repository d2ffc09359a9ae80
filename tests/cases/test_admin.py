import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_with_demo(client):
    from django.contrib.auth import get_user_model

    call_command("demo", "--candidates", "4")
    client.force_login(get_user_model().objects.get(username="admin"))
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/cases/candidate/",
        "/admin/cases/case/",
        "/admin/cases/heldcertificate/",
        "/admin/cases/evaluationplan/",
        "/admin/audit/auditevent/",
        "/admin/catalog/qualificationtype/",
        "/admin/catalog/recognitionrule/",
        "/api/v1/docs/",
    ],
)
def test_admin_and_docs_pages_render(admin_client_with_demo, url):
    assert admin_client_with_demo.get(url).status_code == 200


def test_admin_candidate_page_does_not_show_the_full_id_number(admin_client_with_demo):
    from cases.models import Candidate

    candidate = Candidate.objects.first()
    page = admin_client_with_demo.get(f"/admin/cases/candidate/{candidate.pk}/change/")
    assert page.status_code == 200
    assert candidate.id_number not in page.content.decode()
    assert candidate.masked_id_number in page.content.decode()


def test_audit_events_cannot_be_changed_in_admin(admin_client_with_demo):
    from audit.models import AuditEvent

    event = AuditEvent.objects.first()
    response = admin_client_with_demo.post(
        f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_admin_audit_and_held_certificate_pages_mask_id_numbers(admin_client_with_demo):
    from audit.models import AuditEvent
    from cases.models import HeldCertificate

    held = (
        HeldCertificate.objects.filter(number__startswith="T").select_related("candidate").first()
    )
    full = held.candidate.id_number
    event = AuditEvent.objects.get(action="candidate.create", object_id=str(held.candidate_id))
    pages = [
        f"/admin/audit/auditevent/{event.pk}/change/",
        "/admin/audit/auditevent/",
        "/admin/cases/heldcertificate/",
        f"/admin/cases/heldcertificate/{held.pk}/change/",
    ]
    for url in pages:
        page = admin_client_with_demo.get(url)
        assert page.status_code == 200
        assert full not in page.content.decode(), url
    detail = admin_client_with_demo.get(pages[0]).content.decode()
    assert held.candidate.masked_id_number in detail
