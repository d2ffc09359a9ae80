"""The check-in desk and misconduct."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases.models import Case, CaseStatus
from cases.services import case_withdraw
from catalog.models import QualificationType
from exams.attendance import cases_training_complete, check_in, misconduct_record
from exams.models import Booking, BookingStatus, ComponentScore, Misconduct
from exams.scheduling import booking_create
from exams.sessions import session_close, session_freeze_roster, session_start

from .factories import (
    PlanFactory,
    UserFactory,
    desk_time,
    eligible_case,
    exam_session,
    hold,
)
from .factories import register as register_candidate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def booked(coord, plan, n=2, *, started=True, **session_kwargs):
    session = exam_session(coord, plan, **session_kwargs)
    bookings = [
        booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
        for _ in range(n)
    ]
    session = session_freeze_roster(actor=coord, session=session)
    if started:
        session = session_start(actor=coord, session=session)
    return session, bookings


def evidence():
    return SimpleUploadedFile("video.jpg", b"\xff\xd8\xff evidence", content_type="image/jpeg")


# check_in ------------------------------------------------------------------------------


def test_check_in_by_ticket_number_moves_booking_and_case(coord, plan):
    session, (booking, _) = booked(coord, plan)
    result = check_in(
        actor=coord,
        session=session,
        ticket_or_id=f" {booking.ticket_number} ",
        at=desk_time(session),
    )
    assert result.pk == booking.pk
    assert result.status == BookingStatus.CHECKED_IN
    assert result.checked_in_at is not None
    case = Case.objects.get(pk=booking.case_id)
    assert (case.status, case.attempts) == (CaseStatus.EXAMINED, 1)
    event = AuditEvent.objects.get(action="booking.check_in")
    assert (event.from_state, event.to_state) == ("booked", "checked_in")


def test_check_in_by_id_number_in_lower_case(coord, plan):
    session, (_, booking) = booked(coord, plan)
    number = booking.case.candidate.id_number
    result = check_in(
        actor=coord, session=session, ticket_or_id=number.lower(), at=desk_time(session)
    )
    assert (result.pk, result.status) == (booking.pk, BookingStatus.CHECKED_IN)


def test_check_in_is_open_once_the_roster_is_frozen(coord, plan):
    session, (booking, _) = booked(coord, plan, started=False)
    result = check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    assert result.status == BookingStatus.CHECKED_IN


def test_checking_in_twice_is_a_conflict(coord, plan):
    session, (booking, _) = booked(coord, plan)
    first = check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    at = first.checked_in_at.astimezone().strftime("%H:%M:%S")
    with pytest.raises(StateConflict) as info:
        check_in(
            actor=coord,
            session=session,
            ticket_or_id=booking.case.candidate.id_number,
            at=desk_time(session),
        )
    name = booking.case.candidate.name
    assert info.value.message == (
        f"考生 {name}（准考证号 {booking.ticket_number}）已于 {at} 签到，不能重复签到"
    )
    assert AuditEvent.objects.filter(action="booking.check_in").count() == 1


def test_unknown_ticket_is_refused(coord, plan):
    session, _ = booked(coord, plan)
    with pytest.raises(ValidationError) as info:
        check_in(actor=coord, session=session, ticket_or_id="999XYZ001", at=desk_time(session))
    assert info.value.message_dict == {"code": ["未找到准考证号或身份证号码为 999XYZ001 的考生"]}


def test_empty_code_is_refused(coord, plan):
    session, _ = booked(coord, plan)
    with pytest.raises(ValidationError) as info:
        check_in(actor=coord, session=session, ticket_or_id="  ", at=desk_time(session))
    assert info.value.message_dict == {"code": ["请扫描或输入准考证号、身份证号码"]}


def test_a_ticket_of_another_session_is_refused(coord, plan):
    session, _ = booked(coord, plan, code="AM")
    _, (stranger,) = booked(coord, plan, n=1, code="PM", start=time(14, 0), end=time(16, 0))
    with pytest.raises(ValidationError) as info:
        check_in(
            actor=coord, session=session, ticket_or_id=stranger.ticket_number, at=desk_time(session)
        )
    where = f"场次 PM（2026-09-15 14:00，{stranger.session.room}）"
    assert info.value.message_dict == {
        "code": [f"准考证号 {stranger.ticket_number} 属于{where}，不是本场次的考生"]
    }
    with pytest.raises(ValidationError) as info:
        check_in(
            actor=coord,
            session=session,
            ticket_or_id=stranger.case.candidate.id_number,
            at=desk_time(session),
        )
    assert info.value.message_dict == {
        "code": [f"该身份证号码的考生安排在{where}，不是本场次的考生"]
    }
    assert Booking.objects.get(pk=stranger.pk).status == BookingStatus.BOOKED


def test_check_in_before_the_roster_is_frozen_is_a_conflict(coord, plan):
    session = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    with pytest.raises(StateConflict) as info:
        check_in(
            actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
        )
    assert info.value.message == (
        "场次当前状态为「开放编排」，不能签到（须为「名单已锁定」或「考试进行中」）"
    )


def test_check_in_after_close_is_a_conflict(coord, plan):
    session, (booking, _) = booked(coord, plan)
    session = session_close(actor=coord, session=session)
    with pytest.raises(StateConflict) as info:
        check_in(
            actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
        )
    assert info.value.message == (
        "场次当前状态为「评分中」，不能签到（须为「名单已锁定」或「考试进行中」）"
    )


def test_check_in_is_for_coordinators(coord, plan):
    session, (booking, _) = booked(coord, plan)
    with pytest.raises(PermissionDenied):
        check_in(
            actor=UserFactory(roles=["grader"]),
            session=session,
            ticket_or_id=booking.ticket_number,
            at=desk_time(session),
        )


# The session's date ----------------------------------------------------------------------


def test_check_in_on_the_session_date_records_the_desk_time(coord, plan):
    session, (booking, _) = booked(coord, plan)
    first_minute = timezone.make_aware(datetime(2026, 9, 15, 0, 0))
    result = check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=first_minute
    )
    assert (result.status, result.checked_in_at) == (BookingStatus.CHECKED_IN, first_minute)
    assert Booking.objects.get(pk=booking.pk).checked_in_at == first_minute


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 9, 14, 23, 59, 59),  # the evening before
        datetime(2026, 9, 14, 8, 45),  # the day before, at the usual desk time
        datetime(2026, 9, 16, 0, 0),  # the day after
        datetime(2026, 9, 16, 8, 45),
    ],
)
def test_check_in_on_another_day_is_refused(coord, plan, at):
    session, (booking, _) = booked(coord, plan, started=False)
    with pytest.raises(ValidationError) as info:
        check_in(
            actor=coord,
            session=session,
            ticket_or_id=booking.ticket_number,
            at=timezone.make_aware(at),
        )
    assert info.value.message_dict == {"code": ["本场次考试日期为 2026-09-15，今天不能签到"]}
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.BOOKED
    assert Case.objects.get(pk=booking.case_id).status == CaseStatus.SCHEDULED
    assert not AuditEvent.objects.filter(action="booking.check_in").exists()


def test_the_date_is_the_local_date_of_the_check_in_moment(coord, plan):
    # 2026-09-15 07:30 in Shanghai is still 2026-09-14 in UTC: the desk's local day counts.
    session, (booking, _) = booked(coord, plan)
    at = datetime(2026, 9, 14, 23, 30, tzinfo=UTC)
    result = check_in(actor=coord, session=session, ticket_or_id=booking.ticket_number, at=at)
    assert result.status == BookingStatus.CHECKED_IN


def api_check_in(coord, session, code):
    client = APIClient()
    client.force_authenticate(coord)
    return client.post(f"/api/v1/sessions/{session.pk}/check_in/", {"code": code}, format="json")


def test_api_check_in_on_the_session_date(coord, plan):
    # The API stamps the current time: the session is dated today.
    session, (booking, _) = booked(coord, plan, day=timezone.localdate())
    response = api_check_in(coord, session, booking.ticket_number)
    assert (response.status_code, response.json()["status"]) == (200, "checked_in")


@pytest.mark.parametrize("days", [-1, 1], ids=["session-yesterday", "session-tomorrow"])
def test_api_check_in_on_another_day_is_refused(coord, plan, days):
    day = timezone.localdate() + timedelta(days=days)
    session, (booking, _) = booked(coord, plan, day=day)
    response = api_check_in(coord, session, booking.ticket_number)
    assert (response.status_code, response.json()) == (
        400,
        {"code": [f"本场次考试日期为 {day:%Y-%m-%d}，今天不能签到"]},
    )
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.BOOKED


# misconduct_record ---------------------------------------------------------------------


def test_misconduct_voids_the_booking_and_the_case(coord, plan):
    session, (booking, _) = booked(coord, plan)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    record = misconduct_record(
        actor=coord, booking=booking, description=" 夹带纸条 ", evidence=evidence()
    )
    assert (record.description, record.recorded_by) == ("夹带纸条", coord)
    assert record.evidence.name.startswith("evidence/")
    assert record.evidence.read() == b"\xff\xd8\xff evidence"
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.VOID
    case = Case.objects.get(pk=booking.case_id)
    assert (case.status, case.status_reason) == (CaseStatus.VOID, "夹带纸条")
    event = AuditEvent.objects.get(action="booking.misconduct")
    assert (event.from_state, event.to_state, event.reason) == ("checked_in", "void", "夹带纸条")


def test_misconduct_may_be_recorded_in_marking(coord, plan):
    session, (booking, _) = booked(coord, plan)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    session_close(actor=coord, session=session)
    misconduct_record(actor=coord, booking=booking, description="雷同答卷", evidence=evidence())
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.VOID


def test_misconduct_needs_description_and_evidence(coord, plan):
    session, (booking, _) = booked(coord, plan)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    with pytest.raises(ValidationError) as info:
        misconduct_record(actor=coord, booking=booking, description=" ", evidence=None)
    assert info.value.message_dict == {
        "description": ["请填写违纪情况"],
        "evidence": ["请上传违纪证据文件"],
    }
    assert Misconduct.objects.count() == 0
    assert Case.objects.get(pk=booking.case_id).status == CaseStatus.EXAMINED


def test_misconduct_of_a_candidate_not_checked_in_is_a_conflict(coord, plan):
    _, (booking, _) = booked(coord, plan)
    with pytest.raises(StateConflict) as info:
        misconduct_record(actor=coord, booking=booking, description="替考", evidence=evidence())
    assert info.value.message == "考位当前状态为「已安排」，只有已签到的考生可以记录违纪"


def test_misconduct_before_the_exam_is_a_conflict(coord, plan):
    session, (booking, _) = booked(coord, plan, started=False)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    with pytest.raises(StateConflict) as info:
        misconduct_record(actor=coord, booking=booking, description="替考", evidence=evidence())
    assert info.value.message == (
        "场次当前状态为「名单已锁定」，不能记录违纪（须为「考试进行中」或「评分中」或「质量审核中」）"
    )


def test_misconduct_is_for_coordinators(coord, plan):
    session, (booking, _) = booked(coord, plan)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    with pytest.raises(PermissionDenied):
        misconduct_record(
            actor=UserFactory(roles=["grader"]),
            booking=booking,
            description="替考",
            evidence=evidence(),
        )


def test_unknown_id_number_is_refused_with_the_number_masked(coord, plan):
    from ..cases.factories import make_id_number

    session, _ = booked(coord, plan)
    number = make_id_number()
    with pytest.raises(ValidationError) as info:
        check_in(actor=coord, session=session, ticket_or_id=number, at=desk_time(session))
    masked = number[:3] + "*" * 11 + number[-4:]
    assert info.value.message_dict == {"code": [f"未找到准考证号或身份证号码为 {masked} 的考生"]}


# cases_training_complete ---------------------------------------------------------------


def test_batch_training_records_each_case_once_and_audits_each(coord):
    plan = PlanFactory(qualification_type=QualificationType.objects.get(code="MEM-ELEC-LV"))
    cases = [eligible_case(coord, plan) for _ in range(3)]
    rows = cases_training_complete(actor=coord, cases=cases, note="培训学时已满")
    again = cases_training_complete(actor=coord, cases=[c.pk for c in cases])
    assert [r.case_id for r in rows] == sorted(c.pk for c in cases)
    assert [r.pk for r in again] == [r.pk for r in rows]
    assert {(r.status, r.method, r.score, r.attempt) for r in rows} == {
        ("completed", "completion", None, 1)
    }
    events = AuditEvent.objects.filter(action="case.training_complete").order_by("seq")
    assert [(e.object_id, e.reason, e.changes) for e in events] == [
        (str(r.case_id), "培训学时已满", {"completed": {"before": None, "after": "training"}})
        for r in rows
    ]


def test_batch_training_with_an_exempt_case_writes_nothing_and_names_it(coord):
    plan = PlanFactory()
    candidate = register_candidate(coord)
    hold(coord, candidate, "SAMR-WELD")
    exempt = eligible_case(coord, plan, candidate=candidate)
    other = eligible_case(coord, plan)
    with pytest.raises(ValidationError) as info:
        cases_training_complete(actor=coord, cases=[other, exempt])
    assert info.value.message_dict == {
        "component": [f"案件 #{exempt.pk}：考生免于「安全培训」（互认序号 7），无须登记"]
    }
    assert not ComponentScore.objects.exists()
    assert not AuditEvent.objects.filter(action="case.training_complete").exists()


def test_batch_training_of_a_case_in_another_state_is_a_conflict(coord):
    plan = PlanFactory()
    case = eligible_case(coord, plan)
    withdrawn = case_withdraw(actor=coord, case=eligible_case(coord, plan))
    with pytest.raises(StateConflict) as info:
        cases_training_complete(actor=coord, cases=[case, withdrawn])
    assert info.value.message == (
        f"案件 #{withdrawn.pk} 当前状态为「已撤回」，"
        "不能登记培训完成（须为资格审核通过、已安排考试、已参考）"
    )
    assert not ComponentScore.objects.exists()


def test_batch_training_is_for_coordinators(coord, plan):
    case = eligible_case(coord, plan)
    with pytest.raises(PermissionDenied):
        cases_training_complete(actor=UserFactory(roles=["grader"]), cases=[case])
