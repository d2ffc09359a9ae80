"""Exam day: the check-in desk and misconduct (违纪).

Check-in is open while the roster is frozen and while the exam is in progress:
candidates enter the room before the start (the desk opens once the roster can no
longer change), and latecomers are still admitted after it; the quality review flags
check-ins after the start time (exams.review), so nothing is lost by admitting them.
The desk admits candidates only on the session's date (local time): a frozen roster
is no reason to check anyone in the day before or after, and a check-in on the wrong
day would also skew the late check-in warning. The desk field takes whatever a
scanner or a keyboard gives: an admission-ticket number (the QR code on the ticket) or
the candidate's full ID number.
"""

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.exceptions import StateConflict
from audit.masking import mask_ids_in
from audit.services import audit_record, audit_record_bulk, event_for
from cases import services as case_services
from cases.models import Case, CaseExemption, CaseStatus, PlanComponent
from cases.roles import Role, require_role
from catalog.models import Component

from .models import (
    Booking,
    BookingStatus,
    ComponentScore,
    ExamSession,
    Misconduct,
    ScoreStatus,
    SessionStatus,
)
from .results import COMPLETION_METHOD, TRAINING_STATES

CHECK_IN_STATES = (SessionStatus.ROSTER_FROZEN, SessionStatus.IN_PROGRESS)
# Misconduct may come to light during the exam, in marking (e.g. identical answers),
# or in quality review (a confirmed early warning); never after results are published.
MISCONDUCT_STATES = (SessionStatus.IN_PROGRESS, SessionStatus.MARKING, SessionStatus.IN_REVIEW)


def _labels(states) -> str:
    return "或".join(f"「{SessionStatus(s).label}」" for s in states)


def _where(session: ExamSession) -> str:
    return f"场次 {session.code}（{session.date} {session.start_time:%H:%M}，{session.room}）"


def _find_booking(session: ExamSession, code: str, tickets: dict | None = None) -> Booking:
    """The booking of `session` for a ticket number or a full ID number, or a
    ValidationError on `code` saying why not. `tickets` ({ticket number: booking}, read
    in one query for a whole list of codes) replaces the lookup by ticket number."""
    if tickets is None:
        by_ticket = Booking.objects.select_related("session__room__venue")
        booking = by_ticket.filter(ticket_number=code).first()
    else:
        booking = tickets.get(code)
    if booking is not None:
        if booking.session_id != session.pk:
            raise ValidationError(
                {"code": [f"准考证号 {code} 属于{_where(booking.session)}，不是本场次的考生"]}
            )
        if booking.status == BookingStatus.CANCELLED:
            raise ValidationError({"code": [f"准考证号 {code} 已取消"]})
        return booking
    by_id = (
        Booking.objects.filter(case__candidate__id_number=code)
        .exclude(status=BookingStatus.CANCELLED)
        .select_related("session__room__venue")
        .order_by("-pk")
    )
    booking = by_id.filter(session=session).first()
    if booking is not None:
        return booking
    elsewhere = by_id.filter(status=BookingStatus.BOOKED).first()
    if elsewhere is not None:
        raise ValidationError(
            {"code": [f"该身份证号码的考生安排在{_where(elsewhere.session)}，不是本场次的考生"]}
        )
    raise ValidationError({"code": [f"未找到准考证号或身份证号码为 {mask_ids_in(code)} 的考生"]})


@transaction.atomic(durable=True)
def check_in(
    *, actor, session: ExamSession, ticket_or_id: str, at: datetime | None = None
) -> Booking:
    """Check a candidate in at the desk of `session` by ticket number or full ID number
    (case-insensitive, surrounding spaces ignored): booked -> checked_in with the time,
    and the case scheduled -> examined (cases.services.case_check_in). The session must
    be roster_frozen or in_progress, and the local date of the check-in moment `at`
    (default now; the API and the pages always use now, scripts such as the demo pass
    the desk's time) must be the session's date. A wrong day, unknown codes and another
    session's candidates are refused (400, on `code`, the desk's field); a second
    check-in is a StateConflict (409). Locks the session, the booking, then the case.
    Audited as `booking.check_in`."""
    require_role(actor, Role.COORDINATOR)
    at = at or timezone.now()
    session = (
        ExamSession.objects.select_for_update().select_related("room__venue").get(pk=session.pk)
    )
    if session.status not in CHECK_IN_STATES:
        raise StateConflict(
            f"场次当前状态为「{session.get_status_display()}」，不能签到"
            f"（须为{_labels(CHECK_IN_STATES)}）",
            current_state=session.status,
        )
    if timezone.localdate(at) != session.date:
        raise ValidationError({"code": [f"本场次考试日期为 {session.date}，今天不能签到"]})
    code = (ticket_or_id or "").strip().upper()
    if not code:
        raise ValidationError({"code": ["请扫描或输入准考证号、身份证号码"]})
    found = _find_booking(session, code)
    booking = (
        Booking.objects.select_for_update()
        .select_related("case__candidate", "session")
        .get(pk=found.pk)
    )
    _require_booked(booking)
    case_services.case_check_in(actor=actor, case=booking.case)
    from_state = booking.status
    booking.status = BookingStatus.CHECKED_IN
    booking.checked_in_at = at
    booking.save(update_fields=["status", "checked_in_at"])
    audit_record(
        actor=actor,
        instance=booking,
        action="booking.check_in",
        from_state=from_state,
        to_state=booking.status,
        changes={
            "checked_in_at": {"before": None, "after": booking.checked_in_at},
            "session_status": {"before": None, "after": session.status},
        },
    )
    return booking


@dataclass
class CheckIn:
    """One scan of a desk's list: a ticket number or full ID number, and when."""

    ticket_or_id: str
    at: datetime | None = None


@transaction.atomic(durable=True)
def bookings_check_in(*, actor, session: ExamSession, entries) -> list[Booking]:
    """Check in a desk's whole list at once (a desk that scanned offline, or a paper
    roster typed in afterwards): each entry (CheckIn or dict with ticket_or_id and at)
    is checked exactly as by `check_in`. All or none: a session not admitting
    candidates, or an entry already checked in or no longer booked, is a StateConflict
    (409) naming it; otherwise every refused entry (wrong day, unknown code, another
    session's candidate, the same booking twice) is listed in one ValidationError on
    `code` as "第 n 条：…". Locks the session, the bookings (one query, primary-key
    order), then their cases (cases.services.cases_check_in). Audited as
    `booking.check_in` per booking. Returns the bookings in list order."""
    require_role(actor, Role.COORDINATOR)
    entries = [e if isinstance(e, CheckIn) else CheckIn(**e) for e in entries]
    if not entries:
        raise ValidationError({"code": ["请扫描或输入准考证号、身份证号码"]})
    session = (
        ExamSession.objects.select_for_update().select_related("room__venue").get(pk=session.pk)
    )
    if session.status not in CHECK_IN_STATES:
        raise StateConflict(
            f"场次当前状态为「{session.get_status_display()}」，不能签到"
            f"（须为{_labels(CHECK_IN_STATES)}）",
            current_state=session.status,
        )
    now = timezone.now()
    codes = [(e.ticket_or_id or "").strip().upper() for e in entries]
    tickets = {
        b.ticket_number: b
        for b in Booking.objects.select_related("session__room__venue").filter(
            ticket_number__in=[c for c in codes if c]
        )
    }
    errors: list[str] = []
    found: dict[int, int] = {}  # booking id -> entry index
    for index, (entry, code) in enumerate(zip(entries, codes, strict=True), start=1):
        try:
            if timezone.localdate(entry.at or now) != session.date:
                raise ValidationError({"code": [f"本场次考试日期为 {session.date}，今天不能签到"]})
            if not code:
                raise ValidationError({"code": ["请扫描或输入准考证号、身份证号码"]})
            booking = _find_booking(session, code, tickets)
        except ValidationError as exc:
            errors += [f"第 {index} 条：{m}" for m in exc.messages]
            continue
        if booking.pk in found:
            errors.append(f"第 {index} 条：与第 {found[booking.pk]} 条为同一考生")
            continue
        found[booking.pk] = index
    if errors:
        raise ValidationError({"code": errors})
    bookings = {
        b.pk: b
        for b in Booking.objects.select_for_update(of=("self",))
        .select_related("case__candidate", "session")
        .filter(pk__in=list(found))
        .order_by("pk")
    }
    for booking in bookings.values():
        try:
            _require_booked(booking)
        except StateConflict as exc:
            raise StateConflict(
                f"第 {found[booking.pk]} 条：{exc.message}", current_state=booking.status
            ) from exc
    case_services.cases_check_in(actor=actor, cases=[b.case_id for b in bookings.values()])
    ordered = sorted(bookings.values(), key=lambda b: found[b.pk])
    for booking in ordered:
        booking.status = BookingStatus.CHECKED_IN
        booking.checked_in_at = entries[found[booking.pk] - 1].at or now
    # One UPDATE per check-in time (a desk's list shares a handful), not bulk_update's
    # CASE per row.
    by_time: dict[datetime, list[int]] = {}
    for booking in ordered:
        by_time.setdefault(booking.checked_in_at, []).append(booking.pk)
    for at, pks in by_time.items():
        Booking.objects.filter(pk__in=pks).update(status=BookingStatus.CHECKED_IN, checked_in_at=at)
    audit_record_bulk(
        actor=actor,
        events=[
            event_for(
                booking,
                "booking.check_in",
                from_state=BookingStatus.BOOKED,
                to_state=booking.status,
                changes={
                    "checked_in_at": {"before": None, "after": booking.checked_in_at},
                    "session_status": {"before": None, "after": session.status},
                },
            )
            for booking in ordered
        ],
    )
    return ordered


@transaction.atomic(durable=True)
def cases_training_complete(
    *, actor, cases, component: str = "training", note: str = ""
) -> list[ComponentScore]:
    """Record at the desk that each of `cases` (cases or ids) completed the completion
    component `component` of its plan (safety training, 安全培训), each exactly as
    exams.results.training_complete does one: coordinators only; a case not eligible,
    scheduled or examined is a StateConflict naming it; a plan without that completion
    component, or a case exempt from it, is a ValidationError on `component` listing
    each case; all or none. Idempotent per case: one already recorded keeps its
    record and gets no event. Locks the cases in one query, primary-key order. Audited
    as `case.training_complete` per record created. Returns the records in case
    order."""
    require_role(actor, Role.COORDINATOR)
    ids = {c if isinstance(c, int) else c.pk for c in cases}
    locked = list(
        Case.objects.select_for_update(of=("self",))
        .select_related("plan")
        .filter(pk__in=ids)
        .order_by("pk")
    )
    if len(locked) != len(ids):
        missing = sorted(ids - {case.pk for case in locked})
        raise ValidationError({"cases": [f"案件 #{pk} 不存在" for pk in missing]})
    labels = "、".join(str(CaseStatus(s).label) for s in TRAINING_STATES)
    for case in locked:
        if case.status not in TRAINING_STATES:
            raise StateConflict(
                f"案件 #{case.pk} 当前状态为「{case.get_status_display()}」，"
                f"不能登记培训完成（须为{labels}）",
                current_state=case.status,
            )
    components = {
        pc.plan_id: pc.component
        for pc in PlanComponent.objects.filter(
            plan_id__in={case.plan_id for case in locked}, component__code=component
        ).select_related("component")
    }
    exempt = dict(
        CaseExemption.objects.filter(case__in=locked, component__code=component).values_list(
            "case_id", "row"
        )
    )
    errors = []
    for case in locked:
        found = components.get(case.plan_id)
        if found is None or found.kind != Component.Kind.COMPLETION:
            errors.append(f"案件 #{case.pk}：「{component}」不是本评价计划须完成的培训科目")
        elif case.pk in exempt:
            errors.append(
                f"案件 #{case.pk}：考生免于「{found.name}」（互认序号 {exempt[case.pk]}），无须登记"
            )
    if errors:
        raise ValidationError({"component": errors})
    existing: dict[int, ComponentScore] = {}
    for row in ComponentScore.objects.filter(
        case__in=locked, component__code=component, status=ScoreStatus.COMPLETED
    ).order_by("case", "attempt", "pk"):  # the first as the model orders them
        existing.setdefault(row.case_id, row)
    new = [
        ComponentScore(
            case=case,
            component=components[case.plan_id],
            attempt=max(case.attempts, 1),
            status=ScoreStatus.COMPLETED,
            method=COMPLETION_METHOD,
        )
        for case in locked
        if case.pk not in existing
    ]
    ComponentScore.objects.bulk_create(new)
    note = (note or "").strip()
    audit_record_bulk(
        actor=actor,
        events=[
            event_for(
                row.case,
                "case.training_complete",
                reason=note,
                changes={"completed": {"before": None, "after": component}},
            )
            for row in new
        ],
    )
    created = {row.case_id: row for row in new}
    return [existing.get(case.pk) or created[case.pk] for case in locked]


def _require_booked(booking: Booking) -> None:
    """StateConflict unless `booking` (locked) is waiting to be checked in."""
    if booking.status == BookingStatus.CHECKED_IN:
        at = timezone.localtime(booking.checked_in_at)
        raise StateConflict(
            f"考生 {booking.case.candidate.name}（准考证号 {booking.ticket_number}）"
            f"已于 {at:%H:%M:%S} 签到，不能重复签到",
            current_state=booking.status,
        )
    if booking.status != BookingStatus.BOOKED:
        raise StateConflict(
            f"考位当前状态为「{booking.get_status_display()}」，不能签到",
            current_state=booking.status,
            target_state=BookingStatus.CHECKED_IN,
        )


@transaction.atomic(durable=True)
def misconduct_record(*, actor, booking: Booking, description: str, evidence) -> Misconduct:
    """Record misconduct (违纪) of a checked-in candidate with an evidence file: the
    booking becomes void and the case's result is voided (cases.services.case_void
    with the description as reason; examined/scored -> void, an end state). The
    session must be in progress, in marking or in review. Locks the session, the
    booking, then the case. The evidence is written to storage as the row is saved;
    should the transaction roll back, the stored file is left without a row (harmless,
    never served). Audited as `booking.misconduct`."""
    require_role(actor, Role.COORDINATOR)
    session = ExamSession.objects.select_for_update().get(pk=booking.session_id)
    booking = Booking.objects.select_for_update().select_related("case").get(pk=booking.pk)
    if session.status not in MISCONDUCT_STATES:
        raise StateConflict(
            f"场次当前状态为「{session.get_status_display()}」，不能记录违纪"
            f"（须为{_labels(MISCONDUCT_STATES)}）",
            current_state=session.status,
        )
    if booking.status != BookingStatus.CHECKED_IN:
        raise StateConflict(
            f"考位当前状态为「{booking.get_status_display()}」，只有已签到的考生可以记录违纪",
            current_state=booking.status,
            target_state=BookingStatus.VOID,
        )
    description = (description or "").strip()
    errors: dict[str, list[str]] = {}
    if not description:
        errors["description"] = ["请填写违纪情况"]
    if not evidence or not getattr(evidence, "size", 0):
        errors["evidence"] = ["请上传违纪证据文件"]
    if errors:
        raise ValidationError(errors)
    case_services.case_void(actor=actor, case=booking.case, reason=description)
    misconduct = Misconduct(booking=booking, description=description, recorded_by=actor)
    misconduct.evidence.save(evidence.name, evidence, save=False)
    misconduct.save()
    from_state = booking.status
    booking.status = BookingStatus.VOID
    booking.save(update_fields=["status"])
    audit_record(
        actor=actor,
        instance=booking,
        action="booking.misconduct",
        from_state=from_state,
        to_state=booking.status,
        reason=description,
        changes={"evidence": {"before": None, "after": misconduct.evidence.name}},
    )
    return misconduct
