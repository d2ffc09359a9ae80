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
from functools import reduce
from operator import or_

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from audit.exceptions import StateConflict
from audit.services import audit_record, audit_record_many, event_for
from cases import services as case_services
from cases.models import (
    Candidate,
    Case,
    CaseExemption,
    CaseStatus,
    EvaluationPlan,
    PassMark,
    PlanComponent,
)
from cases.roles import Role, require_role
from catalog.models import Component

from .models import (
    ACTIVE_BOOKING,
    Booking,
    BookingStatus,
    ComponentScore,
    ExamSession,
    ScoreStatus,
    SessionStatus,
)
from .selectors import (
    HOLDING,
    best_final_scores,
    case_components_outstanding,
    cases_awaiting_seat,
)


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


# Cases seated per round of `sessions_allocate`: each round locks its cases in two
# queries and writes its bookings in bulk.
ALLOCATE_CHUNK = 500


class _Seats:
    """Free seats and unused ticket numbers of the sessions being allocated, read once
    (the sessions are locked, so nothing else books them meanwhile)."""

    def __init__(self, sessions: list[ExamSession]):
        self.taken: dict[int, set[int]] = {s.pk: set() for s in sessions}
        for session_id, seat in Booking.objects.filter(
            ACTIVE_BOOKING, session__in=sessions
        ).values_list("session_id", "seat_number"):
            self.taken[session_id].add(seat)
        prefixes = [Q(ticket_number__startswith=_prefix(s)) for s in sessions]
        self.tickets = set(
            Booking.objects.filter(reduce(or_, prefixes)).values_list("ticket_number", flat=True)
        )
        self._next = {s.pk: 1 for s in sessions}

    def free(self, session: ExamSession) -> bool:
        return len(self.taken[session.pk]) < session.capacity

    def take(self, session: ExamSession) -> int:
        """The lowest free seat of `session`, now taken."""
        seat = self._next[session.pk]
        while seat in self.taken[session.pk]:
            seat += 1
        self.taken[session.pk].add(seat)
        self._next[session.pk] = seat + 1
        return seat

    def ticket(self, session: ExamSession, seat: int) -> str:
        """As `_ticket_number`, against the tickets read once."""
        base = f"{_prefix(session)}{seat:03d}"
        ticket, n = base, 1
        while ticket in self.tickets:
            n += 1
            ticket = f"{base}-{n}"
        self.tickets.add(ticket)
        return ticket


def _prefix(session: ExamSession) -> str:
    return f"{session.plan_id:03d}{session.code}"


def _lock_cases(case_ids: list[int]) -> list[Case]:
    """`_lock_case` for many: their candidates, then the cases, each in one query in
    primary-key order (session -> candidate -> case, as everywhere)."""
    candidate_ids = set(Case.objects.filter(pk__in=case_ids).values_list("candidate_id", flat=True))
    list(
        Candidate.objects.select_for_update()
        .filter(pk__in=candidate_ids)
        .order_by("pk")
        .values_list("pk")
    )
    return list(
        Case.objects.select_for_update()
        .select_related("candidate")
        .filter(pk__in=case_ids)
        .order_by("pk")
    )


def _exam_components_many(cases: list[Case]) -> dict[int, list[Component]]:
    """`case_exam_components` for many cases in a few queries. Per case, the same
    reading as exams.selectors.case_components_outstanding: the plan's components less
    the exempt ones, those completed or exempt in an earlier attempt, and those whose
    best final score (selectors.best_final_scores) reaches the pass mark of every
    certificate of the plan requiring them; only components of kind exam."""
    ids = [case.pk for case in cases]
    plan_ids = {case.plan_id for case in cases}
    exempt: dict[int, set[int]] = {}
    for case_id, component_id in CaseExemption.objects.filter(case_id__in=ids).values_list(
        "case_id", "component_id"
    ):
        exempt.setdefault(case_id, set()).add(component_id)
    scores: dict[int, list[ComponentScore]] = {}
    for row in ComponentScore.objects.filter(case_id__in=ids):
        scores.setdefault(row.case_id, []).append(row)
    components: dict[int, list[PlanComponent]] = {}
    for pc in PlanComponent.objects.filter(plan_id__in=plan_ids).select_related("component"):
        components.setdefault(pc.plan_id, []).append(pc)
    marks: dict[int, dict[int, list]] = {plan_id: {} for plan_id in plan_ids}
    for plan_id, component_id, mark in PassMark.objects.filter(
        certificate__plan_id__in=plan_ids
    ).values_list("certificate__plan_id", "component_id", "pass_mark"):
        marks[plan_id].setdefault(component_id, []).append(mark)
    settled_states = (ScoreStatus.COMPLETED, ScoreStatus.EXEMPT)
    result = {}
    for case in cases:
        rows = scores.get(case.pk, [])
        settled = {r.component_id for r in rows if r.status in settled_states}
        required = marks[case.plan_id]
        passed = {
            component_id
            for component_id, score in best_final_scores(rows).items()
            if all(m is not None and score >= m for m in required.get(component_id, [None]))
        }
        skip = exempt.get(case.pk, set()) | settled | passed
        result[case.pk] = [
            pc.component
            for pc in components[case.plan_id]
            if pc.component_id not in skip and pc.component.kind == Component.Kind.EXAM
        ]
    return result


def _clashes_many(cases: list[Case], sessions: list[ExamSession]) -> dict[int, set[int]]:
    """{case id: ids of `sessions` that overlap a holding booking of its candidate in
    another session} (`_clashing` for many cases and sessions in one query)."""
    by_candidate = {case.candidate_id: case.pk for case in cases}
    result: dict[int, set[int]] = {}
    holding = Booking.objects.filter(
        case__candidate_id__in=list(by_candidate),
        status__in=HOLDING,
        session__date__in={s.date for s in sessions},
    ).values_list(
        "case__candidate_id",
        "session_id",
        "session__date",
        "session__start_time",
        "session__end_time",
    )
    for candidate_id, session_id, day, start, end in holding:
        for s in sessions:
            if s.pk != session_id and s.date == day and start < s.end_time and end > s.start_time:
                result.setdefault(by_candidate[candidate_id], set()).add(s.pk)
    return result


def _book_many(
    *, actor, seats: _Seats, seated: list[tuple[Case, ExamSession, int, list[Component]]]
) -> list[Booking]:
    """`_book` for many (cases locked and checked, sessions locked and open, seats taken
    in `seats`): bookings and their components inserted in bulk, the cases scheduled
    (cases.services.cases_schedule), one `booking.create` event per booking."""
    bookings = []
    for case, session, seat, _ in seated:
        bookings.append(
            Booking(
                session=session,
                case=case,
                attempt=case.attempts + 1,
                seat_number=seat,
                ticket_number=seats.ticket(session, seat),
            )
        )
    try:
        with transaction.atomic():
            Booking.objects.bulk_create(bookings)
    except IntegrityError as exc:  # the constraints caught a race the locks did not
        raise StateConflict("考位刚被占用，请重试") from exc
    through = Booking.components.through
    through.objects.bulk_create(
        through(booking_id=booking.pk, component_id=component.pk)
        for booking, (*_, components) in zip(bookings, seated, strict=True)
        for component in components
    )
    details = {
        booking.case_id: {
            "session": booking.session.code,
            "seat": booking.seat_number,
            "ticket": booking.ticket_number,
        }
        for booking in bookings
    }
    case_services.cases_schedule(actor=actor, details=details)
    audit_record_many(
        actor=actor,
        events=[
            event_for(
                booking,
                "booking.create",
                to_state=booking.status,
                changes={
                    "booking": {
                        "before": None,
                        "after": {
                            **details[booking.case_id],
                            "case": booking.case_id,
                            "components": [c.code for c in components],
                        },
                    }
                },
            )
            for booking, (*_, components) in zip(bookings, seated, strict=True)
        ],
    )
    return bookings


@dataclass
class AllocationSummary:
    allocated: list[dict] = field(default_factory=list)
    unallocated: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"allocated": self.allocated, "unallocated": self.unallocated}


def allocation_problems(plan: EvaluationPlan, sessions: list[ExamSession]) -> list[str]:
    """Why `sessions` cannot be allocated into for `plan` (empty: they can): checked by
    sessions_allocate under its locks, and before an allocation job is queued."""
    if not sessions:
        return ["本评价计划没有开放编排的场次"]
    return [
        f"场次 {s.code} 不属于评价计划「{plan.name}」" for s in sessions if s.plan_id != plan.pk
    ] + [
        f"场次 {s.code} 当前状态为「{s.get_status_display()}」，不能编排"
        for s in sessions
        if s.plan_id == plan.pk and s.status != SessionStatus.OPEN
    ]


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
    length so concurrent bookings and allocations cannot overbook, then, ALLOCATE_CHUNK
    cases at a time, their candidates and the cases (one query each, by id); the seats,
    tickets and clashes of a chunk are read in a few queries and its bookings written in
    bulk (cases.services.cases_schedule moves the cases). `progress(done, total)` is
    called for each case once its chunk is written. Audited per booking and case and
    once as `plan.allocate`. Idempotent in effect: a second run finds nothing left to
    seat."""
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
    errors = allocation_problems(plan, locked)
    if errors:
        raise ValidationError({"sessions": errors})
    ordered = sorted(locked, key=lambda s: (s.date, s.start_time, s.code))
    covers = {s.pk: set(s.components.values_list("pk", flat=True)) for s in ordered}
    seats = _Seats(ordered)

    candidates = list(cases_awaiting_seat(plan).order_by("pk").values_list("pk", flat=True))
    summary = AllocationSummary()
    done = 0
    for start in range(0, len(candidates), ALLOCATE_CHUNK):
        chunk = _lock_cases(candidates[start : start + ALLOCATE_CHUNK])
        components_of = _exam_components_many(chunk)
        clashes = _clashes_many(chunk, ordered)
        seated: list[tuple[Case, ExamSession, int, list[Component]]] = []
        for case in chunk:
            components = components_of[case.pk]
            needed = {c.pk for c in components}
            covering = [s for s in ordered if needed <= covers[s.pk]]
            with_room = [s for s in covering if seats.free(s)]
            free = [s for s in with_room if s.pk not in clashes.get(case.pk, ())]
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
                seated.append((case, free[0], seats.take(free[0]), components))
        bookings = _book_many(actor=actor, seats=seats, seated=seated)
        summary.allocated += [
            {
                "case": booking.case_id,
                "session": booking.session.code,
                "seat": booking.seat_number,
                "ticket_number": booking.ticket_number,
            }
            for booking in bookings
        ]
        if progress is not None:
            for _ in chunk:
                done += 1
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
