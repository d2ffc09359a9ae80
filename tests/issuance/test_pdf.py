"""Certificate PDFs: rendered, signed, stored once; Chinese text, photo, seal, QR code."""

import ctypes.util
import hashlib
import io
import re
import shutil
import stat
import subprocess
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from audit.models import AuditEvent
from cases.models import Candidate
from issuance import services
from issuance.models import Certificate
from issuance.pdf import (
    _claim,
    _stage,
    _store,
    certificate_pdf_store,
    certificates_pdf_store,
    pdf_name,
    pdf_partials_remove,
    pdf_signature_status,
    render_certificate,
    sign_pdf,
)
from issuance.tasks import certificate_render

from .factories import BOTH, SKILL_ONLY, department, institution, officer, passed_cases

pytestmark = pytest.mark.django_db

BASE_URL = "https://zs.example.gov.cn"


@pytest.fixture(autouse=True)
def _files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SIGNING_KEYS_DIR = tmp_path / "keys"
    settings.PUBLIC_BASE_URL = BASE_URL


@pytest.fixture
def officers():
    dept, inst = department(), institution()
    return {dept.pk: officer(dept), inst.pk: officer(inst)}


def approved(officers, names, scores=None, photos=False) -> list[Certificate]:
    """The approved certificates of passed cases whose holders are `names` (in case
    order, qualification before skill within a case)."""
    cases = passed_cases(scores=scores or (BOTH,) * len(names))
    for case, name in zip(cases, names, strict=True):
        candidate = Candidate.objects.get(pk=case.candidate_id)
        candidate.name = name
        if photos:
            candidate.photo.save("photo.png", ContentFile(png(900, 1200)), save=False)
        candidate.save()
    opened = services.certificates_open(case_ids=[case.pk for case in cases])
    return [
        services.certificate_approve(actor=officers[c.issuer_id], certificate=c) for c in opened
    ]


def issue(officers, certificate) -> Certificate:
    """Issued; the render dispatched on commit does not run (the test transaction never
    commits), so each test renders when it wants to."""
    return services.certificate_issue(
        actor=officers[certificate.issuer_id], certificate=certificate
    )


def issued(officers, names, **kwargs) -> list[Certificate]:
    return [issue(officers, c) for c in approved(officers, names, **kwargs)]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def stored_pdf(certificate: Certificate) -> bytes:
    certificate.refresh_from_db()
    with default_storage.open(certificate.pdf, "rb") as handle:
        return handle.read()


def stored_files(tmp_path) -> list[str]:
    """Every file under media/certificates/, staged ones (.partial/) included."""
    root = tmp_path / "media"
    return sorted(str(p.relative_to(root)) for p in root.glob("certificates/**/*") if p.is_file())


def run(tool: str, *args: str) -> str:
    """Run a poppler or zbar tool (installed system-wide) and return its output."""
    command = [shutil.which(tool) or tool, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603


def saved(pdf: bytes, tmp_path, name="c.pdf") -> str:
    path = tmp_path / name
    path.write_bytes(pdf)
    return str(path)


def pages(pdf: bytes, tmp_path) -> int:
    info = run("pdfinfo", saved(pdf, tmp_path))
    return int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))


def text(pdf: bytes, tmp_path) -> str:
    return run("pdftotext", "-layout", saved(pdf, tmp_path), "-")


def images(pdf: bytes, tmp_path) -> list[tuple[int, int]]:
    """(width, height) of every image in the PDF (pdfimages -list)."""
    rows = run("pdfimages", "-list", saved(pdf, tmp_path)).splitlines()[2:]
    return [(int(row.split()[3]), int(row.split()[4])) for row in rows]


def first_page_png(pdf: bytes, tmp_path, dpi: int) -> str:
    out = tmp_path / f"page{dpi}"
    run("pdftoppm", "-r", str(dpi), "-png", "-f", "1", "-l", "1", saved(pdf, tmp_path), str(out))
    return str(next(tmp_path.glob(f"page{dpi}*.png")))


def render_event_count(certificate) -> int:
    return AuditEvent.objects.filter(
        action="certificate.render", object_id=str(certificate.pk)
    ).count()


# Rendering and storing -----------------------------------------------------------------


def test_issuing_stores_one_signed_pdf_with_its_checksum_and_size(
    officers, tmp_path, django_capture_on_commit_callbacks
):
    qualification, _skill = approved(officers, ["王垚"])
    with django_capture_on_commit_callbacks(execute=True):
        issue(officers, qualification)  # dispatches issuance.tasks.certificate_render
    qualification.refresh_from_db()
    content = stored_pdf(qualification)
    assert qualification.pdf == f"certificates/mem-14/{qualification.pk:08d}.pdf"
    assert stored_files(tmp_path) == [qualification.pdf]
    assert qualification.pdf_sha256 == hashlib.sha256(content).hexdigest()
    assert qualification.pdf_size == len(content)
    assert qualification.pdf_rendered_at is not None
    assert content.startswith(b"%PDF")
    assert len(content) < 500_000
    event = AuditEvent.objects.get(action="certificate.render", object_id=str(qualification.pk))
    assert event.actor_id is None
    assert event.changes["pdf"] == {"before": "", "after": qualification.pdf}


def test_render_task_run_twice_leaves_one_file_and_one_audit_event(officers, tmp_path):
    certificate = issued(officers, ["王垚"])[0]
    assert certificate_render(certificate.pk) is True
    first = stored_pdf(certificate)
    assert certificate_render(certificate.pk) is False
    assert stored_pdf(certificate) == first
    assert stored_files(tmp_path) == [pdf_name(certificate)]
    assert render_event_count(certificate) == 1


def test_a_crashed_attempts_file_is_replaced_under_the_same_name(officers, tmp_path):
    certificate = issued(officers, ["王垚"])[0]
    default_storage.save(pdf_name(certificate), ContentFile(b"half a PDF"))
    assert certificate_pdf_store(certificate.pk) is True
    content = stored_pdf(certificate)
    assert certificate.pdf == pdf_name(certificate)
    assert certificate.pdf_sha256 == hashlib.sha256(content).hexdigest()
    assert stored_files(tmp_path) == [pdf_name(certificate)]


def test_a_run_that_loses_the_race_deletes_only_its_own_staged_file(officers, tmp_path):
    certificate = issued(officers, ["王垚"])[0]
    # A second run stages its file while the first is still working (its own bytes,
    # told apart from the first run's)...
    late = b"%PDF-1.7 the second run's rendering"
    staged = _stage(certificate, late)
    assert staged.startswith(f"certificates/mem-14/.partial/{certificate.pk:08d}-")
    assert certificate_pdf_store(certificate.pk) is True
    first = stored_pdf(certificate)
    # ...and claims after the first recorded: it loses, and the recorded file stays.
    assert _claim(certificate, staged, late) is False
    assert stored_pdf(certificate) == first
    assert certificate.pdf_sha256 == hashlib.sha256(first).hexdigest()
    assert certificate.pdf_size == len(first)
    assert stored_files(tmp_path) == [pdf_name(certificate)]
    assert render_event_count(certificate) == 1


def test_overlapping_runs_staging_together_keep_separate_files_until_one_claims(officers, tmp_path):
    certificate = issued(officers, ["王垚"])[0]
    pdfs = [b"%PDF-1.7 run A", b"%PDF-1.7 run B"]
    staged = [_stage(certificate, pdf) for pdf in pdfs]
    assert len(set(staged)) == 2
    assert stored_files(tmp_path) == sorted(staged)
    assert _claim(certificate, staged[1], pdfs[1]) is True
    assert _claim(certificate, staged[0], pdfs[0]) is False
    assert stored_pdf(certificate) == pdfs[1]
    assert certificate.pdf_sha256 == hashlib.sha256(pdfs[1]).hexdigest()
    assert stored_files(tmp_path) == [pdf_name(certificate)]
    assert render_event_count(certificate) == 1


def test_a_crash_after_placing_the_file_leaves_the_row_without_a_pdf(
    officers, tmp_path, monkeypatch
):
    certificate = issued(officers, ["王垚"])[0]

    def crash(**kwargs):
        raise RuntimeError("worker lost its database connection")

    monkeypatch.setattr("issuance.pdf.audit_record_bulk", crash)
    with pytest.raises(RuntimeError):
        certificate_pdf_store(certificate.pk)
    # The claim rolled back: the file under the name is nobody's, and no row names it.
    certificate.refresh_from_db()
    assert (certificate.pdf, certificate.pdf_sha256, certificate.pdf_size) == ("", "", None)
    assert stored_files(tmp_path) == [pdf_name(certificate)]
    monkeypatch.undo()
    assert certificate_pdf_store(certificate.pk) is True
    content = stored_pdf(certificate)
    assert content.startswith(b"%PDF")
    assert certificate.pdf_sha256 == hashlib.sha256(content).hexdigest()
    assert stored_files(tmp_path) == [pdf_name(certificate)]
    assert render_event_count(certificate) == 1


class ObjectStore(Storage):
    """A storage without local paths (like an object store): no path(), so no rename.
    Kept on disk under MEDIA_ROOT so the test can look at what it holds."""

    def __init__(self, location):
        self.files = FileSystemStorage(location=location)

    def _open(self, name, mode="rb"):
        return self.files.open(name, mode)

    def _save(self, name, content):
        return self.files._save(name, content)

    def exists(self, name):
        return self.files.exists(name)

    def delete(self, name):
        self.files.delete(name)

    def listdir(self, path):
        return self.files.listdir(path)

    def get_modified_time(self, name):
        return self.files.get_modified_time(name)


def test_a_storage_without_local_paths_saves_under_the_final_name(officers, tmp_path, monkeypatch):
    """The winner saves its bytes again under the final name, replacing a crashed
    attempt's file there, and drops its staged copy."""
    certificate = issued(officers, ["王垚"])[0]
    store = ObjectStore(tmp_path / "media")
    with pytest.raises(NotImplementedError):
        store.path("x")
    monkeypatch.setattr("issuance.pdf.default_storage", store)
    store.save(pdf_name(certificate), ContentFile(b"half a PDF"))
    assert certificate_pdf_store(certificate.pk) is True
    content = stored_pdf(certificate)
    assert certificate.pdf == pdf_name(certificate)
    assert content.startswith(b"%PDF")
    assert certificate.pdf_sha256 == hashlib.sha256(content).hexdigest()
    assert stored_files(tmp_path) == [pdf_name(certificate)]
    assert render_event_count(certificate) == 1
    assert certificate_pdf_store(certificate.pk) is False


def test_staged_files_of_killed_runs_are_removed_once_old(officers, tmp_path):
    certificate = issued(officers, ["王垚"])[0]
    staged = _stage(certificate, b"%PDF of a run killed before its claim")
    assert pdf_partials_remove() == 0  # may still be a live run's
    assert stored_files(tmp_path) == [staged]
    assert pdf_partials_remove(older_than_seconds=0) == 1
    assert stored_files(tmp_path) == []
    assert pdf_partials_remove(older_than_seconds=0) == 0


def test_a_certificate_revoked_while_rendering_keeps_no_file(officers, tmp_path):
    certificate = issued(officers, ["王垚"])[0]
    pdf = sign_pdf(render_certificate(certificate), certificate.issuer)
    services.certificate_revoke(
        actor=officers[certificate.issuer_id], certificate=certificate, reason="材料造假"
    )
    assert _store(certificate, pdf) is False
    certificate.refresh_from_db()
    assert (certificate.pdf, certificate.pdf_sha256) == ("", "")
    assert stored_files(tmp_path) == []


def test_render_after_revocation_stores_nothing(officers, tmp_path):
    certificate = issued(officers, ["王垚"])[0]
    services.certificate_revoke(
        actor=officers[certificate.issuer_id], certificate=certificate, reason="材料造假"
    )
    assert certificate_render(certificate.pk) is False
    certificate.refresh_from_db()
    assert (certificate.pdf, certificate.pdf_sha256, certificate.pdf_size) == ("", "", None)
    assert stored_files(tmp_path) == []
    assert render_event_count(certificate) == 0


def test_an_approved_certificate_gets_no_pdf(officers, tmp_path):
    certificate = approved(officers, ["王垚"])[0]
    assert certificate_pdf_store(certificate.pk) is False
    assert stored_files(tmp_path) == []


# Signature ---------------------------------------------------------------------------


def test_signature_is_intact_valid_and_trusted_and_one_changed_byte_breaks_it(officers):
    qualification, skill = issued(officers, ["王垚"])
    certificate_pdf_store(qualification.pk)
    pdf = stored_pdf(qualification)
    assert pdf_signature_status(pdf, qualification.issuer) == {
        "intact": True,
        "valid": True,
        "trusted": True,
    }
    # Another issuer's root does not vouch for it: the signature itself is sound.
    assert pdf_signature_status(pdf, skill.issuer) == {
        "intact": True,
        "valid": True,
        "trusted": False,
    }
    start, length = (int(n) for n in re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)", pdf).groups())
    # A byte inside the file's first stream (within the signed range): still a readable
    # PDF, but not the one that was signed.
    position = pdf.index(b"stream", start) + 40
    assert start <= position < start + length
    tampered = pdf[:position] + bytes([pdf[position] ^ 0x01]) + pdf[position + 1 :]
    # The signed attributes still verify ("valid"); the document digest does not.
    assert pdf_signature_status(tampered, qualification.issuer)["intact"] is False


# What the page shows -------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), [("qualification", "王垚"), ("skill", "欧阳珺璟")])
def test_page_is_not_blank_and_shows_the_chinese_name_in_an_embedded_noto_font(
    officers, tmp_path, kind, name
):
    certificates = issued(officers, ["王垚", "欧阳珺璟"], scores=(BOTH, SKILL_ONLY))
    certificate = next(c for c in certificates if (c.kind, c.holder_name) == (kind, name))
    certificate_pdf_store(certificate.pk)
    pdf = stored_pdf(certificate)
    assert pages(pdf, tmp_path) == 1

    image = Image.open(first_page_png(pdf, tmp_path, 100)).convert("L")
    assert image.size == (1170, 827)  # A4 landscape at 100 dpi
    inked = sum(count for level, count in enumerate(image.histogram()) if level < 200)
    assert inked > 20_000  # frame, title, text, QR code and seal; a blank page has 0

    fonts = run("pdffonts", saved(pdf, tmp_path)).splitlines()[2:]
    embedded = [row.split()[0] for row in fonts if "CJK" in row and " yes " in row]
    assert embedded
    assert all(re.search(r"\+Noto-?Serif-?CJK-?SC", font) for font in embedded)

    content = text(pdf, tmp_path)
    for expected in (name, certificate.number, certificate.holder_id_number, "山西"):
        assert expected in content
    if kind == "skill":
        assert all(word in content for word in ("职业技能等级证书", "五级/初级工", "长期有效"))
    else:
        assert all(word in content for word in ("特种作业操作证", "熔化焊接与热切割作业"))
        due = certificate.review_due  # MEM: reviewed every 3 years
        assert f"复审日期 {due.year}年{due.month}月{due.day}日" in re.sub(r" +", " ", content)


def test_photo_is_embedded_at_print_size(officers, tmp_path):
    with_photo = issued(officers, ["王垚"], scores=(SKILL_ONLY,), photos=True)[0]
    certificate_pdf_store(with_photo.pk)
    # 900 x 1200 uploaded, printed 33 x 44 mm: 300 dpi is enough.
    assert images(stored_pdf(with_photo), tmp_path) == [(390, 520)]


def test_placeholder_when_the_candidate_has_no_photo(officers, tmp_path):
    certificate = issued(officers, ["王垚"], scores=(SKILL_ONLY,))[0]
    certificate_pdf_store(certificate.pk)
    pdf = stored_pdf(certificate)
    assert images(pdf, tmp_path) == []
    assert "照片" in text(pdf, tmp_path)


def qr_text(pdf: bytes, tmp_path) -> str:
    page = first_page_png(pdf, tmp_path, 150)
    return run("zbarimg", "--nodbus", "-q", "--raw", page).strip()


def test_qr_code_carries_the_verification_url_which_answers_valid(officers, tmp_path, client):
    certificate = issued(officers, ["王垚"])[0]
    certificate_pdf_store(certificate.pk)
    url = qr_text(stored_pdf(certificate), tmp_path)
    assert url == f"{BASE_URL}/verify/{certificate.verification_code}/"
    response = client.get(urlsplit(url).path)
    assert response.status_code == 200
    assert "有效" in response.content.decode()


# Batches -----------------------------------------------------------------------------


def test_a_batch_of_five_gives_five_one_page_pdfs_each_with_its_own_signature(officers, tmp_path):
    certificates = issued(
        officers, ["王垚", "欧阳珺璟", "李四"], scores=(BOTH, BOTH, SKILL_ONLY), photos=True
    )
    assert len(certificates) == 5
    assert certificates_pdf_store([c.pk for c in certificates]) == 5
    numbers = {c.number for c in certificates}
    for certificate in certificates:
        pdf = stored_pdf(certificate)
        assert pages(pdf, tmp_path) == 1
        assert pdf_signature_status(pdf, certificate.issuer) == {
            "intact": True,
            "valid": True,
            "trusted": True,
        }
        content = text(pdf, tmp_path)
        assert certificate.number in content
        assert certificate.holder_name in content
        assert not any(n in content for n in numbers - {certificate.number})
        # Pages of one document share WeasyPrint's resources: each file keeps only its
        # own holder's photo, never the other holders'.
        assert images(pdf, tmp_path) == [(390, 520)]
        assert render_event_count(certificate) == 1
    assert len(stored_files(tmp_path)) == 5
    assert certificates_pdf_store([c.pk for c in certificates]) == 0


# Environment and keys ----------------------------------------------------------------


def test_harfbuzz_subset_is_installed():
    """Without libharfbuzz-subset WeasyPrint falls back to fontTools, several times
    slower on the CJK fonts (issue 5)."""
    from weasyprint.text.ffi import harfbuzz_subset

    assert ctypes.util.find_library("harfbuzz-subset") is not None
    assert harfbuzz_subset is not None


def test_issuer_keys_command_creates_private_keys_once(officers, tmp_path):
    out = io.StringIO()
    call_command("issuer_keys", stdout=out)
    keys = tmp_path / "keys"
    assert out.getvalue().splitlines() == [
        f"inst-s1234\tcreated\t{keys / 'inst-s1234'}",
        f"mem-14\tcreated\t{keys / 'mem-14'}",
    ]
    directory = keys / "mem-14"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "signer-key.pem").stat().st_mode) == 0o600
    signer = x509.load_pem_x509_certificate((directory / "signer.pem").read_bytes())
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    subject = {a.oid: a.value for a in signer.subject}
    assert subject == {
        NameOID.COMMON_NAME: "山西省应急管理厅",
        NameOID.ORGANIZATION_NAME: "山西省应急管理厅",
        NameOID.COUNTRY_NAME: "CN",
    }
    usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.digital_signature, usage.content_commitment, usage.key_cert_sign) == (
        True,
        True,
        False,
    )
    assert signer.issuer == root.subject
    signer.verify_directly_issued_by(root)

    key = (directory / "signer-key.pem").read_bytes()
    again = io.StringIO()
    call_command("issuer_keys", "--issuer", "mem-14", stdout=again)
    assert again.getvalue() == f"mem-14\texisting\t{directory}\n"
    assert (directory / "signer-key.pem").read_bytes() == key
    with pytest.raises(CommandError, match="no issuer with code 'nope'"):
        call_command("issuer_keys", "--issuer", "nope")
