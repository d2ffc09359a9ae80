import hashlib
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management import call_command

from cases.models import Candidate, Case, CaseExemption
from exams.models import Room
from issuance.models import Certificate
from issuance.pdf import pdf_signature_status

pytestmark = pytest.mark.django_db


# Real commits, as in a real run: work dispatched after commit (certificates opened on
# approval, PDFs rendered on issue) runs when each service's transaction commits.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_demo_drives_cases_through_review_and_ends_with_a_json_summary(capsys):
    call_command("demo", "--candidates", "16", "--seed", "3", "--json")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["candidates"] == 16
    assert sum(summary["cases"].values()) == 16
    # Eligible cases went on through the exams stage and were published.
    assert summary["cases"].get("eligible", 0) == 0
    assert summary["cases"]["completed"] + summary["cases"].get("failed", 0) >= 8
    assert set(summary) == {"candidates", "cases", "certificates", "pdfs", "seconds", "stages"}
    # Wall time per stage, in pipeline order; eager Celery renders the PDFs inside the
    # issuing commits, and that time is reported as its own stage.
    assert list(summary["stages"]) == [
        "registration",
        "scheduling",
        "check_in",
        "marking",
        "review",
        "issuance",
        "pdf",
    ]
    assert min(summary["stages"].values()) >= 0
    assert summary["stages"]["pdf"] > 0
    # Every certificate a passed case earned was issued, each with its signed PDF, and
    # every passed case completed.
    assert summary["cases"].get("passed", 0) == 0
    assert set(summary["certificates"]) == {"issued"}
    assert summary["pdfs"] == summary["certificates"]["issued"] > summary["cases"]["completed"]
    assert Candidate.objects.count() == 16
    assert CaseExemption.objects.exists()
    call_command("audit_verify")
    for certificate in Certificate.objects.select_related("issuer"):
        pdf = default_storage.open(certificate.pdf).read()
        assert hashlib.sha256(pdf).hexdigest() == certificate.pdf_sha256
        assert set(pdf_signature_status(pdf, certificate.issuer).values()) == {True}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_demo_in_groups_runs_each_group_through_every_stage(capsys):
    call_command("demo", "--candidates", "24", "--group", "8", "--seed", "3", "--json")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["candidates"] == Candidate.objects.count() == 24
    assert sum(summary["cases"].values()) == 24
    assert summary["cases"].get("eligible", 0) == summary["cases"].get("passed", 0) == 0
    # One session per plan with eligible cases in each group, rooms numbered on in the
    # one venue.
    rooms = list(Room.objects.values_list("venue_id", "name"))
    assert len({venue for venue, _ in rooms}) == 1
    assert sorted(name for _, name in rooms) == sorted(
        f"第{n}考场" for n in range(1, len(rooms) + 1)
    )
    assert len(rooms) > 4
    assert summary["pdfs"] == summary["certificates"]["issued"] > 0
    call_command("audit_verify")


def test_demo_creates_one_account_per_role():
    call_command("demo", "--candidates", "1")
    users = {u.username: u for u in get_user_model().objects.prefetch_related("groups")}
    assert users["admin"].is_superuser is True
    for username, group in [
        ("coordinator", "coordinator"),
        ("grader", "grader"),
        ("grader2", "grader"),
        ("chief", "grader"),
        ("reviewer", "reviewer"),
        ("officer", "issuer_officer"),
    ]:
        assert [g.name for g in users[username].groups.all()] == [group]


def test_demo_skip_if_loaded_adds_nothing(capsys):
    call_command("demo", "--candidates", "2")
    call_command("demo", "--candidates", "2", "--skip-if-loaded")
    assert Case.objects.count() == 2
    assert "skipping" in capsys.readouterr().out
