"""Scheduling eligible cases to seats: one by one (`booking_create`), cancelled
(`booking_cancel`), or all at once (`sessions_allocate`).

A case sits all its outstanding exam components in one session ("一试"): exempt
components are never sat, and on a retake only what is not yet passed (selectors.
case_components_outstanding). The session must cover every one of them. A candidate is
never in two sessions that overlap in time (they may hold cases of several plans), a
seat holds one case, a case one seat, and a session never takes more than its
capacity: the session row is locked for the whole booking, and the database's unique
constraints on (session, seat) and (session, case) are the last guard.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit.exceptions import StateConflict
from audit.services import audit_record
from cases import services as case_services
from cases.models import Candidate, Case, CaseStatus, EvaluationPlan
from cases.roles import Role, require_role
from catalog.models import Component

from .models import ACTIVE_BOOKING, Booking, BookingStatus, ExamSession, SessionStatus
from .selectors import HOLDING, case_components_outstanding, cases_awaiting_seat


def case_exam_components(case: Case) -> list[Component]:
    """The components `case` sits in a session: outstanding ones of kind exam."""
    return [
        pc.component
        for pc in case_components_outstanding(case)
        if pc.component.kind == Component.Kind.EXAM
    ]


def _names(components) -> str:
    return "、".join(c.name for c in components)


def _clashing(case: Case, session: ExamSession):
    """The candidate's holding bookings in other sessions overlapping `session`."""
    return (
        Booking.objects.filter(case__candidate_id=case.candidate_id, status__in=HOLDING)
        .filter(
            session__date=session.date,
            session__start_time__lt=session.end_time,
            session__end_time__gt=session.start_time,
        )
        .exclude(session=session)
        .select_related("session")
    )


def _ticket_number(session: ExamSession, seat: int) -> str:
    """Plan id, session code and seat (e.g. 00726091501012): readable at the desk and
    unique, as session codes are. A seat given up keeps its ticket number (tickets are
    never reused), so the next booking of that seat gets a suffix: -2, -3, ..."""
    base = f"{session.plan_id:03d}{session.code}{seat:03d}"
    taken = set(
        Booking.objects.filter(ticket_number__startswith=base).values_list(
            "ticket_number", flat=True
        )
    )
    ticket, n = base, 1
    while ticket in taken:
        n += 1
        ticket = f"{base}-{n}"
    return ticket


def _free_seat(session: ExamSession) -> int | None:
    """The lowest seat of `session` held by no active booking, or None when full."""
    taken = set(
        Booking.objects.filter(ACTIVE_BOOKING, session=session).values_list(
            "seat_number", flat=True
        )
    )
    if len(taken) >= session.capacity:
        return None
    return next(seat for seat in range(1, session.capacity + 1) if seat not in taken)


def _require_open(session: ExamSession) -> None:
    if session.status != SessionStatus.OPEN:
        raise StateConflict(
            f"场次 {session.code} 当前状态为「{session.get_status_display()}」，"
            f"只有「{SessionStatus.OPEN.label}」的场次可以安排考位",
            current_state=session.status,
        )


def _check_case(case: Case, session: ExamSession) -> list[Component]:
    """Refuse `case` for `session` unless it may sit there; return what it sits."""
    if case.plan_id != session.plan_id:
        raise ValidationError({"case": [f"案件 #{case.pk} 不属于场次 {session.code} 的评价计划"]})
    # Only this sitting's bookings hold a seat: a retake's earlier booking stays checked in.
    held = (
        Booking.objects.filter(case=case, status__in=HOLDING, attempt__gt=case.attempts)
        .select_related("session")
        .first()
    )
    if held is not None:
        raise ValidationError(
            {
                "case": [
                    f"案件 #{case.pk} 已安排在场次 {held.session.code} 座位 {held.seat_number}"
                    f"（准考证号 {held.ticket_number}），不能重复安排"
                ]
            }
        )
    if case.status != CaseStatus.ELIGIBLE:
        raise StateConflict(
            f"案件当前状态为「{case.get_status_display()}」，"
            f"只有「{CaseStatus.ELIGIBLE.label}」的案件可以安排考试",
            current_state=case.status,
            target_state=CaseStatus.SCHEDULED,
        )
    components = case_exam_components(case)
    if not components:
        raise ValidationError({"case": [f"案件 #{case.pk} 没有需要参加考试的科目"]})
    covered = set(session.components.values_list("pk", flat=True))
    missing = [c for c in components if c.pk not in covered]
    if missing:
        raise ValidationError(
            {"session": [f"场次 {session.code} 不包含该考生须考的科目：{_names(missing)}"]}
        )
    clash = _clashing(case, session).first()
    if clash is not None:
        raise ValidationError(
            {
                "case": [
                    f"考生在同一时段已安排场次 {clash.session.code}"
                    f"（{clash.session.date} {clash.session.start_time:%H:%M}-"
                    f"{clash.session.end_time:%H:%M}），时间冲突"
                ]
            }
        )
    return components


def _book(*, actor, session: ExamSession, case: Case, components: list[Component]) -> Booking:
    """Seat `case` (locked, checked) in `session` (locked, open) and schedule the case."""
    seat = _free_seat(session)
    if seat is None:
        raise ValidationError({"session": [f"场次 {session.code} 已满（容量 {session.capacity}）"]})
    booking = Booking(
        session=session,
        case=case,
        attempt=case.attempts + 1,
        seat_number=seat,
        ticket_number=_ticket_number(session, seat),
    )
    try:
        with transaction.atomic():
            booking.save()
    except IntegrityError as exc:  # the constraints caught a race the locks did not
        raise StateConflict(f"场次 {session.code} 座位 {seat} 刚被占用，请重试") from exc
    booking.components.set(components)
    detail = {"session": session.code, "seat": seat, "ticket": booking.ticket_number}
    case_services.case_schedule(actor=actor, case=case, detail=detail)
    audit_record(
        actor=actor,
        instance=booking,
        action="booking.create",
        to_state=booking.status,
        changes={
            "booking": {
                "before": None,
                "after": {**detail, "case": case.pk, "components": [c.code for c in components]},
            }
        },
    )
    return booking


def _lock_case(case: Case | int) -> Case:
    """Lock the candidate, then the case. The candidate lock serialises bookings of one
    person across plans: the clash check reads their other bookings, which no
    constraint covers. Order everywhere: session -> candidate -> case."""
    case_id = case if isinstance(case, int) else case.pk
    candidate_id = Case.objects.values_list("candidate_id", flat=True).get(pk=case_id)
    list(Candidate.objects.select_for_update().filter(pk=candidate_id).values_list("pk"))
    return Case.objects.select_for_update().select_related("candidate").get(pk=case_id)


@transaction.atomic(durable=True)
def booking_create(*, actor, session: ExamSession, case: Case) -> Booking:
    """Book `case` into `session` at the lowest free seat, with a ticket number (plan id
    + session code + seat) and the components it sits; the case moves eligible ->
    scheduled in the same transaction. The session must be open; the case eligible, of
    the session's plan, not already holding a seat, with every outstanding exam
    component covered by the session and no other session of the candidate overlapping.
    Locks the session row, then the case row. Audited as `booking.create`. Not
    idempotent: a second call for the same case is refused."""
    require_role(actor, Role.COORDINATOR)
    session = ExamSession.objects.select_for_update().get(pk=session.pk)
    _require_open(session)
    case = _lock_case(case)
    components = _check_case(case, session)
    return _book(actor=actor, session=session, case=case, components=components)


@transaction.atomic(durable=True)
def booking_cancel(*, actor, booking: Booking, reason: str) -> Booking:
    """Give up a seat before the roster is frozen: booked -> cancelled, the case moves
    scheduled -> eligible (cases.services.case_unschedule, reason required). Locks the
    session, then the booking. Audited as `booking.cancel`."""
    require_role(actor, Role.COORDINATOR)
    session = ExamSession.objects.select_for_update().get(pk=booking.session_id)
    booking = Booking.objects.select_for_update().select_related("case").get(pk=booking.pk)
    if session.status != SessionStatus.OPEN:
        raise StateConflict(
            f"场次 {session.code} 当前状态为「{session.get_status_display()}」，不能取消考位",
            current_state=session.status,
        )
    if booking.status != BookingStatus.BOOKED:
        raise StateConflict(
            f"考位当前状态为「{booking.get_status_display()}」，不能变为「已取消」",
            current_state=booking.status,
            target_state=BookingStatus.CANCELLED,
        )
    case_services.case_unschedule(actor=actor, case=booking.case, reason=reason)
    from_state = booking.status
    booking.status = BookingStatus.CANCELLED
    booking.save(update_fields=["status"])
    audit_record(
        actor=actor,
        instance=booking,
        action="booking.cancel",
        from_state=from_state,
        to_state=booking.status,
        reason=reason.strip(),
    )
    return booking


@dataclass
class AllocationSummary:
    allocated: list[dict] = field(default_factory=list)
    unallocated: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"allocated": self.allocated, "unallocated": self.unallocated}


@transaction.atomic(durable=True)
def sessions_allocate(
    *,
    actor,
    plan: EvaluationPlan,
    sessions: list[ExamSession] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AllocationSummary:
    """Seat every eligible case of `plan` not holding a seat, in case-id order, each in
    the first session (by date, start time, code) of `sessions` (default: the plan's
    open sessions) that covers its exam components, has a free seat and does not
    overlap the candidate's other sessions. Cases that fit nowhere are listed with the
    reason. All or nothing in one transaction; locks the sessions (by id) for its whole
    length so concurrent bookings and allocations cannot overbook, then each case.
    `progress(done, total)` is called after each case. Audited per booking and once as
    `plan.allocate`. Idempotent in effect: a second run finds nothing left to seat."""
    require_role(actor, Role.COORDINATOR)
    if sessions is None:
        ids = list(
            ExamSession.objects.filter(plan=plan, status=SessionStatus.OPEN).values_list(
                "pk", flat=True
            )
        )
    else:
        ids = [s.pk for s in sessions]
    locked = list(ExamSession.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
    errors = [
        f"场次 {s.code} 不属于评价计划「{plan.name}」" for s in locked if s.plan_id != plan.pk
    ] + [
        f"场次 {s.code} 当前状态为「{s.get_status_display()}」，不能编排"
        for s in locked
        if s.plan_id == plan.pk and s.status != SessionStatus.OPEN
    ]
    if errors:
        raise ValidationError({"sessions": errors})
    if not locked:
        raise ValidationError({"sessions": ["本评价计划没有开放编排的场次"]})
    ordered = sorted(locked, key=lambda s: (s.date, s.start_time, s.code))
    covers = {s.pk: set(s.components.values_list("pk", flat=True)) for s in ordered}
    used = {s.pk: Booking.objects.filter(ACTIVE_BOOKING, session=s).count() for s in ordered}

    candidates = list(cases_awaiting_seat(plan).order_by("pk").values_list("pk", flat=True))
    summary = AllocationSummary()
    for done, case_id in enumerate(candidates, start=1):
        case = _lock_case(case_id)
        components = case_exam_components(case)
        needed = {c.pk for c in components}
        covering = [s for s in ordered if needed <= covers[s.pk]]
        with_room = [s for s in covering if used[s.pk] < s.capacity]
        free = [s for s in with_room if not _clashing(case, s).exists()]
        reason = ""
        if not components:
            reason = "没有需要参加考试的科目"
        elif not covering:
            reason = f"没有包含其应考科目（{_names(components)}）的场次"
        elif not with_room:
            reason = "包含其应考科目的场次均已满"
        elif not free:
            reason = "有空位的场次与考生的其他场次时间冲突"
        if reason:
            summary.unallocated.append({"case": case.pk, "reason": reason})
        else:
            session = free[0]
            booking = _book(actor=actor, session=session, case=case, components=components)
            used[session.pk] += 1
            summary.allocated.append(
                {
                    "case": case.pk,
                    "session": session.code,
                    "seat": booking.seat_number,
                    "ticket_number": booking.ticket_number,
                }
            )
        if progress is not None:
            progress(done, len(candidates))
    audit_record(
        actor=actor,
        instance=plan,
        action="plan.allocate",
        changes={
            "allocation": {
                "before": None,
                "after": {
                    "sessions": [s.code for s in ordered],
                    "allocated": len(summary.allocated),
                    "unallocated": summary.unallocated,
                },
            }
        },
    )
    return summary
