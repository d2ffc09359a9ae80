"""Batch rendering draws what certificates of one kind share once, as a background page
under each certificate's own data page (issuance.pdf.render_certificates): the files
must look exactly like certificates rendered alone, and a certificate whose values do
not fit the shared layout is drawn whole instead."""

import shutil
import subprocess

import pytest
from PIL import Image, ImageChops

from cases.models import Candidate
from issuance import services
from issuance.pdf import render_certificate, render_certificates

from .factories import SKILL_ONLY, department, institution, officer, passed_cases

pytestmark = pytest.mark.django_db

LONG_NAME = "阿卜杜热合曼·买买提依明·阿卜杜热合曼·买买提依明·阿卜杜热合曼·买买提"


@pytest.fixture(autouse=True)
def _files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SIGNING_KEYS_DIR = tmp_path / "keys"


def skill_certificates(names: list[str]):
    """Issued skill-level certificates (one kind, one background) of holders `names`."""
    dept, inst = department(), institution()
    officers = {dept.pk: officer(dept), inst.pk: officer(inst)}
    cases = passed_cases(scores=(SKILL_ONLY,) * len(names))
    for case, name in zip(cases, names, strict=True):
        Candidate.objects.filter(pk=case.candidate_id).update(name=name)
    opened = services.certificates_open(case_ids=[case.pk for case in cases])
    return [
        services.certificate_issue(
            actor=officers[c.issuer_id],
            certificate=services.certificate_approve(actor=officers[c.issuer_id], certificate=c),
        )
        for c in opened
    ]


def run(tool: str, *args: str) -> str:
    command = [shutil.which(tool) or tool, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603


def page_image(pdf: bytes, tmp_path, name: str) -> Image.Image:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    run("pdftoppm", "-r", "72", "-png", "-singlefile", str(path), str(tmp_path / name))
    return Image.open(tmp_path / f"{name}.png").convert("L")


def test_a_batch_file_looks_exactly_like_the_certificate_rendered_alone(tmp_path):
    certificates = skill_certificates(["王垚", "欧阳珺璟", "李旻犇"])
    batch = render_certificates(certificates)
    for index, certificate in enumerate(certificates):
        assert b"/Background Do" in batch[index]  # drawn over the shared page
        alone = render_certificate(certificate)
        assert b"/Background" not in alone  # nothing to share: drawn whole
        difference = ImageChops.difference(
            page_image(batch[index], tmp_path, f"batch{index}"),
            page_image(alone, tmp_path, f"alone{index}"),
        )
        assert sum(difference.histogram()[32:]) == 0
        text = run("pdftotext", "-layout", str(tmp_path / f"batch{index}.pdf"), "-")
        assert certificate.holder_name in text
        assert "证书编号" in text  # a label: drawn by the background


def test_a_value_too_long_for_the_shared_rows_is_drawn_whole(tmp_path):
    certificates = skill_certificates(["王垚", LONG_NAME, "李旻犇"])
    files = render_certificates(certificates)
    # The long name wraps onto a second line, so its rows would no longer meet the
    # background's rules and labels.
    assert [b"/Background Do" in pdf for pdf in files] == [True, False, True]
    path = tmp_path / "long.pdf"
    path.write_bytes(files[1])
    assert "Pages:           1" in run("pdfinfo", str(path))
    text = run("pdftotext", str(path), "-")
    assert certificates[1].number in text
