"""Issuance tasks run twice (a redelivered message, a sweep racing the on-commit dispatch):
the second run changes nothing (STYLE.md §4, issue 5 item 1)."""

import hashlib
import os
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from audit.models import AuditEvent
from issuance import services
from issuance.models import Certificate
from issuance.pdf import pdf_name
from issuance.tasks import (
    certificate_render,
    certificate_render_sweep,
    certificates_open_for,
    certificates_open_sweep,
    certificates_render,
)

from .factories import BOTH, NEITHER, SKILL_ONLY, department, institution, officer, passed_cases

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SIGNING_KEYS_DIR = tmp_path / "keys"


@pytest.fixture
def officers():
    dept, inst = department(), institution()
    return {dept.pk: officer(dept), inst.pk: officer(inst)}


def events(action: str) -> list[str]:
    return sorted(AuditEvent.objects.filter(action=action).values_list("object_id", flat=True))


def snapshot() -> list[tuple]:
    """Everything a render or an opening writes on the certificates."""
    return list(
        Certificate.objects.order_by("pk").values_list(
            "pk", "case_id", "kind", "status", "pdf", "pdf_sha256", "pdf_size", "pdf_rendered_at"
        )
    )


def stored_files(tmp_path) -> list[str]:
    root = tmp_path / "media"
    return sorted(str(p.relative_to(root)) for p in root.glob("certificates/**/*") if p.is_file())


def issued(officers, scores) -> list[Certificate]:
    """Issued certificates of passed cases; nothing rendered yet (the on-commit dispatch
    never runs inside the test transaction)."""
    cases = passed_cases(scores)
    opened = services.certificates_open(case_ids=[c.pk for c in cases])
    return [
        services.certificate_issue(
            actor=officers[c.issuer_id],
            certificate=services.certificate_approve(actor=officers[c.issuer_id], certificate=c),
        )
        for c in opened
    ]


def assert_rendered_once(certificates, tmp_path):
    assert stored_files(tmp_path) == sorted(pdf_name(c) for c in certificates)
    for certificate in certificates:
        certificate.refresh_from_db()
        with default_storage.open(certificate.pdf, "rb") as handle:
            assert certificate.pdf_sha256 == hashlib.sha256(handle.read()).hexdigest()
    assert events("certificate.render") == sorted(str(c.pk) for c in certificates)


def test_opening_twice_opens_each_certificate_once(officers):
    cases = passed_cases((BOTH, SKILL_ONLY, NEITHER))
    ids = [c.pk for c in cases]
    assert certificates_open_for(ids) == 3
    before = snapshot()
    assert certificates_open_for(ids) == 0
    assert snapshot() == before
    assert len(events("certificate.open")) == 3


def test_the_open_sweep_twice_opens_each_certificate_once(officers):
    passed_cases((BOTH, SKILL_ONLY))
    assert certificates_open_sweep() == 3
    before = snapshot()
    assert certificates_open_sweep() == 0
    assert snapshot() == before
    assert len(events("certificate.open")) == 3


def test_rendering_one_twice_keeps_the_first_file(officers, tmp_path):
    certificate = issued(officers, (SKILL_ONLY,))[0]
    assert certificate_render(certificate.pk) is True
    before = snapshot()
    assert certificate_render(certificate.pk) is False
    assert snapshot() == before
    assert_rendered_once([certificate], tmp_path)


def test_rendering_a_batch_twice_keeps_the_first_files(officers, tmp_path):
    certificates = issued(officers, (BOTH, SKILL_ONLY))
    ids = [c.pk for c in certificates]
    assert certificates_render(ids) == 3
    before = snapshot()
    assert certificates_render(ids) == 0
    assert certificates_render(list(reversed(ids))) == 0  # overlapping re-dispatch
    assert snapshot() == before
    assert_rendered_once(certificates, tmp_path)


def test_a_batch_redelivered_after_a_partial_run_renders_only_what_is_missing(officers, tmp_path):
    certificates = issued(officers, (BOTH, SKILL_ONLY))
    assert certificate_render(certificates[1].pk) is True  # stored before the worker died
    first = snapshot()[1]
    assert certificates_render([c.pk for c in certificates]) == 2
    assert snapshot()[1] == first
    assert_rendered_once(certificates, tmp_path)


def test_the_render_sweep_twice_renders_each_certificate_once(officers, tmp_path):
    certificates = issued(officers, (BOTH, SKILL_ONLY))
    # Just issued: the on-commit dispatch is left its two minutes before the sweep steps in.
    assert certificate_render_sweep() == 0
    assert stored_files(tmp_path) == []
    Certificate.objects.update(issued_at=timezone.now() - timedelta(minutes=3))
    assert certificate_render_sweep() == 3  # eager here: the batch renders in place
    before = snapshot()
    assert certificate_render_sweep() == 0
    assert snapshot() == before
    assert_rendered_once(certificates, tmp_path)


def test_the_render_sweep_removes_only_old_staged_files(officers, tmp_path):
    certificate = issued(officers, (SKILL_ONLY,))[0]
    partial = tmp_path / "media" / "certificates" / "inst-s1234" / ".partial"
    partial.mkdir(parents=True)
    old, fresh = partial / "00000001-old.pdf", partial / "00000001-fresh.pdf"
    for path in (old, fresh):
        path.write_bytes(b"%PDF of a run killed before its claim")
    hour_ago = (timezone.now() - timedelta(hours=1, seconds=5)).timestamp()
    os.utime(old, (hour_ago, hour_ago))
    assert certificate_render_sweep(older_than_seconds=0) == 1
    assert stored_files(tmp_path) == sorted(
        [pdf_name(certificate), str(fresh.relative_to(tmp_path / "media"))]
    )
    assert certificate_render_sweep(older_than_seconds=0, partials_older_than_seconds=0) == 0
    assert_rendered_once([certificate], tmp_path)
