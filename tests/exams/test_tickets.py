"""Admission ticket PDFs: one page per booking, Chinese text, photo, QR code."""

import io
import shutil
import subprocess

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from audit.exceptions import DomainError
from exams.scheduling import booking_create
from exams.tickets import session_tickets_pdf, ticket_context, ticket_pdf

from .factories import PlanFactory, coordinator, eligible_case, exam_session, hold, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def plan():
    return PlanFactory(name="2026年焊工联合评价")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def png_photo():
    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), (200, 180, 160)).save(buffer, "PNG")
    return SimpleUploadedFile("photo.png", buffer.getvalue(), content_type="image/png")


def run(tool: str, *args: str) -> str:
    """Run a poppler or zbar tool (installed system-wide) and return its output."""
    command = [shutil.which(tool) or tool, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603


def pages(pdf: bytes, tmp_path) -> int:
    path = tmp_path / "t.pdf"
    path.write_bytes(pdf)
    info = run("pdfinfo", str(path))
    line = next(line for line in info.splitlines() if line.startswith("Pages:"))
    return int(line.split()[1])


def text(pdf: bytes, tmp_path) -> str:
    path = tmp_path / "t.pdf"
    path.write_bytes(pdf)
    return run("pdftotext", "-layout", str(path), "-")


def qr_of_first_page(pdf: bytes, tmp_path) -> str:
    path = tmp_path / "q.pdf"
    path.write_bytes(pdf)
    run("pdftoppm", "-r", "150", "-png", "-f", "1", "-l", "1", str(path), str(tmp_path / "p"))
    image = next(tmp_path.glob("p*.png"))
    return run("zbarimg", "--nodbus", "-q", "--raw", str(image)).strip()


def test_ticket_pdf_is_one_page_with_a_qr_code_of_the_ticket_number(coord, plan, tmp_path):
    case = eligible_case(coord, plan, name="欧阳娜娜")
    booking = booking_create(actor=coord, session=exam_session(coord, plan), case=case)
    pdf = ticket_pdf(booking)
    assert pdf.startswith(b"%PDF")
    assert pages(pdf, tmp_path) == 1
    assert qr_of_first_page(pdf, tmp_path) == booking.ticket_number
    content = text(pdf, tmp_path)
    number = case.candidate.id_number
    for expected in ("准考证", "欧阳娜娜", number[:3] + "*" * 11 + number[-4:], "理论考试"):
        assert expected in content
    assert number not in content


def test_session_tickets_are_one_document_with_a_page_per_booking(coord, plan, tmp_path):
    session = exam_session(coord, plan)
    bookings = [
        booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
        for _ in range(3)
    ]
    pdf = session_tickets_pdf(session)
    assert pdf.startswith(b"%PDF")
    assert pages(pdf, tmp_path) == 3
    assert qr_of_first_page(pdf, tmp_path) == bookings[0].ticket_number


def test_ticket_shows_photo_time_place_and_exemptions(coord, plan, tmp_path):
    candidate = register(coord, name="李四", photo=png_photo())
    held = hold(coord, candidate, "SAMR-WELD")
    case = eligible_case(coord, plan, candidate=candidate)
    session = exam_session(coord, plan, components=["practical"], code="A1")
    booking = booking_create(actor=coord, session=session, case=case)
    context = ticket_context(booking)
    assert context["photo"].startswith("data:image/jpeg;base64,")
    assert context["qr"].startswith("<svg")
    assert {k: context[k] for k in ("name", "plan", "date", "time", "room", "seat")} == {
        "name": "李四",
        "plan": "2026年焊工联合评价",
        "date": "2026年9月15日（星期二）",
        "time": "09:00—11:00",
        "room": session.room.name,
        "seat": 1,
    }
    assert context["components"] == ["实操考试"]
    basis = f"特种设备作业人员证 · 焊接操作 {held.number}"
    assert context["exemptions"] == [
        {"component": "安全培训", "row": 7, "basis": basis},
        {"component": "理论考试", "row": 7, "basis": basis},
    ]
    pdf = ticket_pdf(booking)
    assert pages(pdf, tmp_path) == 1
    assert "互通互认附件序号 7" in text(pdf, tmp_path)


def test_a_session_without_bookings_has_no_tickets(coord, plan):
    session = exam_session(coord, plan, code="E1")
    with pytest.raises(DomainError) as info:
        session_tickets_pdf(session)
    assert info.value.message == "场次 E1 还没有安排考生，无法生成准考证"
