"""exams.attendance.bookings_check_in on its own: a desk's whole list checked in at once,
exactly as check_in does one, all or none, in a number of queries that does not grow
with the list."""

from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases import services as case_services
from cases.models import Case, CaseStatus
from exams.attendance import CheckIn, bookings_check_in, check_in
from exams.models import Booking, BookingStatus
from exams.scheduling import sessions_allocate
from exams.sessions import session_freeze_roster
from tests.cases.factories import make_id_number

from .factories import UserFactory, desk_time, exam_session

pytestmark = pytest.mark.django_db

ON = date(2026, 6, 1)


def booked(coord, plan, n, *, freeze=True):
    """A session of `plan` with `n` new eligible cases seated (through the batch
    services and the allocation), its roster frozen unless `freeze=False`. Returns
    (session, bookings in seat order)."""
    candidates = case_services.candidates_register(
        actor=coord,
        registrations=[
            case_services.Registration(
                id_number=make_id_number(date(1990, 5, 17), "M"),
                name=f"考生{i}",
                phone="13800138000",
                education="senior",
            )
            for i in range(n)
        ],
    )
    cases = case_services.cases_create(actor=coord, plan=plan, candidates=candidates)
    case_services.cases_submit(actor=coord, cases=[c.pk for c in cases], on=ON)
    case_services.cases_approve(actor=coord, cases=[c.pk for c in cases])
    session = exam_session(coord, plan, capacity=n)
    sessions_allocate(actor=coord, plan=plan, sessions=[session])
    if freeze:
        session = session_freeze_roster(actor=coord, session=session)
    return session, list(Booking.objects.filter(session=session).order_by("seat_number"))


def fresh(user):
    """The user re-read: no role cache carried over from an earlier call."""
    return get_user_model().objects.get(pk=user.pk)


def states(bookings) -> list[tuple[str, str]]:
    rows = {
        b.pk: (b.status, b.case.status)
        for b in Booking.objects.select_related("case").filter(pk__in=[b.pk for b in bookings])
    }
    return [rows[b.pk] for b in bookings]


def shape(event: AuditEvent) -> dict:
    return {
        "action": event.action,
        "object_type": event.object_type,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "reason": event.reason,
        "changes": event.changes,
    }


def event_of(action: str, obj) -> AuditEvent:
    return AuditEvent.objects.get(action=action, object_id=str(obj.pk))


BOOKED = (BookingStatus.BOOKED, CaseStatus.SCHEDULED)
CHECKED_IN = (BookingStatus.CHECKED_IN, CaseStatus.EXAMINED)


def test_bookings_check_in_checks_in_exactly_the_listed_bookings(coord, plan):
    session, (first, second, untouched) = booked(coord, plan, 3)
    at = desk_time(session)

    result = bookings_check_in(
        actor=coord,
        session=session,
        entries=[
            CheckIn(second.ticket_number, at),
            {"ticket_or_id": first.ticket_number, "at": at},
        ],
    )

    assert [b.pk for b in result] == [second.pk, first.pk]
    assert states([first, second, untouched]) == [CHECKED_IN, CHECKED_IN, BOOKED]
    assert Booking.objects.get(pk=second.pk).checked_in_at == at
    assert Case.objects.get(pk=first.case_id).attempts == 1


def test_bookings_check_in_accepts_full_id_numbers_in_any_case(coord, plan):
    session, (booking,) = booked(coord, plan, 1)
    number = booking.case.candidate.id_number

    (result,) = bookings_check_in(
        actor=coord, session=session, entries=[CheckIn(f" {number.lower()} ", desk_time(session))]
    )

    assert result.pk == booking.pk
    assert states([booking]) == [CHECKED_IN]


def test_bookings_check_in_writes_one_booking_and_one_case_event_per_entry(coord, plan):
    session, bookings = booked(coord, plan, 3)
    before = AuditEvent.objects.count()

    bookings_check_in(
        actor=coord,
        session=session,
        entries=[CheckIn(b.ticket_number, desk_time(session)) for b in bookings],
    )

    events = AuditEvent.objects.filter(seq__gt=before).order_by("seq")
    assert sorted((e.action, e.object_id) for e in events) == sorted(
        [("case.check_in", str(b.case_id)) for b in bookings]
        + [("booking.check_in", str(b.pk)) for b in bookings]
    )


def test_bookings_check_in_events_say_what_check_in_says(coord, plan):
    session, (single, batch) = booked(coord, plan, 2)
    at = desk_time(session)
    check_in(actor=coord, session=session, ticket_or_id=single.ticket_number, at=at)

    bookings_check_in(actor=coord, session=session, entries=[CheckIn(batch.ticket_number, at)])

    assert shape(event_of("booking.check_in", batch)) == shape(event_of("booking.check_in", single))
    assert shape(event_of("case.check_in", batch.case)) == shape(
        event_of("case.check_in", single.case)
    )


def test_bookings_check_in_with_an_unknown_code_writes_nothing_and_names_the_entry(coord, plan):
    session, (first, second) = booked(coord, plan, 2)
    at = desk_time(session)
    before = AuditEvent.objects.count()

    with pytest.raises(ValidationError) as info:
        bookings_check_in(
            actor=coord,
            session=session,
            entries=[
                CheckIn(first.ticket_number, at),
                CheckIn("NO-SUCH-TICKET", at),
                CheckIn(second.ticket_number, at),
            ],
        )

    assert info.value.message_dict == {
        "code": ["第 2 条：未找到准考证号或身份证号码为 NO-SUCH-TICKET 的考生"]
    }
    assert states([first, second]) == [BOOKED, BOOKED]
    assert AuditEvent.objects.count() == before


def test_bookings_check_in_of_the_same_booking_twice_names_both_entries(coord, plan):
    session, (booking,) = booked(coord, plan, 1)
    at = desk_time(session)

    with pytest.raises(ValidationError) as info:
        bookings_check_in(
            actor=coord,
            session=session,
            entries=[
                CheckIn(booking.ticket_number, at),
                CheckIn(booking.case.candidate.id_number, at),
            ],
        )

    assert info.value.message_dict == {"code": ["第 2 条：与第 1 条为同一考生"]}
    assert states([booking]) == [BOOKED]


def test_bookings_check_in_on_another_day_names_the_entry(coord, plan):
    session, (today, tomorrow) = booked(coord, plan, 2)
    at = desk_time(session)

    with pytest.raises(ValidationError) as info:
        bookings_check_in(
            actor=coord,
            session=session,
            entries=[
                CheckIn(today.ticket_number, at),
                CheckIn(tomorrow.ticket_number, at + timedelta(days=1)),
            ],
        )

    assert info.value.message_dict == {
        "code": [f"第 2 条：本场次考试日期为 {session.date}，今天不能签到"]
    }
    assert states([today, tomorrow]) == [BOOKED, BOOKED]


def test_bookings_check_in_of_a_booking_already_checked_in_is_a_conflict_naming_it(coord, plan):
    session, (fresh_one, done) = booked(coord, plan, 2)
    at = desk_time(session)
    check_in(actor=coord, session=session, ticket_or_id=done.ticket_number, at=at)
    before = AuditEvent.objects.count()

    with pytest.raises(StateConflict) as info:
        bookings_check_in(
            actor=coord,
            session=session,
            entries=[CheckIn(fresh_one.ticket_number, at), CheckIn(done.ticket_number, at)],
        )

    desk = timezone.localtime(at)
    assert info.value.message == (
        f"第 2 条：考生 {done.case.candidate.name}（准考证号 {done.ticket_number}）"
        f"已于 {desk:%H:%M:%S} 签到，不能重复签到"
    )
    assert info.value.extra == {"current_state": BookingStatus.CHECKED_IN}
    assert states([fresh_one, done]) == [BOOKED, CHECKED_IN]
    assert AuditEvent.objects.count() == before


def test_bookings_check_in_before_the_roster_is_frozen_is_a_conflict(coord, plan):
    session, (booking,) = booked(coord, plan, 1, freeze=False)

    with pytest.raises(StateConflict) as info:
        bookings_check_in(
            actor=coord,
            session=session,
            entries=[CheckIn(booking.ticket_number, desk_time(session))],
        )

    assert (
        info.value.message
        == "场次当前状态为「开放编排」，不能签到（须为「名单已锁定」或「考试进行中」）"
    )
    assert info.value.extra == {"current_state": "open"}
    assert states([booking]) == [BOOKED]


def test_bookings_check_in_of_an_empty_list_is_refused(coord, plan):
    session, _ = booked(coord, plan, 1)

    with pytest.raises(ValidationError) as info:
        bookings_check_in(actor=coord, session=session, entries=[])

    assert info.value.message_dict == {"code": ["请扫描或输入准考证号、身份证号码"]}


def test_bookings_check_in_by_a_grader_is_refused(coord, plan):
    session, (booking,) = booked(coord, plan, 1)
    before = AuditEvent.objects.count()

    with pytest.raises(PermissionDenied) as info:
        bookings_check_in(
            actor=UserFactory(username="grader", roles=["grader"]),
            session=session,
            entries=[CheckIn(booking.ticket_number, desk_time(session))],
        )

    assert str(info.value) == "需要以下角色之一：考务人员"
    assert states([booking]) == [BOOKED]
    assert AuditEvent.objects.count() == before


def test_bookings_check_in_takes_as_many_queries_for_50_tickets_as_for_5(coord, plan):
    session, bookings = booked(coord, plan, 55)
    at = desk_time(session)

    def run(part):
        actor = fresh(coord)
        entries = [CheckIn(b.ticket_number, at) for b in part]
        with CaptureQueriesContext(connection) as queries:
            bookings_check_in(actor=actor, session=session, entries=entries)
        return len(queries.captured_queries)

    assert run(bookings[5:]) == run(bookings[:5])
    assert states(bookings) == [CHECKED_IN] * 55
