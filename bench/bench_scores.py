"""Score import (exams.scoring.scores_import) of 100,000 marks from one XLSX file, as
a computer-based exam system exports them, against entering marks one by one through
exams.scoring.mark_enter, both on the same database in the same run.

The roster: one session of a SAMR-WELD level-2 plan (four exam components: theory,
practical, hot_work, review; single-marked) with 25,000 checked-in candidates
(BENCH_SCORES_ROWS / 4 overrides), one grader assigned to every component. The plan,
session and staff go through the services; the 25,000 candidates, cases and bookings
are bulk-inserted into the throwaway database (the roster is not what is measured). The
file has columns 准考证号, 科目代码, 分数 (whole and half marks) in the shared-strings
layout Excel writes (bench.bench_import.excel_workbook). The baseline enters 500 marks
of 125 other candidates of the same session through mark_enter, extrapolated per row.
"""

import os
import time
from datetime import date
from datetime import time as clock
from decimal import Decimal
from io import StringIO

from bench.bench_import import coordinator, excel_workbook, id_number, profiled

ROWS = int(os.environ.get("BENCH_SCORES_ROWS", "100000"))
COMPONENTS = ("theory", "practical", "hot_work", "review")
CANDIDATES = ROWS // len(COMPONENTS)
BASELINE_ROWS = 500
BASELINE_CANDIDATES = BASELINE_ROWS // len(COMPONENTS)
LINE = (
    "scores: {figure:,.0f} rows/s ({rows:,} rows in {seconds:.1f} s), "
    "baseline one-by-one {baseline:,.0f} rows/s, ratio {ratio:.1f}"
)


def score(n: int, component: int) -> Decimal:
    return Decimal(40 + (n * 7 + component * 13) % 60) + (Decimal("0.5") if n % 4 == 0 else 0)


def roster(actor, grader, seats: int):
    """A session in `marking` with `seats` checked-in bookings sitting every component;
    returns (session, [ticket numbers in seat order])."""
    from cases import plans
    from cases.models import Candidate, Case, CaseStatus
    from exams import sessions
    from exams.models import Booking, BookingStatus

    plan = plans.plan_create(
        actor=actor,
        name="2026年焊工联合评价（基准测试）",
        qualification_type="SAMR-WELD",
        occupation="6-18-02-04",
        level=2,
        province="14",
        exam_date=date(2026, 9, 15),
        require_photo=False,
    )
    plan = plans.plan_open(actor=actor, plan=plan)
    venue = sessions.venue_create(actor=actor, name="基准测试考点")
    room = sessions.room_create(actor=actor, venue=venue, name="机房", capacity=seats)
    session = sessions.session_create(
        actor=actor,
        plan=plan,
        room=room,
        date=plan.exam_date,
        start_time=clock(9, 0),
        end_time=clock(11, 0),
        capacity=seats,
        components=list(COMPONENTS),
    )
    session = sessions.session_open(actor=actor, session=session)
    for code in COMPONENTS:
        sessions.session_assign_staff(
            actor=actor, session=session, user=grader, role="grader", component=code
        )

    # The roster itself: inserted directly (what is measured is the marking).
    first = 10_000_000  # ID numbers apart from bench_import's
    Candidate.objects.bulk_create(
        (
            Candidate(
                id_number=id_number(first + n),
                name=f"考生{n}",
                sex="M",
                birth_date=date(1990, 1, 1),
                phone=f"138{n:08d}",
                education="senior",
                created_by=actor,
            )
            for n in range(seats)
        ),
        batch_size=2000,
    )
    candidates = list(
        Candidate.objects.filter(name__startswith="考生", phone__startswith="138")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    Case.objects.bulk_create(
        (
            Case(candidate_id=pk, plan=plan, status=CaseStatus.SCHEDULED, created_by=actor)
            for pk in candidates
        ),
        batch_size=2000,
    )
    cases = list(Case.objects.filter(plan=plan).order_by("pk").values_list("pk", flat=True))
    tickets = [f"{plan.pk:03d}{session.code}{seat:05d}" for seat in range(1, seats + 1)]
    Booking.objects.bulk_create(
        (
            Booking(
                session=session,
                case_id=case_id,
                seat_number=seat,
                ticket_number=ticket,
                status=BookingStatus.CHECKED_IN,
            )
            for seat, (case_id, ticket) in enumerate(zip(cases, tickets, strict=True), start=1)
        ),
        batch_size=2000,
    )
    components = list(session.components.order_by("code"))
    through = Booking.components.through
    through.objects.bulk_create(
        (
            through(booking_id=booking_id, component_id=component.pk)
            for booking_id in session.bookings.values_list("pk", flat=True)
            for component in components
        ),
        batch_size=5000,
    )
    session = sessions.session_freeze_roster(actor=actor, session=session)
    session = sessions.session_start(actor=actor, session=session)
    session = sessions.session_close(actor=actor, session=session)
    return session, tickets


def grader_user():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _ = get_user_model().objects.get_or_create(username="bench-grader")
    user.groups.add(Group.objects.get(name="grader"))
    return user


def one_by_one(grader, session, tickets: list[str]) -> float:
    from exams.models import Booking
    from exams.scoring import mark_enter

    bookings = {b.ticket_number: b for b in Booking.objects.filter(ticket_number__in=tickets)}
    started = time.perf_counter()
    for n, ticket in enumerate(tickets):
        for index, code in enumerate(COMPONENTS):
            mark_enter(
                actor=grader, booking=bookings[ticket], component=code, score=score(n, index)
            )
    return time.perf_counter() - started


def build_file(tickets: list[str]) -> bytes:
    rows: list[list] = [["准考证号", "姓名", "科目代码", "分数"]]
    for n, ticket in enumerate(tickets):
        for index, code in enumerate(COMPONENTS):
            value = score(n, index)
            # Whole marks as integers, half marks as decimals, as exam systems write them.
            rows.append([ticket, f"考生{n}", code, int(value) if value % 1 == 0 else float(value)])
    return excel_workbook("成绩", rows)


def run() -> dict:
    from django.core.management import call_command

    from audit.models import AuditEvent
    from exams.models import Mark
    from exams.scoring import scores_import

    actor = coordinator()
    grader = grader_user()
    setup_started = time.perf_counter()
    session, tickets = roster(actor, grader, CANDIDATES + BASELINE_CANDIDATES)
    setup_seconds = time.perf_counter() - setup_started
    imported, baseline_tickets = tickets[:CANDIDATES], tickets[CANDIDATES:]

    baseline_seconds = one_by_one(grader, session, baseline_tickets)
    baseline = BASELINE_ROWS / baseline_seconds

    data = build_file(imported)
    events_before = AuditEvent.objects.count()
    load_before = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    with profiled():  # PROFILE=<file>, as in bench_import
        counts = scores_import(actor=grader, session=session, file=data, name="机考成绩.xlsx")
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    load_after = os.getloadavg()[0]
    rows = CANDIDATES * len(COMPONENTS)
    assert counts == {"rows": rows, "entered": rows, "changed": 0, "unchanged": 0}, counts
    assert Mark.objects.filter(booking__session=session).count() == rows + BASELINE_ROWS
    events = AuditEvent.objects.count() - events_before
    assert events == rows + 1  # one per mark and one for the import
    verify_started = time.perf_counter()
    call_command("audit_verify", stdout=StringIO())  # raises CommandError on a broken chain
    verify_seconds = time.perf_counter() - verify_started
    figure = rows / seconds
    ratio = figure / baseline
    return {
        "name": "scores",
        "figure": round(figure, 1),
        "unit": "rows/s",
        "baseline": round(baseline, 1),
        "baseline_label": "one by one through mark_enter",
        "ratio": round(ratio, 2),
        "rows": rows,
        "file_bytes": len(data),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "audit_events": events,
        "audit_verify_seconds": round(verify_seconds, 3),
        "roster_seconds": round(setup_seconds, 3),
        "baseline_rows": BASELINE_ROWS,
        "baseline_seconds": round(baseline_seconds, 3),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "line": LINE.format(
            figure=figure, rows=rows, seconds=seconds, baseline=baseline, ratio=ratio
        ),
    }


if __name__ == "__main__":
    from bench import _support

    _support.django_setup()
    with _support.test_database():
        outcome = run()
        _support.write_result(outcome)
    _support.update_readme()
    print(outcome["line"])
