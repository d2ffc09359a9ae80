"""Venues, rooms, sessions, staff and the session's exam-day transitions."""

from datetime import date, time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases.models import Case, CaseStatus
from exams import sessions
from exams.attendance import check_in
from exams.models import Booking, BookingStatus, ExamSession, SessionStaff, SessionStatus
from exams.scheduling import booking_create

from .factories import (
    UserFactory,
    desk_time,
    eligible_case,
    exam_room,
    exam_session,
)
from .test_tickets import pages

pytestmark = pytest.mark.django_db


@pytest.fixture
def grader():
    return UserFactory(username="grader1", roles=["grader"])


def create(coord, plan, room, **overrides):
    kwargs = {
        "actor": coord,
        "plan": plan,
        "room": room,
        "date": date(2026, 9, 15),
        "start_time": time(9, 0),
        "end_time": time(11, 0),
        "capacity": room.capacity,
        "components": ["theory", "practical"],
        **overrides,
    }
    return sessions.session_create(**kwargs)


# Venues and rooms ----------------------------------------------------------------------


def test_venue_and_room_are_created_and_audited(coord):
    venue = sessions.venue_create(actor=coord, name=" 太原考点 ", address="太原市迎泽区")
    room = sessions.room_create(actor=coord, venue=venue, name="101", capacity=40)
    assert (venue.name, room.venue, room.capacity) == ("太原考点", venue, 40)
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "venue.create",
        "room.create",
    ]


def test_room_needs_positive_capacity_and_unique_name(coord):
    venue = sessions.venue_create(actor=coord, name="太原考点")
    with pytest.raises(ValidationError) as info:
        sessions.room_create(actor=coord, venue=venue, name="101", capacity=0)
    assert info.value.message_dict == {"capacity": ["座位数须大于 0"]}
    sessions.room_create(actor=coord, venue=venue, name="101", capacity=10)
    with pytest.raises(ValidationError) as info:
        sessions.room_create(actor=coord, venue=venue, name="101", capacity=10)
    assert list(info.value.message_dict) == ["__all__"]


def test_venues_are_for_coordinators():
    with pytest.raises(PermissionDenied):
        sessions.venue_create(actor=UserFactory(roles=["grader"]), name="太原考点")


# Creating sessions ---------------------------------------------------------------------


def test_session_create_generates_a_readable_code_and_audits(coord, plan):
    room = exam_room(coord, capacity=30)
    first = create(coord, plan, room, capacity=20)
    second = create(coord, plan, exam_room(coord))
    assert (first.code, second.code) == ("26091501", "26091502")
    assert first.status == SessionStatus.PLANNED
    assert first.capacity == 20
    assert sorted(first.components.values_list("code", flat=True)) == ["practical", "theory"]
    event = AuditEvent.objects.get(action="session.create", object_id=str(first.pk))
    assert event.changes["components"] == {"before": None, "after": ["theory", "practical"]}
    assert event.changes["code"] == {"before": None, "after": "26091501"}


def test_session_create_takes_a_given_code_upper_cased(coord, plan):
    session = create(coord, plan, exam_room(coord), code="ty-a1")
    assert session.code == "TY-A1"


def test_session_capacity_may_not_exceed_the_room(coord, plan):
    room = exam_room(coord, capacity=30)
    with pytest.raises(ValidationError) as info:
        create(coord, plan, room, capacity=31)
    assert info.value.message_dict == {"capacity": [f"容量 31 超过考场「{room}」的座位数 30"]}
    assert ExamSession.objects.count() == 0


def test_session_components_must_be_exam_components_of_the_plan(coord, plan):
    with pytest.raises(ValidationError) as info:
        create(coord, plan, exam_room(coord), components=["training", "hot_work", "theory"])
    assert info.value.message_dict == {
        "components": [
            "科目「安全培训」为完成记录，不在考试场次中考核",
            "科目「hot_work」不是本评价计划的科目",
        ]
    }


def test_session_lists_every_problem_at_once(coord, plan):
    room = exam_room(coord)
    create(coord, plan, room, code="A1")
    with pytest.raises(ValidationError) as info:
        create(
            coord,
            plan,
            room,
            code="A1",
            start_time=time(10, 0),
            end_time=time(12, 0),
            capacity=0,
            components=[],
        )
    assert info.value.message_dict == {
        "capacity": ["容量须大于 0"],
        "components": ["请至少选择一个考试科目"],
        "code": ["场次编号 A1 已存在"],
        "room": [f"考场「{room}」在该时段已有场次"],
    }


def test_session_must_end_after_it_starts(coord, plan):
    with pytest.raises(ValidationError) as info:
        create(coord, plan, exam_room(coord), start_time=time(11, 0), end_time=time(9, 0))
    assert info.value.message_dict == {"end_time": ["结束时间须晚于开始时间"]}


def test_the_same_room_later_that_day_is_fine(coord, plan):
    room = exam_room(coord)
    create(coord, plan, room)
    later = create(coord, plan, room, start_time=time(11, 0), end_time=time(13, 0))
    assert later.code == "26091502"


def test_sessions_are_created_by_coordinators_only(coord, plan, grader):
    with pytest.raises(PermissionDenied):
        create(grader, plan, exam_room(coord))


# Transitions ---------------------------------------------------------------------------


def test_open_freeze_start_close_walk_the_states_and_audit(coord, plan):
    session = exam_session(coord, plan, open_it=False)
    session = sessions.session_open(actor=coord, session=session)
    assert session.status == SessionStatus.OPEN
    session = sessions.session_freeze_roster(actor=coord, session=session)
    assert session.status == SessionStatus.ROSTER_FROZEN
    session = sessions.session_start(actor=coord, session=session)
    assert session.status == SessionStatus.IN_PROGRESS
    session = sessions.session_close(actor=coord, session=session)
    assert session.status == SessionStatus.MARKING
    events = AuditEvent.objects.filter(object_type="exams.examsession", object_id=str(session.pk))
    assert [(e.action, e.from_state, e.to_state) for e in events] == [
        ("session.create", "", "planned"),
        ("session.open", "planned", "open"),
        ("session.freeze_roster", "open", "roster_frozen"),
        ("session.start", "roster_frozen", "in_progress"),
        ("session.close", "in_progress", "marking"),
    ]


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (sessions.session_open, "场次当前状态为「开放编排」，不能变为「开放编排」"),
        (sessions.session_start, "场次当前状态为「开放编排」，不能变为「考试进行中」"),
        (sessions.session_close, "场次当前状态为「开放编排」，不能变为「评分中」"),
    ],
)
def test_transition_from_the_wrong_state_is_a_conflict(coord, plan, service, message):
    session = exam_session(coord, plan)
    with pytest.raises(StateConflict) as info:
        service(actor=coord, session=session)
    assert info.value.message == message
    assert ExamSession.objects.get(pk=session.pk).status == SessionStatus.OPEN


def test_freeze_of_a_planned_session_is_a_conflict(coord, plan):
    session = exam_session(coord, plan, open_it=False)
    with pytest.raises(StateConflict) as info:
        sessions.session_freeze_roster(actor=coord, session=session)
    assert info.value.message == "场次当前状态为「已计划」，不能变为「名单已锁定」"


@pytest.mark.parametrize(
    "service",
    [
        sessions.session_open,
        sessions.session_freeze_roster,
        sessions.session_start,
        sessions.session_close,
    ],
)
def test_transitions_are_for_coordinators(coord, plan, grader, service):
    session = exam_session(coord, plan, open_it=False)
    with pytest.raises(PermissionDenied):
        service(actor=grader, session=session)


def test_close_marks_every_booked_candidate_absent_in_one_go(coord, plan):
    session = exam_session(coord, plan)
    present, missing = (
        booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
        for _ in range(2)
    )
    sessions.session_freeze_roster(actor=coord, session=session)
    sessions.session_start(actor=coord, session=session)
    check_in(
        actor=coord, session=session, ticket_or_id=present.ticket_number, at=desk_time(session)
    )
    sessions.session_close(actor=coord, session=session)
    present.refresh_from_db()
    missing.refresh_from_db()
    assert (present.status, missing.status) == (BookingStatus.CHECKED_IN, BookingStatus.ABSENT)
    assert (present.case.status, missing.case.status) == (CaseStatus.EXAMINED, CaseStatus.ABSENT)
    missing.case.refresh_from_db()
    assert (missing.case.status, missing.case.attempts) == (CaseStatus.ABSENT, 1)
    event = AuditEvent.objects.get(action="session.close")
    assert event.changes == {
        "absent": {"before": None, "after": [missing.ticket_number]},
        "withdrawn": {"before": None, "after": []},
    }


def test_close_releases_the_seat_of_a_case_withdrawn_while_scheduled(coord, plan):
    from cases import services as case_services

    session = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    case_services.case_withdraw(actor=coord, case=booking.case, reason="考生因病放弃")
    sessions.session_freeze_roster(actor=coord, session=session)
    sessions.session_start(actor=coord, session=session)
    session = sessions.session_close(actor=coord, session=session)
    booking.refresh_from_db()
    assert session.status == SessionStatus.MARKING
    assert booking.status == BookingStatus.CANCELLED
    assert Case.objects.get(pk=booking.case_id).status == CaseStatus.WITHDRAWN


def test_close_rolls_back_every_absence_when_it_fails(coord, plan, monkeypatch):
    session = exam_session(coord, plan)
    bookings = [
        booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
        for _ in range(2)
    ]
    sessions.session_freeze_roster(actor=coord, session=session)
    sessions.session_start(actor=coord, session=session)
    calls = []
    original = sessions.case_services.case_mark_absent

    def flaky(**kwargs):
        calls.append(kwargs["case"].pk)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return original(**kwargs)

    monkeypatch.setattr(sessions.case_services, "case_mark_absent", flaky)
    with pytest.raises(RuntimeError):
        sessions.session_close(actor=coord, session=session)
    assert set(Booking.objects.values_list("status", flat=True)) == {BookingStatus.BOOKED}
    assert {Case.objects.get(pk=b.case_id).status for b in bookings} == {CaseStatus.SCHEDULED}
    assert ExamSession.objects.get(pk=session.pk).status == SessionStatus.IN_PROGRESS


# Staff ---------------------------------------------------------------------------------


def test_assign_grader_per_component_and_proctor(coord, plan, grader):
    session = exam_session(coord, plan)
    proctor = UserFactory(username="proctor1")
    staff = sessions.session_assign_staff(
        actor=coord, session=session, user=grader, role="grader", component="theory"
    )
    sessions.session_assign_staff(actor=coord, session=session, user=proctor, role="proctor")
    sessions.session_assign_staff(actor=coord, session=session, user=grader, role="chief_grader")
    assert (staff.role, staff.component.code) == ("grader", "theory")
    assert sorted(SessionStaff.objects.values_list("role", flat=True)) == [
        "chief_grader",
        "grader",
        "proctor",
    ]
    event = AuditEvent.objects.filter(action="session.assign_staff").first()
    assert event.changes["staff"]["after"] == {
        "user": grader.pk,
        "username": "grader1",
        "role": "grader",
        "component": "theory",
    }


def test_graders_must_hold_the_grader_role(coord, plan):
    session = exam_session(coord, plan)
    outsider = UserFactory(username="outsider")
    with pytest.raises(ValidationError) as info:
        sessions.session_assign_staff(
            actor=coord, session=session, user=outsider, role="chief_grader", component="theory"
        )
    assert info.value.message_dict == {"user": ["用户 outsider 不是考评员，不能担任主考评员"]}


def test_grader_needs_a_component_of_the_session(coord, plan, grader):
    session = exam_session(coord, plan, components=["theory"])
    with pytest.raises(ValidationError) as info:
        sessions.session_assign_staff(actor=coord, session=session, user=grader, role="grader")
    assert info.value.message_dict == {"component": ["请选择考评员负责的科目"]}
    with pytest.raises(ValidationError) as info:
        sessions.session_assign_staff(
            actor=coord, session=session, user=grader, role="grader", component="practical"
        )
    assert info.value.message_dict == {"component": ["科目「实操考试」不是本场次的考试科目"]}


def test_assigning_twice_is_refused(coord, plan, grader):
    session = exam_session(coord, plan)
    sessions.session_assign_staff(
        actor=coord, session=session, user=grader, role="grader", component="theory"
    )
    with pytest.raises(ValidationError) as info:
        sessions.session_assign_staff(
            actor=coord, session=session, user=grader, role="grader", component="theory"
        )
    assert info.value.message_dict == {"user": ["用户 grader1 已是本场次的考评员"]}
    assert SessionStaff.objects.count() == 1


def test_staff_is_assigned_by_coordinators(coord, plan, grader):
    session = exam_session(coord, plan)
    with pytest.raises(PermissionDenied):
        sessions.session_assign_staff(
            actor=grader, session=session, user=grader, role="grader", component="theory"
        )


# API -----------------------------------------------------------------------------------


def api_for(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_runs_a_small_session_end_to_end(coord, plan, tmp_path):
    # Dated today: the desk (API) stamps the current time and admits on that date only.
    today = timezone.localdate()
    api = api_for(coord)
    venue = api.post("/api/v1/venues/", {"name": "太原考点", "address": "迎泽区"}, format="json")
    assert venue.status_code == 201
    room = api.post("/api/v1/rooms/", {"venue": venue.json()["id"], "name": "101", "capacity": 10})
    assert room.status_code == 201
    created = api.post(
        "/api/v1/sessions/",
        {
            "plan": plan.pk,
            "room": room.json()["id"],
            "date": today.isoformat(),
            "start_time": "09:00",
            "end_time": "11:00",
            "capacity": 5,
            "components": ["theory", "practical"],
        },
        format="json",
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["code"], body["status"], body["booked"], body["components"]) == (
        f"{today:%y%m%d}01",
        "planned",
        0,
        ["theory", "practical"],
    )
    url = f"/api/v1/sessions/{body['id']}/"
    cases = [eligible_case(coord, plan) for _ in range(5)]
    assert api.post(url + "open/").json()["status"] == "open"
    allocated = api.post(url + "allocate/").json()
    assert [a["case"] for a in allocated["allocated"]] == [c.pk for c in cases]
    assert allocated["unallocated"] == []
    assert api.post(url + "freeze_roster/").json()["status"] == "roster_frozen"
    assert api.post(url + "start/").json()["status"] == "in_progress"
    roster = api.get("/api/v1/bookings/", {"session": body["id"]}).json()["results"]
    assert [b["seat_number"] for b in roster] == [1, 2, 3, 4, 5]
    codes = [b["ticket_number"] for b in roster[:3]] + [cases[3].candidate.id_number]
    for code in codes:
        response = api.post(url + "check_in/", {"code": code}, format="json")
        assert response.status_code == 200
        assert response.json()["status"] == "checked_in"
    closed = api.post(url + "close/").json()
    assert (closed["status"], closed["booked"]) == ("marking", 5)
    statuses = [
        b["status"] for b in api.get("/api/v1/bookings/", {"session": body["id"]}).json()["results"]
    ]
    assert statuses == ["checked_in"] * 4 + ["absent"]
    assert [Case.objects.get(pk=c.pk).status for c in cases] == [CaseStatus.EXAMINED] * 4 + [
        CaseStatus.ABSENT
    ]
    pdf = api.get(url + "tickets.pdf/")
    assert (pdf.status_code, pdf["Content-Type"]) == (200, "application/pdf")
    assert pdf.content.startswith(b"%PDF")
    assert pages(pdf.content, tmp_path) == 5


def test_api_wrong_state_is_409_and_wrong_role_403(coord, plan):
    session = exam_session(coord, plan)
    response = api_for(coord).post(f"/api/v1/sessions/{session.pk}/start/")
    assert response.status_code == 409
    assert response.json()["detail"] == "场次当前状态为「开放编排」，不能变为「考试进行中」"
    grader = UserFactory(username="grader1", roles=["grader"])
    sessions.session_assign_staff(
        actor=coord, session=session, user=grader, role="grader", component="theory"
    )
    as_grader = api_for(grader)
    assert as_grader.post(f"/api/v1/sessions/{session.pk}/freeze_roster/").status_code == 403
    assert as_grader.post("/api/v1/venues/", {"name": "x"}).status_code == 403
    assert as_grader.get("/api/v1/bookings/").status_code == 403
    assert as_grader.get(f"/api/v1/sessions/{session.pk}/tickets.pdf/").status_code == 403


def test_api_graders_read_only_their_sessions(coord, plan):
    mine = exam_session(coord, plan, code="MINE")
    other = exam_session(coord, plan, code="OTHER")
    grader = UserFactory(username="grader1", roles=["grader"])
    sessions.session_assign_staff(
        actor=coord, session=mine, user=grader, role="grader", component="theory"
    )
    api = api_for(grader)
    listed = api.get("/api/v1/sessions/").json()["results"]
    assert [s["code"] for s in listed] == ["MINE"]
    assert listed[0]["staff"] == [
        {
            "id": SessionStaff.objects.get().pk,
            "user": grader.pk,
            "username": "grader1",
            "role": "grader",
            "component": "theory",
        }
    ]
    assert api.get(f"/api/v1/sessions/{other.pk}/").status_code == 404
    assert len(api_for(coord).get("/api/v1/sessions/").json()["results"]) == 2
    outsider = api_for(UserFactory(username="nobody"))
    assert outsider.get("/api/v1/sessions/").status_code == 403


def test_api_session_create_reports_field_errors(coord, plan):
    room = exam_room(coord, capacity=3)
    response = api_for(coord).post(
        "/api/v1/sessions/",
        {
            "plan": plan.pk,
            "room": room.pk,
            "date": "2026-09-15",
            "start_time": "09:00",
            "end_time": "11:00",
            "capacity": 4,
            "components": ["training"],
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "capacity": [f"容量 4 超过考场「{room}」的座位数 3"],
        "components": ["科目「安全培训」为完成记录，不在考试场次中考核"],
    }


def test_api_booking_create_cancel_and_misconduct(coord, plan, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = tmp_path
    api = api_for(coord)
    session = exam_session(coord, plan, day=timezone.localdate())  # checked in through the API
    first, second = eligible_case(coord, plan), eligible_case(coord, plan)
    created = api.post("/api/v1/bookings/", {"session": session.pk, "case": first.pk})
    assert created.status_code == 201
    assert (created.json()["seat_number"], created.json()["components"]) == (
        1,
        ["theory", "practical"],
    )
    again = api.post("/api/v1/bookings/", {"session": session.pk, "case": first.pk})
    assert again.status_code == 400
    assert list(again.json()) == ["case"]
    booking_id = created.json()["id"]
    cancelled = api.post(f"/api/v1/bookings/{booking_id}/cancel/", {"reason": "改期"})
    assert cancelled.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/bookings/{booking_id}/cancel/", {"reason": "改期"}).status_code == 409
    booking = booking_create(actor=coord, session=session, case=second)
    sessions.session_freeze_roster(actor=coord, session=session)
    sessions.session_start(actor=coord, session=session)
    url = f"/api/v1/sessions/{session.pk}/check_in/"
    unknown = api.post(url, {"code": "NOPE"}, format="json")
    assert (unknown.status_code, unknown.json()) == (
        400,
        {"code": ["未找到准考证号或身份证号码为 NOPE 的考生"]},
    )
    assert api.post(url, {"code": booking.ticket_number}).status_code == 200
    twice = api.post(url, {"code": booking.ticket_number})
    assert twice.status_code == 409
    evidence = SimpleUploadedFile("photo.jpg", b"\xff\xd8\xff data", content_type="image/jpeg")
    recorded = api.post(
        f"/api/v1/bookings/{booking.pk}/misconduct/",
        {"description": "夹带纸条", "evidence": evidence},
        format="multipart",
    )
    assert recorded.status_code == 201
    assert recorded.json()["description"] == "夹带纸条"
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.VOID
    assert Case.objects.get(pk=second.pk).status == CaseStatus.VOID
    ticket = api.get(f"/api/v1/bookings/{booking.pk}/ticket.pdf/")
    assert (ticket.status_code, ticket["Content-Type"]) == (200, "application/pdf")
