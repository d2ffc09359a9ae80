import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from cases.models import Candidate, Case, CaseExemption

pytestmark = pytest.mark.django_db


def test_demo_drives_cases_through_review_and_ends_with_a_json_summary(capsys):
    call_command("demo", "--candidates", "16", "--seed", "3", "--json")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["candidates"] == 16
    assert sum(summary["cases"].values()) == 16
    # Eligible cases went on through the exams stage and were published.
    assert summary["cases"].get("eligible", 0) == 0
    assert summary["cases"]["passed"] + summary["cases"].get("failed", 0) >= 8
    assert set(summary) == {"candidates", "cases", "certificates", "pdfs", "seconds"}
    assert Candidate.objects.count() == 16
    assert CaseExemption.objects.exists()
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
