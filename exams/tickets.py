"""Admission tickets (准考证) as PDF: one page per booking, rendered by WeasyPrint with
the CJK font, the candidate's photo embedded, a QR code of the ticket number (what the
check-in desk scans), time and place, the components sat and the exempt ones with the
row of the mutual-recognition catalog that exempts them (notice §一, 附件).

Reads only; call outside any transaction (rendering takes a while and holds no lock).
The ID number is masked on the ticket (DESIGN.md: one masking rule outside authorised
views): the desk checks the ID card itself against the full number in the system.
"""

import base64

import filetype
import segno
from django.db.models import Prefetch
from django.template.loader import render_to_string
from weasyprint import HTML

from audit.exceptions import DomainError
from audit.masking import mask_id_number
from cases.models import CaseExemption

from .models import ACTIVE_BOOKING, Booking, ExamSession

WEEKDAYS = "一二三四五六日"


def _photo_data_uri(candidate) -> str:
    """The photo as a data URI (read through the storage API), or "" when none."""
    if not candidate.photo:
        return ""
    try:
        with candidate.photo.open("rb") as handle:
            data = handle.read()
    except (FileNotFoundError, OSError):
        return ""
    mime = filetype.guess_mime(data) or "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _bookings():
    return Booking.objects.select_related(
        "case__candidate", "case__plan", "session__room__venue"
    ).prefetch_related(
        "components",
        Prefetch(
            "case__exemptions",
            queryset=CaseExemption.objects.select_related("component", "basis__qualification_type"),
        ),
    )


def ticket_context(booking: Booking) -> dict:
    """What one ticket shows."""
    session = booking.session
    candidate = booking.case.candidate
    return {
        "ticket_number": booking.ticket_number,
        "name": candidate.name,
        "id_number": mask_id_number(candidate.id_number),
        "photo": _photo_data_uri(candidate),
        "plan": booking.case.plan.name,
        "session": session.code,
        "date": f"{session.date.year}年{session.date.month}月{session.date.day}日"
        f"（星期{WEEKDAYS[session.date.weekday()]}）",
        "time": f"{session.start_time:%H:%M}—{session.end_time:%H:%M}",
        "venue": session.room.venue.name,
        "address": session.room.venue.address,
        "room": session.room.name,
        "seat": booking.seat_number,
        # A full QR code: segno picks a Micro QR for short numbers, which most desk
        # scanners (and zbar) cannot read.
        "qr": segno.make(booking.ticket_number, micro=False).svg_inline(scale=4),
        "components": [c.name for c in booking.components.all()],
        "exemptions": [
            {
                "component": e.component.name,
                "row": e.row,
                "basis": f"{e.basis.qualification_type.name} {e.basis.masked_number}",
            }
            for e in booking.case.exemptions.all()
        ],
    }


def _render(bookings: list[Booking], title: str) -> bytes:
    html = render_to_string(
        "exams/pdf/ticket.html",
        {"tickets": [ticket_context(b) for b in bookings], "title": title},
    )
    return HTML(string=html).write_pdf()


def ticket_pdf(booking: Booking) -> bytes:
    """One booking's admission ticket, one page."""
    booking = _bookings().get(pk=booking.pk)
    return _render([booking], booking.ticket_number)


def session_tickets_pdf(session: ExamSession) -> bytes:
    """Every admission ticket of `session` (bookings not cancelled, by seat) as one
    document, one page each. A session without bookings has nothing to print."""
    bookings = list(_bookings().filter(ACTIVE_BOOKING, session=session).order_by("seat_number"))
    if not bookings:
        raise DomainError(f"场次 {session.code} 还没有安排考生，无法生成准考证")
    return _render(bookings, session.code)
