"""Demo data for the exams stage: each demo plan gets a venue room and a session on the
plan's exam date; its eligible cases are allocated, ticketed, checked in (a few absent)
at the desk on that date before the start, trained where the plan requires it, marked
(practical double-blind, some arbitration), finalised, reviewed with its warnings, and
approved, all through the real services."""

import random
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from cases.demo import Stages
from cases.models import Case, CaseExemption, CaseStatus, EvaluationPlan, MarkingMode

from . import attendance, review, scheduling, scoring, sessions
from .models import Booking, BookingStatus, ExamSession, QualityWarning, Venue, WarningStatus


@dataclass
class ExamsDemoResult:
    sessions: list[ExamSession] = field(default_factory=list)
    arbitrated: int = 0
    warnings: int = 0
    venue: Venue | None = None


def _users():
    users = get_user_model().objects
    return {
        name: users.get(username=name)
        for name in ("coordinator", "grader", "grader2", "chief", "reviewer")
    }


def _marks(rng: random.Random, ability: int) -> tuple[Decimal, Decimal]:
    theory = Decimal(max(30, min(100, ability + rng.randint(-12, 12))))
    practical = Decimal(max(30, min(100, ability + rng.randint(-8, 14))))
    return theory, practical


def build(
    *,
    plans: list[EvaluationPlan],
    seed: int,
    progress=None,
    stages: Stages | None = None,
    on_approved=None,
    rng: random.Random | None = None,
    venue: Venue | None = None,
) -> ExamsDemoResult:
    """Run each plan's eligible cases through one session; `stages` collects the wall
    time of scheduling, check-in, marking and review (summed over the plans).
    `on_approved(plan)` is called once each plan's session is approved, before the
    next plan's session starts (the demo command issues the plan's certificates there,
    so the workers render them while the next session runs). The demo command calls
    this once per group of registered candidates, passing on the same `rng` and the
    `venue` of the first call (the result's), each call adding rooms to it."""
    rng = rng or random.Random(seed + 1)  # noqa: S311 - reproducible demo data, not secrets
    stages = stages or Stages()
    users = _users()
    coord = users["coordinator"]
    result = ExamsDemoResult()
    with stages("scheduling"):
        venue = venue or sessions.venue_create(
            actor=coord, name=f"太原技师学院考点（演示 {seed}-{rng.randrange(10**6)}）"
        )
    result.venue = venue
    for index, plan in enumerate(plans):
        with stages("scheduling"):
            # Rooms are numbered on in the venue across calls.
            session = _schedule(plan, venue.rooms.count(), venue, users)
        if session is None:
            continue
        with stages("check_in"):
            session, bookings = _check_in(session, users, rng)
        with stages("marking"):
            result.arbitrated += _mark(session, bookings, users, rng)
        with stages("review"):
            review.session_submit_for_review(actor=coord, session=session)
            result.warnings += _review(session, users)
            review.session_approve(
                actor=users["reviewer"], session=session, notes="抽查评分与签到记录，同意发布"
            )
        result.sessions.append(session)
        if on_approved:
            on_approved(plan)
        if progress:
            progress(index + 1, len(plans))
    return result


def _schedule(plan: EvaluationPlan, index: int, venue, users) -> ExamSession | None:
    """A room and an open session for the plan's eligible cases, its graders, every
    eligible case allocated a seat, and the roster frozen; None without eligible cases."""
    coord = users["coordinator"]
    count = Case.objects.filter(plan=plan, status=CaseStatus.ELIGIBLE).count()
    if not count:
        return None
    room = sessions.room_create(
        actor=coord, venue=venue, name=f"第{index + 1}考场", capacity=max(count, 1)
    )
    exam_components = [
        pc.component.code
        for pc in plan.components.select_related("component")
        if pc.component.kind == "exam"
    ]
    session = sessions.session_create(
        actor=coord,
        plan=plan,
        room=room,
        date=plan.exam_date,
        start_time=time(9, 0),
        end_time=time(11, 30),
        capacity=room.capacity,
        components=exam_components,
    )
    session = sessions.session_open(actor=coord, session=session)
    for code in exam_components:
        marking = plan.components.get(component__code=code).marking_mode
        graders = ["grader", "grader2"] if marking == MarkingMode.DOUBLE else ["grader"]
        for name in graders:
            sessions.session_assign_staff(
                actor=coord, session=session, user=users[name], role="grader", component=code
            )
        if marking == MarkingMode.DOUBLE:
            sessions.session_assign_staff(
                actor=coord,
                session=session,
                user=users["chief"],
                role="chief_grader",
                component=code,
            )
    scheduling.sessions_allocate(actor=coord, plan=plan, sessions=[session])
    return sessions.session_freeze_roster(actor=coord, session=session)


def _check_in(session: ExamSession, users, rng: random.Random) -> tuple[ExamSession, list[Booking]]:
    """Admit the candidates at the desk (a few absent), record training where the plan
    requires it, start and close the session; return it (marking) and its bookings."""
    coord = users["coordinator"]
    plan = session.plan
    bookings = list(session.bookings.select_related("case").prefetch_related("components"))
    # The desk admits candidates on the session's date only, and the demo does not
    # run on that date (its plans sit 30 days ahead), so each check-in carries the
    # desk's time: 10 to 40 minutes before the start (spread by seat, not by rng, so
    # the rest of the data stays as seeded).
    starts_at = timezone.make_aware(datetime.combine(session.date, session.start_time))
    present = []
    for n, booking in enumerate(bookings):
        if rng.random() < 0.05:
            continue  # absent
        present.append(
            attendance.CheckIn(
                booking.ticket_number, at=starts_at - timedelta(minutes=10 + (n * 7) % 31)
            )
        )
    # The desk's list of scans, synced in one go (the desk scans one by one; the
    # service takes the list).
    checked_in = attendance.bookings_check_in(actor=coord, session=session, entries=present)
    if plan.components.filter(component__code="training").exists():
        exempt = set(
            CaseExemption.objects.filter(
                case__in=[b.case_id for b in checked_in], component__code="training"
            ).values_list("case_id", flat=True)
        )
        trained = [b.case_id for b in checked_in if b.case_id not in exempt]
        if trained:
            attendance.cases_training_complete(actor=coord, cases=trained)
    session = sessions.session_start(actor=coord, session=session)
    return sessions.session_close(actor=coord, session=session), bookings


def _mark(session: ExamSession, bookings, users, rng: random.Random) -> int:
    """Enter every mark of the session; return how many needed arbitration."""
    checked_in = set(
        session.bookings.filter(status=BookingStatus.CHECKED_IN).values_list("pk", flat=True)
    )
    sat = [b for b in bookings if b.pk in checked_in]
    plan_components = {
        pc.component.code: pc for pc in session.plan.components.select_related("component")
    }
    entries: dict[tuple[str, str], list[dict]] = {}
    arbitrations = []
    for booking in sat:
        ability = rng.randint(50, 96)
        theory, practical = _marks(rng, ability)
        codes = {c.code for c in booking.components.all()}
        for code, score in (("theory", theory), ("practical", practical), ("hot_work", theory)):
            if code not in codes:
                continue
            if plan_components[code].marking_mode == MarkingMode.DOUBLE:
                apart = rng.random() < 0.08
                second = score - (12 if apart and score >= 42 else rng.randint(0, 3))
                entries.setdefault(("grader", code), []).append(
                    {"ticket_number": booking.ticket_number, "score": score, "slot": "first"}
                )
                entries.setdefault(("grader2", code), []).append(
                    {
                        "ticket_number": booking.ticket_number,
                        "score": max(second, 0),
                        "slot": "second",
                    }
                )
                if apart and score >= 42:
                    arbitrations.append(
                        (
                            code,
                            {
                                "ticket_number": booking.ticket_number,
                                "score": score - 5,
                                "slot": "arbitration",
                            },
                        )
                    )
            else:
                entries.setdefault(("grader", code), []).append(
                    {"ticket_number": booking.ticket_number, "score": score, "slot": "single"}
                )
    for (name, code), batch in entries.items():
        scoring.marks_enter(actor=users[name], session=session, component=code, entries=batch)
    by_code: dict[str, list[dict]] = {}
    for code, entry in arbitrations:
        by_code.setdefault(code, []).append(entry)
    for code, batch in by_code.items():
        scoring.marks_enter(actor=users["chief"], session=session, component=code, entries=batch)
    return len(arbitrations)


def _review(session: ExamSession, users) -> int:
    """Send any warnings still generated (idempotent: with a real broker the task sent
    after commit may not have run yet), then review, answer and close each one."""
    review.warnings_send(session_id=session.pk)
    warnings = list(QualityWarning.objects.filter(session=session))
    for n, warning in enumerate(warnings):
        confirmed = n % 2 == 0
        warning = review.warning_review(
            actor=users["reviewer"],
            warning=warning,
            confirmed=confirmed,
            note="已调阅监控与评分记录",
        )
        if warning.status == WarningStatus.CONFIRMED:
            warning = review.warning_answer(
                actor=users["coordinator"], warning=warning, answer="已组织复核，说明见附件"
            )
        review.warning_close(actor=users["reviewer"], warning=warning)
    return len(warnings)
