"""The exam pages: each renders for its role and refuses the others (403), graders see
only their assigned sessions, and the services' errors are shown on the forms or as
messages. The rules themselves are tested with the services."""

from datetime import date, datetime, time, timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from cases.models import CaseStatus, PlanStatus
from exams import review, sessions
from exams.attendance import check_in
from exams.models import (
    Booking,
    BookingStatus,
    ExamSession,
    Mark,
    Misconduct,
    QualityWarning,
    SessionStatus,
    WarningStatus,
)
from exams.scheduling import booking_create
from exams.scoring import mark_enter, marks_enter

from .factories import (
    PlanFactory,
    UserFactory,
    coordinator,
    desk_time,
    eligible_case,
    exam_session,
    marking_session,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def grader():
    return UserFactory(username="grader1", roles=["grader"])


@pytest.fixture
def reviewer():
    return UserFactory(username="reviewer1", roles=["reviewer"])


@pytest.fixture
def plan():
    return PlanFactory(name="2026年焊工联合评价 第1期")


@pytest.fixture
def session(coord, plan):
    return exam_session(coord, plan, capacity=5, code="S1")


@pytest.fixture
def desk_session(coord, plan):
    """A session dated today: the check-in desk page stamps the current time, and the
    desk admits candidates on the session's date only."""
    return exam_session(coord, plan, capacity=5, code="S1", day=timezone.localdate())


def login(client, user):
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def frozen_with(coord, session, n=2):
    """`session` with `n` booked eligible cases, roster frozen."""
    bookings = [
        booking_create(
            actor=coord,
            session=session,
            case=eligible_case(coord, session.plan, name=f"王{i}"),
        )
        for i in range(n)
    ]
    sessions.session_freeze_roster(actor=coord, session=session)
    return bookings


# Access ------------------------------------------------------------------------------


def coordinator_urls(plan, session):
    return [
        reverse("exams:plan-list"),
        reverse("cases:plan-create"),
        reverse("exams:plan-detail", args=[plan.pk]),
        reverse("exams:venue-list"),
        reverse("exams:session-list"),
        reverse("exams:session-create"),
        reverse("exams:session-detail", args=[session.pk]),
        reverse("exams:check-in", args=[session.pk]),
    ]


def test_coordinator_pages_render(client, coord, plan, session):
    login(client, coord)
    for url in coordinator_urls(plan, session):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("role", ["grader", "reviewer", "issuer_officer"])
def test_coordinator_pages_refuse_other_roles(client, plan, session, role):
    login(client, UserFactory(username=f"u-{role}", roles=[role]))
    for url in coordinator_urls(plan, session):
        assert client.get(url).status_code == 403, url


def test_coordinator_pages_need_login(client, plan, session):
    response = client.get(reverse("exams:plan-list"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_coordinator_nav_links_to_plans_and_sessions(client, coord):
    response = login(client, coord).get(reverse("cases:dashboard"))
    assert reverse("exams:plan-list") in response.content.decode()
    assert reverse("exams:session-list") in response.content.decode()


# Plans -------------------------------------------------------------------------------


def test_old_plan_create_address_redirects_permanently_to_the_cases_page(client, coord):
    # Creating a plan (and its form errors) is tested in tests/cases/test_plan_pages.py;
    # the exams address only survives for bookmarks.
    assert reverse("exams:plan-create") == "/exams/plans/new/"
    response = login(client, coord).get("/exams/plans/new/")
    assert response.status_code == 301
    assert response.url == reverse("cases:plan-create")
    assert client.get(response.url).status_code == 200


def test_plan_detail_shows_components_and_pass_rules(client, coord, plan):
    body = login(client, coord).get(reverse("exams:plan-detail", args=[plan.pk])).content
    text = body.decode()
    assert 'data-kind="qualification"' in text
    assert 'data-kind="skill"' in text
    assert "≥ 80" in text
    assert "≥ 60" in text


def test_plan_state_buttons_follow_the_state(client, coord, plan):
    response = login(client, coord).get(reverse("exams:plan-detail", args=[plan.pk]))
    names = [t["name"] for t in response.context["transitions"]]
    assert names == ["close"]


def test_plan_transition_moves_the_plan(client, coord, plan):
    url = reverse("exams:plan-transition", args=[plan.pk, "close"])
    response = login(client, coord).post(url)
    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.status == PlanStatus.CLOSED


def test_plan_transition_from_the_wrong_state_is_a_conflict(client, coord, plan):
    url = reverse("exams:plan-transition", args=[plan.pk, "archive"])
    response = login(client, coord).post(url)
    assert response.status_code == 409
    assert messages_of(response) == ["评价计划当前状态为「报名中」，不能变为「已归档」"]


def test_plan_allocate_runs_as_a_job_whose_page_shows_the_summary(
    client, coord, plan, session, django_capture_on_commit_callbacks
):
    cases = [eligible_case(coord, plan, name=f"李{i}") for i in range(6)]
    with django_capture_on_commit_callbacks(execute=True):
        response = login(client, coord).post(reverse("exams:plan-allocate", args=[plan.pk]))
    response = client.get(response["Location"])
    assert response.status_code == 200
    job = response.context["job"]
    assert job.status == "succeeded"
    assert [row["case"] for row in job.result["allocated"]] == [c.pk for c in cases[:5]]
    assert job.result["unallocated"] == [
        {"case": cases[5].pk, "reason": "包含其应考科目的场次均已满"}
    ]
    body = response.content.decode()
    assert "自动编排完成：安排 5 人，未安排 1 人" in body
    assert "包含其应考科目的场次均已满" in body
    assert reverse("exams:plan-detail", args=[plan.pk]) in body


def test_plan_allocate_without_an_open_session_stays_on_the_plan_page(client, coord, plan):
    eligible_case(coord, plan)
    response = login(client, coord).post(reverse("exams:plan-allocate", args=[plan.pk]))
    assert response.status_code == 400
    assert messages_of(response) == ["本评价计划没有开放编排的场次"]
    from jobs.models import Job

    assert Job.objects.count() == 0


# Venues and sessions ---------------------------------------------------------------------


def test_venue_and_room_are_created(client, coord):
    login(client, coord)
    response = client.post(reverse("exams:venue-list"), {"name": "晋中考点", "address": "榆次"})
    assert response.status_code == 302
    from exams.models import Venue

    venue = Venue.objects.get(name="晋中考点")
    response = client.post(
        reverse("exams:room-create", args=[venue.pk]), {"name": "101", "capacity": "40"}
    )
    assert response.status_code == 302
    assert venue.rooms.get().capacity == 40


def test_duplicate_venue_shows_the_error(client, coord, session):
    venue = session.room.venue
    response = login(client, coord).post(reverse("exams:venue-list"), {"name": venue.name})
    assert response.status_code == 400
    assert response.context["venue_form"].errors["name"] == ["具有 考点名称 的 考点 已存在。"]


def session_post(plan, room, **overrides):
    data = {
        "plan": plan.pk,
        "room": room.pk,
        "date": "2026-09-16",
        "start_time": "09:00",
        "end_time": "11:00",
        "capacity": str(room.capacity),
        "components": ["theory", "practical"],
        "code": "",
    }
    data.update(overrides)
    return data


def test_session_create_makes_a_planned_session(client, coord, plan, session):
    response = login(client, coord).post(
        reverse("exams:session-create"), session_post(plan, session.room)
    )
    created = ExamSession.objects.get(date=date(2026, 9, 16))
    assert response.status_code == 302
    assert response.url == reverse("exams:session-detail", args=[created.pk])
    assert created.status == SessionStatus.PLANNED


def test_session_create_shows_service_errors_per_field(client, coord, plan, session):
    response = login(client, coord).post(
        reverse("exams:session-create"),
        session_post(plan, session.room, capacity="99", date="2026-09-15"),
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["capacity"] == [f"容量 99 超过考场「{session.room}」的座位数 5"]
    assert errors["room"] == [f"考场「{session.room}」在该时段已有场次"]


def test_session_detail_shows_the_masked_roster(client, coord, plan, session):
    case = eligible_case(coord, plan, name="欧阳娜娜")
    booking = booking_create(actor=coord, session=session, case=case)
    text = login(client, coord).get(reverse("exams:session-detail", args=[session.pk]))
    text = text.content.decode()
    assert booking.ticket_number in text
    assert "欧***" in text
    assert case.candidate.masked_id_number in text
    assert case.candidate.id_number not in text
    assert "欧阳娜娜" not in text


def test_session_book_seats_a_case(client, coord, plan, session):
    case = eligible_case(coord, plan)
    response = login(client, coord).post(
        reverse("exams:session-book", args=[session.pk]), {"case": case.pk}
    )
    assert response.status_code == 302
    booking = Booking.objects.get(case=case)
    assert messages_of(response) == [f"已安排座位 1，准考证号 {booking.ticket_number}"]


def test_session_book_twice_shows_the_error_on_the_form(client, coord, plan, session):
    case = eligible_case(coord, plan)
    booking = booking_create(actor=coord, session=session, case=case)
    response = login(client, coord).post(
        reverse("exams:session-book", args=[session.pk]), {"case": case.pk}
    )
    assert response.status_code == 400
    assert response.context["booking_form"].errors["case"] == [
        f"案件 #{case.pk} 已安排在场次 S1 座位 1（准考证号 {booking.ticket_number}），不能重复安排"
    ]


def test_session_transition_conflict_is_shown(client, coord, session):
    response = login(client, coord).post(
        reverse("exams:session-transition", args=[session.pk, "start"])
    )
    assert response.status_code == 409
    assert messages_of(response) == ["场次当前状态为「开放编排」，不能变为「考试进行中」"]


def test_session_state_buttons_follow_the_state(client, coord, session):
    response = login(client, coord).get(reverse("exams:session-detail", args=[session.pk]))
    assert [t["name"] for t in response.context["transitions"]] == ["freeze_roster"]


def test_booking_cancel_needs_a_reason(client, coord, plan, session):
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    response = login(client, coord).post(
        reverse("exams:booking-cancel", args=[booking.pk]), {"reason": ""}
    )
    assert response.status_code == 400
    booking.refresh_from_db()
    assert booking.status == BookingStatus.BOOKED


def test_staff_assignment_shows_the_service_error(client, coord, session):
    not_grader = UserFactory(username="plain", roles=["coordinator"])
    response = login(client, coord).post(
        reverse("exams:session-staff", args=[session.pk]),
        {"user": not_grader.pk, "role": "grader", "component": "theory"},
    )
    assert response.status_code == 400
    assert response.context["staff_form"].errors["user"] == [
        "用户 plain 不是考评员，不能担任考评员"
    ]


# Tickets -------------------------------------------------------------------------------


def test_session_tickets_without_bookings_is_a_message(client, coord, session):
    response = login(client, coord).get(reverse("exams:session-tickets", args=[session.pk]))
    assert response.status_code == 400
    assert messages_of(response) == ["场次 S1 还没有安排考生，无法生成准考证"]


def test_ticket_pdfs_download(client, coord, plan, session):
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    login(client, coord)
    one = client.get(reverse("exams:booking-ticket", args=[booking.pk]))
    assert one.status_code == 200
    assert one["Content-Type"] == "application/pdf"
    assert one.content.startswith(b"%PDF")
    batch = client.get(reverse("exams:session-tickets", args=[session.pk]))
    assert batch.status_code == 200
    assert batch.content.startswith(b"%PDF")


def test_ticket_pdfs_are_for_coordinators(client, grader, plan, session, coord):
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    login(client, grader)
    assert client.get(reverse("exams:booking-ticket", args=[booking.pk])).status_code == 403
    assert client.get(reverse("exams:session-tickets", args=[session.pk])).status_code == 403


# Check-in desk and misconduct ---------------------------------------------------------------


def test_check_in_desk_checks_in_by_ticket_and_clears_the_field(client, coord, desk_session):
    booking = frozen_with(coord, desk_session, 1)[0]
    response = login(client, coord).post(
        reverse("exams:check-in", args=[desk_session.pk]), {"code": booking.ticket_number.lower()}
    )
    assert response.status_code == 200
    assert response.context["result"].pk == booking.pk
    assert response.context["form"]["code"].value() is None
    text = response.content.decode()
    assert "座位 1" in text
    assert "autofocus" in text
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CHECKED_IN
    assert booking.case.status == CaseStatus.EXAMINED


def test_check_in_desk_checks_in_by_id_number(client, coord, desk_session):
    booking = frozen_with(coord, desk_session, 1)[0]
    response = login(client, coord).post(
        reverse("exams:check-in", args=[desk_session.pk]),
        {"code": booking.case.candidate.id_number},
    )
    assert response.status_code == 200
    assert response.context["result"].pk == booking.pk


def test_check_in_desk_shows_an_unknown_code_big(client, coord, desk_session):
    frozen_with(coord, desk_session, 1)
    response = login(client, coord).post(
        reverse("exams:check-in", args=[desk_session.pk]), {"code": "NOPE"}
    )
    assert response.status_code == 400
    assert response.context["error"] == "未找到准考证号或身份证号码为 NOPE 的考生"
    assert "✗" in response.content.decode()


def test_check_in_twice_is_a_conflict(client, coord, desk_session):
    booking = frozen_with(coord, desk_session, 1)[0]
    check_in(actor=coord, session=desk_session, ticket_or_id=booking.ticket_number)
    response = login(client, coord).post(
        reverse("exams:check-in", args=[desk_session.pk]), {"code": booking.ticket_number}
    )
    assert response.status_code == 409
    assert "不能重复签到" in response.context["error"]


def test_misconduct_form_shows_service_errors(client, coord, session):
    booking = frozen_with(coord, session, 1)[0]
    sessions.session_start(actor=coord, session=session)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    response = login(client, coord).post(
        reverse("exams:misconduct", args=[booking.pk]), {"description": ""}
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "description": ["请填写违纪情况"],
        "evidence": ["请上传违纪证据文件"],
    }


def test_misconduct_is_recorded_with_evidence(client, coord, session, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    booking = frozen_with(coord, session, 1)[0]
    sessions.session_start(actor=coord, session=session)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    evidence = SimpleUploadedFile("photo.jpg", b"\xff\xd8evidence", content_type="image/jpeg")
    response = login(client, coord).post(
        reverse("exams:misconduct", args=[booking.pk]),
        {"description": "夹带纸条", "evidence": evidence},
    )
    assert response.status_code == 302
    booking.refresh_from_db()
    assert booking.status == BookingStatus.VOID
    assert Misconduct.objects.get(booking=booking).description == "夹带纸条"


def test_misconduct_before_the_exam_is_a_conflict(client, coord, session):
    booking = frozen_with(coord, session, 1)[0]
    response = login(client, coord).post(
        reverse("exams:misconduct", args=[booking.pk]),
        {"description": "x", "evidence": SimpleUploadedFile("a.txt", b"x")},
    )
    assert response.status_code == 409
    assert messages_of(response) == [
        "场次当前状态为「名单已锁定」，不能记录违纪（须为「考试进行中」或「评分中」或「质量审核中」）"
    ]


# Grading -----------------------------------------------------------------------------------

QUIET = [(72, 65), (90, 95), (55, 40), (77, 88)]


def marking(coord, plan, graders, n=3, **kwargs):
    """A session of `plan` in marking with `n` checked-in candidates; `graders` is a
    list of (user, role, component) assignments."""
    cases = [eligible_case(coord, plan, name=f"赵{i}") for i in range(n)]
    session, bookings = marking_session(coord, plan, cases, staff=graders, **kwargs)
    # The desk stamps the real time; put everyone in before the start (no late warning).
    start = timezone.make_aware(datetime.combine(session.date, session.start_time))
    Booking.objects.filter(session=session).update(checked_in_at=start - timedelta(minutes=5))
    return session, [bookings[c.pk] for c in cases]


def test_my_sessions_lists_only_assigned_sessions(client, coord, plan, grader):
    other = UserFactory(username="grader2", roles=["grader"])
    marking(coord, plan, [(grader, "grader", "theory")], n=1, code="MINE")
    marking(
        coord,
        plan,
        [(other, "grader", "theory")],
        n=1,
        code="OTHER",
        start=time(13, 0),
        end=time(15, 0),
    )
    response = login(client, grader).get(reverse("exams:grading-sessions"))
    assert response.status_code == 200
    assert [row["session"].code for row in response.context["rows"]] == ["MINE"]
    assert [c.code for c in response.context["rows"][0]["components"]] == ["theory"]
    assert "OTHER" not in response.content.decode()


def test_grading_pages_refuse_other_roles(client, coord, plan, grader):
    session, _ = marking(coord, plan, [(grader, "grader", "theory")], n=1)
    login(client, coord)
    assert client.get(reverse("exams:grading-sessions")).status_code == 403
    assert client.get(reverse("exams:grading-grid", args=[session.pk, "theory"])).status_code == 403


def test_score_grid_refuses_a_grader_not_assigned(client, coord, plan, grader):
    session, _ = marking(coord, plan, [(grader, "grader", "theory")], n=1)
    login(client, grader)
    assert (
        client.get(reverse("exams:grading-grid", args=[session.pk, "practical"])).status_code == 403
    )
    stranger = UserFactory(username="grader9", roles=["grader"])
    login(client, stranger)
    assert client.get(reverse("exams:grading-grid", args=[session.pk, "theory"])).status_code == 403
    assert client.get(reverse("exams:grading-import", args=[session.pk])).status_code == 403


def test_score_grid_saves_the_batch(client, coord, plan, grader):
    session, bookings = marking(coord, plan, [(grader, "grader", "theory")])
    url = reverse("exams:grading-grid", args=[session.pk, "theory"])
    data = {f"score_{b.pk}": str(s) for b, (s, _) in zip(bookings, QUIET, strict=False)}
    response = login(client, grader).post(url, data)
    assert response.status_code == 302
    assert messages_of(response) == ["已保存：新录入 3，修改 0，未变 0"]
    scores = dict(Mark.objects.filter(grader=grader).values_list("booking_id", "score"))
    assert scores == {bookings[0].pk: 72, bookings[1].pk: 90, bookings[2].pk: 55}
    page = client.get(url)
    assert [r.own_marks[0].score for r in page.context["rows"]] == [72, 90, 55]


def test_score_grid_shows_errors_per_row_and_saves_nothing(client, coord, plan, grader):
    session, bookings = marking(coord, plan, [(grader, "grader", "theory")])
    url = reverse("exams:grading-grid", args=[session.pk, "theory"])
    data = {
        f"score_{bookings[0].pk}": "101",
        f"score_{bookings[1].pk}": "abc",
        f"score_{bookings[2].pk}": "70",
    }
    response = login(client, grader).post(url, data)
    assert response.status_code == 400
    rows = response.context["rows"]
    assert rows[0].errors == ["分数不能超过满分 100 分"]
    assert rows[1].errors == ["分数须为数字"]
    assert rows[2].errors == []
    assert rows[1].typed == "abc"
    assert response.context["batch_error"] == "有 2 处错误，本批成绩均未保存"
    assert Mark.objects.count() == 0


def test_score_grid_shows_only_the_graders_own_marks(client, coord, plan, grader):
    second = UserFactory(username="grader2", roles=["grader"])
    pc = plan.components.get(component__code="practical")
    pc.marking_mode = "double"
    pc.save()
    session, bookings = marking(
        coord, plan, [(grader, "grader", "practical"), (second, "grader", "practical")], n=1
    )
    mark_enter(actor=second, booking=bookings[0], component="practical", score=91)
    url = reverse("exams:grading-grid", args=[session.pk, "practical"])
    response = login(client, grader).get(url)
    assert response.context["rows"][0].own_marks == []
    assert 'data-testid="own-mark"' not in response.content.decode()


def test_score_import_reports_rows_and_columns(client, coord, plan, grader):
    session, bookings = marking(coord, plan, [(grader, "grader", "theory")], n=1)
    content = f"准考证号,科目代码,分数\n{bookings[0].ticket_number},theory,80\nNOPE,theory,70\n"
    upload = SimpleUploadedFile("scores.csv", content.encode("utf-8"), content_type="text/csv")
    response = login(client, grader).post(
        reverse("exams:grading-import", args=[session.pk]), {"file": upload}
    )
    assert response.status_code == 400
    assert response.context["report"] == [
        {"row": 3, "column": "准考证号", "message": "准考证号 NOPE 不存在"}
    ]
    assert Mark.objects.count() == 0


def test_score_import_enters_marks(client, coord, plan, grader):
    session, bookings = marking(coord, plan, [(grader, "grader", "theory")], n=1)
    content = f"准考证号,科目代码,分数\n{bookings[0].ticket_number},theory,80\n"
    upload = SimpleUploadedFile("scores.csv", content.encode("utf-8"), content_type="text/csv")
    response = login(client, grader).post(
        reverse("exams:grading-import", args=[session.pk]), {"file": upload}
    )
    assert response.status_code == 302
    assert messages_of(response) == ["已导入 1 行：新录入 1，修改 0，未变 0"]


# Results and review --------------------------------------------------------------------------


def marked_session(coord, plan, grader, scores=QUIET):
    session, bookings = marking(
        coord,
        plan,
        [(grader, "grader", "theory"), (grader, "grader", "practical")],
        n=len(scores),
    )
    for index, code in enumerate(("theory", "practical")):
        marks_enter(
            actor=grader,
            session=session,
            component=code,
            entries=[
                {"ticket_number": b.ticket_number, "score": s[index]}
                for b, s in zip(bookings, scores, strict=False)
            ],
        )
    return session, bookings


def test_results_page_shows_each_certificate_with_reasons(client, coord, plan, grader):
    session, _ = marked_session(coord, plan, grader, [(75, 85)])
    login(client, coord)
    response = client.post(reverse("exams:session-finalise", args=[session.pk]))
    assert response.status_code == 200
    row = response.context["rows"][0]
    earned = {c.kind: c.earned for c in row["certificates"]}
    assert earned == {"qualification": False, "skill": True}
    text = response.content.decode()
    assert "不合格" in text
    reasons = next(c.reasons for c in row["certificates"] if c.kind == "qualification")
    for reason in reasons:
        assert reason in text


def test_results_page_is_for_coordinators(client, coord, plan, grader):
    session, _ = marked_session(coord, plan, grader, [(75, 85)])
    login(client, grader)
    assert client.get(reverse("exams:session-results", args=[session.pk])).status_code == 403


def test_submit_for_review_with_missing_marks_shows_the_error(client, coord, plan, grader):
    session, _ = marking(coord, plan, [(grader, "grader", "theory")], n=1)
    response = login(client, coord).post(
        reverse("exams:session-submit-for-review", args=[session.pk])
    )
    assert response.status_code == 400
    assert messages_of(response)[0].startswith("以下考生尚有科目未确定最终成绩，不能提交审核：")


def in_review(coord, plan, grader, capture, scores=QUIET):
    session, bookings = marked_session(coord, plan, grader, scores)
    with capture(execute=True):
        review.session_submit_for_review(actor=coord, session=session)
    return ExamSession.objects.get(pk=session.pk), bookings


def test_review_queue_lists_sessions_in_review_not_graded_by_the_reviewer(
    client, coord, plan, grader, reviewer, django_capture_on_commit_callbacks
):
    session, _ = in_review(coord, plan, grader, django_capture_on_commit_callbacks)
    response = login(client, reviewer).get(reverse("exams:quality-queue"))
    assert [s.code for s in response.context["queue"]] == [session.code]
    login(client, grader)
    assert client.get(reverse("exams:quality-queue")).status_code == 403


def test_review_page_draws_the_distribution_with_pass_marks(
    client, coord, plan, grader, reviewer, django_capture_on_commit_callbacks
):
    session, _ = in_review(coord, plan, grader, django_capture_on_commit_callbacks)
    response = login(client, reviewer).get(reverse("exams:quality-review", args=[session.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert text.count("<svg") == 2
    assert 'class="pass-mark"' in text
    assert 'data-mark="80"' in text
    assert 'data-mark="60"' in text
    assert response.context["supervise"] is True


def test_review_page_hides_decisions_from_a_reviewer_who_graded(
    client, coord, plan, django_capture_on_commit_callbacks
):
    admin = UserFactory(username="boss", roles=["admin", "grader", "reviewer"])
    session, _ = in_review(coord, plan, admin, django_capture_on_commit_callbacks)
    response = login(client, admin).get(reverse("exams:quality-review", args=[session.pk]))
    assert response.status_code == 200
    assert response.context["supervise"] is False
    assert reverse("exams:quality-approve", args=[session.pk]) not in response.content.decode()


def test_review_page_is_hidden_from_a_reviewer_who_graded(
    client, coord, plan, django_capture_on_commit_callbacks
):
    both = UserFactory(username="both", roles=["grader", "reviewer"])
    session, _ = in_review(coord, plan, both, django_capture_on_commit_callbacks)
    response = login(client, both).get(reverse("exams:quality-review", args=[session.pk]))
    assert response.status_code == 404


def test_review_pages_refuse_graders(
    client, coord, plan, grader, django_capture_on_commit_callbacks
):
    session, _ = in_review(coord, plan, grader, django_capture_on_commit_callbacks)
    login(client, grader)
    assert client.get(reverse("exams:quality-review", args=[session.pk])).status_code == 403
    assert client.post(reverse("exams:quality-approve", args=[session.pk])).status_code == 403


def test_approve_publishes_the_results(
    client, coord, plan, grader, reviewer, django_capture_on_commit_callbacks
):
    session, bookings = in_review(coord, plan, grader, django_capture_on_commit_callbacks)
    assert session.warnings.count() == 0
    response = login(client, reviewer).post(
        reverse("exams:quality-approve", args=[session.pk]), {"notes": "无异常"}
    )
    assert response.status_code == 302
    assert messages_of(response) == [f"场次 {session.code} 已审核通过，成绩已公布"]
    assert ExamSession.objects.get(pk=session.pk).status == SessionStatus.APPROVED
    statuses = [Booking.objects.get(pk=b.pk).case.status for b in bookings]
    assert statuses == [CaseStatus.PASSED, CaseStatus.PASSED, CaseStatus.FAILED, CaseStatus.PASSED]


def test_return_needs_notes(
    client, coord, plan, grader, reviewer, django_capture_on_commit_callbacks
):
    session, _ = in_review(coord, plan, grader, django_capture_on_commit_callbacks)
    response = login(client, reviewer).post(
        reverse("exams:quality-return", args=[session.pk]), {"notes": ""}
    )
    assert response.status_code == 400
    assert response.context["return_form"].errors["notes"] == ["请填写退回意见"]


def test_warning_lifecycle_through_the_page(
    client, coord, plan, grader, reviewer, django_capture_on_commit_callbacks
):
    scores = [*QUIET, *[(85, 90)] * 4]
    session, _ = in_review(coord, plan, grader, django_capture_on_commit_callbacks, scores)
    warning = QualityWarning.objects.get(session=session)
    assert warning.status == WarningStatus.SENT
    login(client, reviewer)
    url = reverse("exams:quality-review", args=[session.pk])
    assert client.get(url).context["warnings"][0].can_review is True
    # Confirm without a note: the service's error on the warning's form.
    response = client.post(reverse("exams:quality-warning", args=[warning.pk, "confirm"]))
    assert response.status_code == 400
    assert response.context["warnings"][0].review_form.errors["note"] == ["请填写审核意见"]
    # Approval while the warning is open is a conflict, shown as a message.
    response = client.post(reverse("exams:quality-approve", args=[session.pk]))
    assert response.status_code == 409
    assert messages_of(response) == [f"场次 {session.code} 尚有 1 条预警未关闭，不能审核通过"]
    client.post(reverse("exams:quality-warning", args=[warning.pk, "confirm"]), {"note": "核查"})
    login(client, coord)
    page = client.get(url)
    assert page.context["warnings"][0].can_answer is True
    client.post(reverse("exams:quality-warning", args=[warning.pk, "answer"]), {"answer": "已核实"})
    login(client, reviewer)
    response = client.post(reverse("exams:quality-warning", args=[warning.pk, "close"]))
    assert response.status_code == 302
    assert QualityWarning.objects.get(pk=warning.pk).status == WarningStatus.CLOSED


def test_pages_speak_english_when_asked(client, coord, plan, session, settings):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    response = login(client, coord).get(reverse("exams:session-detail", args=[session.pk]))
    text = response.content.decode()
    assert "Session S1" in text
    assert "Freeze roster" in text
    assert "Open for booking" in text
