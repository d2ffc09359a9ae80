"""Booking eligible cases to seats, one by one and by automatic allocation."""

import threading
from datetime import time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases import services as case_services
from cases.models import Case, CaseStatus
from exams import scheduling
from exams.models import Booking, BookingStatus
from exams.scheduling import booking_cancel, booking_create, sessions_allocate
from exams.sessions import session_freeze_roster

from .factories import (
    PlanFactory,
    UserFactory,
    coordinator,
    eligible_case,
    exam_session,
    hold,
    register,
)

pytestmark = pytest.mark.django_db


def codes(booking):
    return sorted(booking.components.values_list("code", flat=True))


def status_of(case):
    return Case.objects.get(pk=case.pk).status


# booking_create ------------------------------------------------------------------------


def test_booking_takes_the_lowest_seat_and_schedules_the_case(coord, plan):
    session = exam_session(coord, plan, code="A1")
    first = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    second = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    assert (first.seat_number, second.seat_number) == (1, 2)
    assert first.ticket_number == f"{plan.pk:03d}A1001"
    assert second.ticket_number == f"{plan.pk:03d}A1002"
    assert (first.status, first.attempt) == (BookingStatus.BOOKED, 1)
    assert codes(first) == ["practical", "theory"]
    assert status_of(first.case) == CaseStatus.SCHEDULED
    case_event = AuditEvent.objects.get(action="case.schedule", object_id=str(first.case_id))
    assert case_event.changes["booking"]["after"] == {
        "session": "A1",
        "seat": 1,
        "ticket": first.ticket_number,
    }
    booking_event = AuditEvent.objects.get(action="booking.create", object_id=str(first.pk))
    assert booking_event.changes["booking"]["after"]["components"] == ["theory", "practical"]


def test_exempt_components_are_not_sat(coord, plan):
    candidate = register(coord)
    hold(coord, candidate, "SAMR-WELD")  # row 7: exempt from training and theory
    case = eligible_case(coord, plan, candidate=candidate)
    session = exam_session(coord, plan, components=["practical"])
    booking = booking_create(actor=coord, session=session, case=case)
    assert codes(booking) == ["practical"]


def test_a_session_not_covering_the_components_is_refused(coord, plan):
    session = exam_session(coord, plan, components=["theory"], code="T1")
    case = eligible_case(coord, plan)
    with pytest.raises(ValidationError) as info:
        booking_create(actor=coord, session=session, case=case)
    assert info.value.message_dict == {"session": ["场次 T1 不包含该考生须考的科目：实操考试"]}
    assert Booking.objects.count() == 0
    assert status_of(case) == CaseStatus.ELIGIBLE


def test_booking_a_case_that_is_not_eligible_is_a_conflict(coord, plan):
    case = case_services.case_create(actor=coord, candidate=register(coord), plan=plan)
    with pytest.raises(StateConflict) as info:
        booking_create(actor=coord, session=exam_session(coord, plan), case=case)
    assert info.value.message == "案件当前状态为「草稿」，只有「资格审核通过」的案件可以安排考试"
    assert Booking.objects.count() == 0


def test_booking_a_case_of_another_plan_is_refused(coord, plan):
    case = eligible_case(coord, PlanFactory())
    session = exam_session(coord, plan, code="A1")
    with pytest.raises(ValidationError) as info:
        booking_create(actor=coord, session=session, case=case)
    assert info.value.message_dict == {"case": [f"案件 #{case.pk} 不属于场次 A1 的评价计划"]}


def test_one_case_is_not_booked_twice(coord, plan):
    session = exam_session(coord, plan, code="A1")
    other = exam_session(coord, plan, code="B1", start=time(14, 0), end=time(16, 0))
    case = eligible_case(coord, plan)
    booking = booking_create(actor=coord, session=session, case=case)
    for target in (session, other):
        with pytest.raises(ValidationError) as info:
            booking_create(actor=coord, session=target, case=case)
        assert info.value.message_dict == {
            "case": [
                f"案件 #{case.pk} 已安排在场次 A1 座位 1（准考证号 {booking.ticket_number}），"
                "不能重复安排"
            ]
        }
    assert Booking.objects.count() == 1


def test_one_candidate_is_not_in_two_sessions_at_the_same_time(coord, plan):
    candidate = register(coord)
    first = eligible_case(coord, plan, candidate=candidate)
    other_plan = PlanFactory()
    second = eligible_case(coord, other_plan, candidate=candidate)
    morning = exam_session(coord, plan, code="AM", start=time(9, 0), end=time(11, 0))
    overlap = exam_session(coord, other_plan, code="OV", start=time(10, 30), end=time(12, 0))
    booking_create(actor=coord, session=morning, case=first)
    with pytest.raises(ValidationError) as info:
        booking_create(actor=coord, session=overlap, case=second)
    assert info.value.message_dict == {
        "case": ["考生在同一时段已安排场次 AM（2026-09-15 09:00-11:00），时间冲突"]
    }
    afternoon = exam_session(coord, other_plan, code="PM", start=time(11, 0), end=time(13, 0))
    assert booking_create(actor=coord, session=afternoon, case=second).seat_number == 1


def test_a_full_session_takes_no_more(coord, plan):
    session = exam_session(coord, plan, capacity=1, code="S1")
    booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    late = eligible_case(coord, plan)
    with pytest.raises(ValidationError) as info:
        booking_create(actor=coord, session=session, case=late)
    assert info.value.message_dict == {"session": ["场次 S1 已满（容量 1）"]}
    assert status_of(late) == CaseStatus.ELIGIBLE


def test_a_seat_taken_by_a_racing_booking_is_a_conflict_and_nothing_is_written(
    coord, plan, monkeypatch
):
    session = exam_session(coord, plan, code="S1")
    booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    # Simulate a booking that read the seats before the first one committed.
    monkeypatch.setattr(scheduling, "_free_seat", lambda session: 1)
    late = eligible_case(coord, plan)
    with pytest.raises(StateConflict) as info:
        booking_create(actor=coord, session=session, case=late)
    assert info.value.message == "场次 S1 座位 1 刚被占用，请重试"
    assert Booking.objects.count() == 1
    assert status_of(late) == CaseStatus.ELIGIBLE


def test_booking_needs_an_open_session(coord, plan):
    session = exam_session(coord, plan, open_it=False, code="S1")
    with pytest.raises(StateConflict) as info:
        booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    assert info.value.message == "场次 S1 当前状态为「已计划」，只有「开放编排」的场次可以安排考位"


def test_booking_is_for_coordinators(coord, plan):
    session = exam_session(coord, plan)
    with pytest.raises(PermissionDenied):
        booking_create(
            actor=UserFactory(roles=["grader"]), session=session, case=eligible_case(coord, plan)
        )


# booking_cancel ------------------------------------------------------------------------


def test_cancel_frees_the_seat_and_returns_the_case_to_eligible(coord, plan):
    session = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    booking = booking_cancel(actor=coord, booking=booking, reason="考生申请改期")
    assert booking.status == BookingStatus.CANCELLED
    assert status_of(booking.case) == CaseStatus.ELIGIBLE
    again = booking_create(actor=coord, session=session, case=booking.case)
    assert (again.seat_number, again.ticket_number) == (1, booking.ticket_number + "-2")
    event = AuditEvent.objects.get(action="booking.cancel")
    assert (event.from_state, event.to_state, event.reason) == (
        "booked",
        "cancelled",
        "考生申请改期",
    )


def test_cancel_needs_a_reason(coord, plan):
    session = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    with pytest.raises(ValidationError) as info:
        booking_cancel(actor=coord, booking=booking, reason=" ")
    assert info.value.message_dict == {"reason": ["请填写理由"]}
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.BOOKED


def test_cancel_after_the_roster_is_frozen_is_a_conflict(coord, plan):
    session = exam_session(coord, plan, code="S1")
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    session_freeze_roster(actor=coord, session=session)
    with pytest.raises(StateConflict) as info:
        booking_cancel(actor=coord, booking=booking, reason="考生申请改期")
    assert info.value.message == "场次 S1 当前状态为「名单已锁定」，不能取消考位"


def test_cancel_twice_is_a_conflict(coord, plan):
    session = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    booking_cancel(actor=coord, booking=booking, reason="考生申请改期")
    with pytest.raises(StateConflict) as info:
        booking_cancel(actor=coord, booking=booking, reason="考生申请改期")
    assert info.value.message == "考位当前状态为「已取消」，不能变为「已取消」"


def test_cancel_is_for_coordinators(coord, plan):
    session = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    with pytest.raises(PermissionDenied):
        booking_cancel(actor=UserFactory(roles=["grader"]), booking=booking, reason="x")


# sessions_allocate ---------------------------------------------------------------------


def test_allocation_fills_sessions_in_order_and_reports_who_is_left(coord, plan):
    cases = [eligible_case(coord, plan) for _ in range(5)]
    exam_session(coord, plan, capacity=2, code="PM", start=time(14, 0), end=time(16, 0))
    exam_session(coord, plan, capacity=2, code="AM")
    progress = []
    summary = sessions_allocate(
        actor=coord, plan=plan, progress=lambda done, total: progress.append((done, total))
    )
    assert [(a["case"], a["session"], a["seat"]) for a in summary.allocated] == [
        (cases[0].pk, "AM", 1),
        (cases[1].pk, "AM", 2),
        (cases[2].pk, "PM", 1),
        (cases[3].pk, "PM", 2),
    ]
    assert summary.unallocated == [{"case": cases[4].pk, "reason": "包含其应考科目的场次均已满"}]
    assert progress == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert [status_of(c) for c in cases] == [CaseStatus.SCHEDULED] * 4 + [CaseStatus.ELIGIBLE]
    event = AuditEvent.objects.get(action="plan.allocate")
    assert event.changes["allocation"]["after"]["allocated"] == 4


def test_allocation_never_goes_beyond_capacity_with_existing_bookings(coord, plan):
    session = exam_session(coord, plan, capacity=3)
    booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    for _ in range(4):
        eligible_case(coord, plan)
    summary = sessions_allocate(actor=coord, plan=plan)
    assert len(summary.allocated) == 2
    assert [a["seat"] for a in summary.allocated] == [2, 3]
    assert len(summary.unallocated) == 2
    assert Booking.objects.filter(session=session).count() == 3


def test_allocation_twice_seats_nobody_twice(coord, plan):
    for _ in range(2):
        eligible_case(coord, plan)
    exam_session(coord, plan)
    assert len(sessions_allocate(actor=coord, plan=plan).allocated) == 2
    assert sessions_allocate(actor=coord, plan=plan).as_dict() == {
        "allocated": [],
        "unallocated": [],
    }
    assert Booking.objects.count() == 2


def test_allocation_respects_components_and_clashes(coord, plan):
    exempt = register(coord)
    hold(coord, exempt, "SAMR-WELD")  # sits practical only
    exempt_case = eligible_case(coord, plan, candidate=exempt)
    clashing = register(coord)
    clashing_case = eligible_case(coord, plan, candidate=clashing)
    other_plan = PlanFactory()
    booking_create(
        actor=coord,
        session=exam_session(coord, other_plan, code="OTHER"),
        case=eligible_case(coord, other_plan, candidate=clashing),
    )
    exam_session(coord, plan, components=["practical"], code="P1")
    summary = sessions_allocate(actor=coord, plan=plan)
    assert [(a["case"], a["session"]) for a in summary.allocated] == [(exempt_case.pk, "P1")]
    assert summary.unallocated == [
        {"case": clashing_case.pk, "reason": "没有包含其应考科目（理论考试、实操考试）的场次"}
    ]
    exam_session(coord, plan, code="BOTH", start=time(10, 0), end=time(12, 0))
    summary = sessions_allocate(actor=coord, plan=plan)
    assert summary.unallocated == [
        {"case": clashing_case.pk, "reason": "有空位的场次与考生的其他场次时间冲突"}
    ]


def test_allocation_refuses_sessions_of_another_plan_or_not_open(coord, plan):
    foreign = exam_session(coord, PlanFactory(), code="F1")
    planned = exam_session(coord, plan, open_it=False, code="P1")
    with pytest.raises(ValidationError) as info:
        sessions_allocate(actor=coord, plan=plan, sessions=[foreign, planned])
    assert info.value.message_dict == {
        "sessions": [
            f"场次 F1 不属于评价计划「{plan.name}」",
            "场次 P1 当前状态为「已计划」，不能编排",
        ]
    }


def test_allocation_without_open_sessions_is_refused(coord, plan):
    exam_session(coord, plan, open_it=False)
    with pytest.raises(ValidationError) as info:
        sessions_allocate(actor=coord, plan=plan)
    assert info.value.message_dict == {"sessions": ["本评价计划没有开放编排的场次"]}


def test_allocation_is_for_coordinators(coord, plan):
    with pytest.raises(PermissionDenied):
        sessions_allocate(actor=UserFactory(roles=["grader"]), plan=plan)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_bookings_never_overbook(on_postgresql):
    coord = coordinator()
    plan = PlanFactory()
    session = exam_session(coord, plan, capacity=1)
    cases = [eligible_case(coord, plan) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes = []

    def book(case):
        try:
            barrier.wait()
            booking_create(actor=coord, session=session, case=case)
            outcomes.append("ok")
        except ValidationError as exc:
            outcomes.append(exc.message_dict["session"][0])
        finally:
            connection.close()

    threads = [threading.Thread(target=book, args=(c,)) for c in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok", f"场次 {session.code} 已满（容量 1）"]
    assert Booking.objects.filter(session=session).count() == 1


def test_a_retake_is_booked_again_after_a_cancelled_retake_booking(coord, plan):
    from datetime import date

    from exams.attendance import check_in
    from exams.sessions import session_close, session_open, session_start

    from ..cases.factories import UserFactory
    from .factories import desk_time

    first = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=first, case=eligible_case(coord, plan))
    session_freeze_roster(actor=coord, session=first)
    check_in(actor=coord, session=first, ticket_or_id=booking.ticket_number, at=desk_time(first))
    session_close(actor=coord, session=session_start(actor=coord, session=first))
    case = case_services.case_finalise_scores(actor=coord, case=booking.case)
    reviewer = UserFactory(username="reviewer", roles=["reviewer"])
    case = case_services.case_publish_result(
        actor=reviewer, case=case, passed=False, on=date(2026, 9, 30)
    )
    case = case_services.case_retake(actor=coord, case=case, on=date(2026, 10, 1))

    retake = exam_session(coord, plan, day=date(2026, 10, 20))
    if retake.status == "planned":
        retake = session_open(actor=coord, session=retake)
    seat = booking_create(
        actor=coord, session=retake, case=case
    )  # the old booking stays checked in
    assert seat.attempt == 2
    booking_cancel(actor=coord, booking=seat, reason="考生改期")
    summary = sessions_allocate(actor=coord, plan=plan, sessions=[retake])
    assert [row["case"] for row in summary.as_dict()["allocated"]] == [case.pk]
