"""Quality review of a session (issue 3 item 7): submit, early warnings through their
loop (sent -> reviewed -> answered -> closed), return to marking, approval publishing
the results, and who may do what."""

from datetime import datetime, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audit.exceptions import DomainError, StateConflict
from audit.models import AuditEvent
from cases.models import Case, CaseStatus
from exams import review
from exams.attendance import misconduct_record
from exams.models import (
    Booking,
    ExamSession,
    Mark,
    MarkSlot,
    QualityWarning,
    SessionStatus,
    WarningRule,
    WarningStatus,
)
from exams.scoring import MarkEntry, mark_enter, marks_enter

from .factories import (
    PlanFactory,
    UserFactory,
    coordinator,
    eligible_case,
    exam_session,
    marking_session,
)

pytestmark = pytest.mark.django_db

# Scores (theory, practical) that trip no early-warning rule: spread out, none within
# two points above a pass mark (60 and 80), no two candidates alike.
QUIET = [(72, 65), (90, 95), (55, 40), (77, 88)]


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def reviewer():
    return UserFactory(username="reviewer", roles=["reviewer"])


@pytest.fixture
def grader():
    return UserFactory(username="grader1", roles=["grader"])


@pytest.fixture
def plan():
    return PlanFactory()


def marked(coord, grader, plan, scores, *, absent=0, staff=(), **session_kwargs):
    """A session of `plan` in marking: one checked-in candidate per (theory, practical)
    in `scores` (None: not marked), marked by `grader` through the score grid, plus
    `absent` candidates who never checked in. Returns (session, bookings in order)."""
    cases = [eligible_case(coord, plan) for _ in range(len(scores) + absent)]
    session, bookings = marking_session(
        coord,
        plan,
        cases,
        staff=[(grader, "grader", "theory"), (grader, "grader", "practical"), *staff],
        absent=cases[len(scores) :],
        **session_kwargs,
    )
    ordered = [bookings[case.pk] for case in cases]
    for index, code in enumerate(("theory", "practical")):
        entries = [
            MarkEntry(b.ticket_number, s[index])
            for b, s in zip(ordered, scores, strict=False)
            if s[index] is not None
        ]
        if entries:
            marks_enter(actor=grader, session=session, component=code, entries=entries)
    return session, ordered


def starts_at(session):
    return timezone.make_aware(datetime.combine(session.date, session.start_time))


def in_review(coord, grader, plan, scores=QUIET, **kwargs):
    session, bookings = marked(coord, grader, plan, scores, **kwargs)
    return review.session_submit_for_review(actor=coord, session=session), bookings


def status_of(obj):
    return type(obj).objects.get(pk=obj.pk).status


def actions(obj):
    return list(
        AuditEvent.objects.filter(
            object_type=obj._meta.label_lower, object_id=str(obj.pk)
        ).values_list("action", flat=True)
    )


def identical(coord, grader, plan, django_capture_on_commit_callbacks):
    """A session in review with one warning: four candidates scored 85 / 90 alike."""
    with django_capture_on_commit_callbacks(execute=True):
        session, _ = in_review(coord, grader, plan, [*QUIET, *[(85, 90)] * 4])
    return session, QualityWarning.objects.get(session=session)


# Submit for review -----------------------------------------------------------------------


def test_submit_moves_marking_to_in_review_and_scores_every_case(coord, grader, plan):
    session, bookings = in_review(coord, grader, plan)
    assert status_of(session) == SessionStatus.IN_REVIEW
    assert [status_of(b.case) for b in bookings] == [CaseStatus.SCORED] * 4
    assert actions(session)[-1] == "session.submit_for_review"
    assert QualityWarning.objects.filter(session=session).count() == 0


def test_submit_is_refused_while_a_candidate_lacks_a_final_score(coord, grader, plan):
    session, bookings = marked(coord, grader, plan, [(72, 65), (90, None)])
    with pytest.raises(DomainError) as refused:
        review.session_submit_for_review(actor=coord, session=session)
    assert refused.value.message == (
        f"以下考生尚有科目未确定最终成绩，不能提交审核：{bookings[1].ticket_number}："
        "「实操考试」尚未评分"
    )
    assert refused.value.code == "scores_incomplete"
    assert status_of(session) == SessionStatus.MARKING
    assert [status_of(b.case) for b in bookings] == [CaseStatus.EXAMINED] * 2


def test_submit_of_an_open_session_is_a_conflict(coord, plan):
    session = exam_session(coord, plan)
    with pytest.raises(StateConflict, match="场次当前状态为「开放编排」，不能变为「质量审核中」"):
        review.session_submit_for_review(actor=coord, session=session)


def test_submit_is_for_coordinators(coord, grader, plan):
    session, _ = marked(coord, grader, plan, QUIET)
    with pytest.raises(PermissionDenied, match="需要以下角色之一：考务人员"):
        review.session_submit_for_review(actor=grader, session=session)
    assert status_of(session) == SessionStatus.MARKING


def test_submit_locks_the_marks(coord, grader, plan):
    _, bookings = in_review(coord, grader, plan)
    with pytest.raises(StateConflict, match="成绩已锁定"):
        mark_enter(actor=grader, booking=bookings[0], component="theory", score=80, reason="复核")
    assert Mark.objects.get(booking=bookings[0], component__code="theory").score == 72


def test_submit_generates_warnings_and_sends_them(
    coord, grader, plan, django_capture_on_commit_callbacks
):
    _, warning = identical(coord, grader, plan, django_capture_on_commit_callbacks)
    assert (warning.rule, warning.subject, warning.status) == (
        WarningRule.IDENTICAL_SCORES,
        "practical=90,theory=85",
        WarningStatus.SENT,
    )
    assert warning.message == "4 名考生（共 8 人）各科成绩完全相同：实操考试 90，理论考试 85"
    assert actions(warning) == ["warning.generate", "warning.send"]


def test_a_sent_warning_is_not_sent_twice(coord, grader, plan, django_capture_on_commit_callbacks):
    session, _ = identical(coord, grader, plan, django_capture_on_commit_callbacks)
    assert review.warnings_send(session_id=session.pk) == 0
    assert review.warnings_pending_sessions() == []


def test_resubmission_updates_warnings_without_duplicating_them(
    coord, grader, reviewer, plan, django_capture_on_commit_callbacks
):
    session, warning = identical(coord, grader, plan, django_capture_on_commit_callbacks)
    review.session_return_to_marking(actor=reviewer, session=session, notes="请复核实操成绩")
    with django_capture_on_commit_callbacks(execute=True):
        review.session_submit_for_review(actor=coord, session=session)
    assert list(QualityWarning.objects.filter(session=session).values_list("pk", "status")) == [
        (warning.pk, WarningStatus.SENT)
    ]
    assert actions(warning) == ["warning.generate", "warning.send"]


# Resubmission after a return to marking: every rule is recomputed ------------------------

IDENTICAL = [*QUIET, *[(85, 90)] * 4]  # bookings 4-7 alike: one identical_scores warning
SUBJECT = "practical=90,theory=85"


def returned(reviewer, session):
    """Return `session` to marking: its marks unlock for correction."""
    return review.session_return_to_marking(actor=reviewer, session=session, notes="请复核成绩")


def correct(grader, booking, component, score):
    return mark_enter(
        actor=grader, booking=booking, component=component, score=score, reason="复核改分"
    )


def resubmit(coord, session, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return review.session_submit_for_review(actor=coord, session=session)


def settle(coord, reviewer, warning, how):
    """Take `warning` (sent) to the state named by `how` through the services."""
    if how in ("confirmed", "answered"):
        warning = review.warning_review(
            actor=reviewer, warning=warning, confirmed=True, note="须核查阅卷记录"
        )
    if how == "dismissed":
        warning = review.warning_review(
            actor=reviewer, warning=warning, confirmed=False, note="属正常情况"
        )
    if how == "answered":
        warning = review.warning_answer(actor=coord, warning=warning, answer="已复核答卷")
    return warning


def warning_rows(session):
    return list(
        QualityWarning.objects.filter(session=session)
        .order_by("pk")
        .values_list("pk", "subject", "status")
    )


@pytest.mark.parametrize("how", ["sent", "confirmed", "dismissed", "answered"])
def test_resubmission_withdraws_an_open_warning_that_no_longer_fires(
    coord, grader, reviewer, plan, django_capture_on_commit_callbacks, how
):
    session, bookings = marked(coord, grader, plan, IDENTICAL)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)
    warning = settle(coord, reviewer, QualityWarning.objects.get(session=session), how)
    session = returned(reviewer, session)
    # Two of the four alike corrected: two alike left, which is ordinary.
    correct(grader, bookings[4], "theory", 84)
    correct(grader, bookings[5], "theory", 83)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)

    assert warning_rows(session) == [(warning.pk, SUBJECT, WarningStatus.CLOSED)]
    warning.refresh_from_db()
    assert warning.withdrawn_at is not None
    event = AuditEvent.objects.filter(
        object_type="exams.qualitywarning", object_id=str(warning.pk)
    ).last()
    assert (event.action, event.from_state, event.to_state, event.reason, event.actor_id) == (
        "warning.withdraw",
        how,
        "closed",
        "重新提交审核时该预警不再触发，系统自动关闭",
        None,
    )
    # Nothing is left open: the session may be approved.
    session = review.session_approve(actor=reviewer, session=session)
    assert status_of(session) == SessionStatus.APPROVED


def test_resubmission_keeps_an_open_warning_that_still_fires_with_new_figures(
    coord, grader, reviewer, plan, django_capture_on_commit_callbacks
):
    session, bookings = marked(coord, grader, plan, IDENTICAL)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)
    warning = settle(coord, reviewer, QualityWarning.objects.get(session=session), "confirmed")
    before = warning.detail
    session = returned(reviewer, session)
    # A fifth candidate now scores 85 / 90 too.
    correct(grader, bookings[0], "theory", 85)
    correct(grader, bookings[0], "practical", 90)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)

    assert warning_rows(session) == [(warning.pk, SUBJECT, WarningStatus.CONFIRMED)]
    warning.refresh_from_db()
    tickets = sorted(bookings[i].ticket_number for i in (0, 4, 5, 6, 7))
    assert warning.detail == {
        "scores": {"practical": "90", "theory": "85"},
        "count": 5,
        "total": 8,
        "tickets": tickets,
    }
    assert warning.message == "5 名考生（共 8 人）各科成绩完全相同：实操考试 90，理论考试 85"
    assert (warning.review_note, warning.withdrawn_at) == ("须核查阅卷记录", None)
    event = AuditEvent.objects.filter(
        object_type="exams.qualitywarning", object_id=str(warning.pk)
    ).last()
    assert (event.action, event.actor_id) == ("warning.update", coord.pk)
    assert event.changes == {"detail": {"before": before, "after": warning.detail}}


def test_resubmission_does_not_raise_again_facts_already_reviewed_and_closed(
    coord, grader, reviewer, plan, django_capture_on_commit_callbacks
):
    session, bookings = marked(coord, grader, plan, IDENTICAL)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)
    warning = settle(coord, reviewer, QualityWarning.objects.get(session=session), "dismissed")
    review.warning_close(actor=reviewer, warning=warning)
    session = returned(reviewer, session)
    # A correction elsewhere: the four alike are still the same four, 85 / 90.
    correct(grader, bookings[0], "theory", 73)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)

    assert warning_rows(session) == [(warning.pk, SUBJECT, WarningStatus.CLOSED)]
    assert actions(warning) == [
        "warning.generate",
        "warning.send",
        "warning.dismiss",
        "warning.close",
    ]
    session = review.session_approve(actor=reviewer, session=session)
    assert status_of(session) == SessionStatus.APPROVED


def test_resubmission_raises_a_new_warning_when_closed_facts_change(
    coord, grader, reviewer, plan, django_capture_on_commit_callbacks
):
    session, bookings = marked(coord, grader, plan, IDENTICAL)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)
    closed = settle(coord, reviewer, QualityWarning.objects.get(session=session), "answered")
    closed = review.warning_close(actor=reviewer, warning=closed)
    session = returned(reviewer, session)
    correct(grader, bookings[0], "theory", 85)
    correct(grader, bookings[0], "practical", 90)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)

    (_, (new_pk, subject, new_status)) = warning_rows(session)
    assert (subject, new_status) == (SUBJECT, WarningStatus.SENT)
    new = QualityWarning.objects.get(pk=new_pk)
    assert (new.detail["count"], new.review_note, new.answer) == (5, "", "")
    closed.refresh_from_db()
    assert (closed.status, closed.detail["count"], closed.answer) == (
        WarningStatus.CLOSED,
        4,
        "已复核答卷",
    )
    event = AuditEvent.objects.get(
        object_type="exams.qualitywarning", object_id=str(new_pk), action="warning.generate"
    )
    assert event.changes == {
        "detail": {"before": None, "after": new.detail},
        "previous_warning": {"before": None, "after": closed.pk},
    }
    with pytest.raises(StateConflict, match="尚有 1 条预警未关闭"):
        review.session_approve(actor=reviewer, session=session)


def test_resubmission_raises_again_the_facts_of_a_withdrawn_warning(
    coord, grader, reviewer, plan, django_capture_on_commit_callbacks
):
    # A withdrawn warning was never settled by the supervisor: its facts coming back
    # are a warning again, not "already reviewed".
    session, bookings = marked(coord, grader, plan, IDENTICAL)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)
    first = QualityWarning.objects.get(session=session)
    session = returned(reviewer, session)
    correct(grader, bookings[4], "theory", 84)
    correct(grader, bookings[5], "theory", 83)
    session = returned(reviewer, resubmit(coord, session, django_capture_on_commit_callbacks))
    correct(grader, bookings[4], "theory", 85)
    correct(grader, bookings[5], "theory", 85)
    session = resubmit(coord, session, django_capture_on_commit_callbacks)

    rows = warning_rows(session)
    assert rows[0] == (first.pk, SUBJECT, WarningStatus.CLOSED)
    assert rows[1][1:] == (SUBJECT, WarningStatus.SENT)
    assert QualityWarning.objects.get(pk=rows[1][0]).detail == first.detail


# Warnings: review, answer, close ----------------------------------------------------------


@pytest.fixture
def warning(coord, grader, plan, django_capture_on_commit_callbacks):
    return identical(coord, grader, plan, django_capture_on_commit_callbacks)[1]


def test_review_confirms_a_sent_warning_with_a_note(reviewer, warning):
    warning = review.warning_review(
        actor=reviewer, warning=warning, confirmed=True, note="须核查阅卷记录"
    )
    assert (warning.status, warning.review_note, warning.reviewed_by) == (
        WarningStatus.CONFIRMED,
        "须核查阅卷记录",
        reviewer,
    )
    assert actions(warning)[-1] == "warning.confirm"


def test_review_dismisses_a_sent_warning(reviewer, warning):
    warning = review.warning_review(
        actor=reviewer, warning=warning, confirmed=False, note="同一班组，成绩接近属实"
    )
    assert warning.status == WarningStatus.DISMISSED


def test_review_needs_a_note(reviewer, warning):
    with pytest.raises(ValidationError) as refused:
        review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="  ")
    assert refused.value.message_dict == {"note": ["请填写审核意见"]}
    assert status_of(warning) == WarningStatus.SENT


def test_review_is_for_quality_supervisors(coord, warning):
    with pytest.raises(PermissionDenied, match="需要以下角色之一：质量督导员"):
        review.warning_review(actor=coord, warning=warning, confirmed=True, note="确认")


def test_reviewing_a_reviewed_warning_is_a_conflict(reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="确认")
    with pytest.raises(StateConflict, match="预警当前状态为「督导确认」，不能变为「督导排除」"):
        review.warning_review(actor=reviewer, warning=warning, confirmed=False, note="排除")


def test_a_supervisor_who_graded_the_session_may_not_review_its_warnings(coord, warning):
    both = UserFactory(username="grader-reviewer", roles=["grader", "reviewer"])
    Mark.objects.create(
        booking=Booking.objects.filter(session=warning.session).first(),
        component=warning.session.components.get(code="theory"),
        slot=MarkSlot.FIRST,
        grader=both,
        score=70,
    )
    with pytest.raises(PermissionDenied, match=f"您参与了场次 {warning.session.code} 的评分"):
        review.warning_review(actor=both, warning=warning, confirmed=True, note="确认")


def test_answer_by_the_coordinator_after_confirmation(coord, reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="核查")
    warning = review.warning_answer(actor=coord, warning=warning, answer="已调取录像，无异常")
    assert (warning.status, warning.answer, warning.answered_by) == (
        WarningStatus.ANSWERED,
        "已调取录像，无异常",
        coord,
    )
    assert actions(warning)[-1] == "warning.answer"


def test_answer_needs_text(coord, reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="核查")
    with pytest.raises(ValidationError) as refused:
        review.warning_answer(actor=coord, warning=warning, answer="")
    assert refused.value.message_dict == {"answer": ["请填写反馈意见"]}


def test_answering_an_unreviewed_warning_is_a_conflict(coord, warning):
    with pytest.raises(StateConflict, match="预警当前状态为「已发送督导」，不能变为「考务已反馈」"):
        review.warning_answer(actor=coord, warning=warning, answer="说明")


def test_answer_is_for_coordinators(reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="核查")
    with pytest.raises(PermissionDenied, match="需要以下角色之一：考务人员"):
        review.warning_answer(actor=reviewer, warning=warning, answer="说明")


def test_close_an_answered_warning(coord, reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="核查")
    review.warning_answer(actor=coord, warning=warning, answer="已核实")
    assert review.warning_close(actor=reviewer, warning=warning).status == WarningStatus.CLOSED
    assert actions(warning)[-1] == "warning.close"


def test_close_a_dismissed_warning(reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=False, note="属实")
    assert review.warning_close(actor=reviewer, warning=warning).status == WarningStatus.CLOSED


def test_closing_a_confirmed_unanswered_warning_is_a_conflict(reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="核查")
    with pytest.raises(StateConflict, match="预警当前状态为「督导确认」，不能变为「已关闭」"):
        review.warning_close(actor=reviewer, warning=warning)


def test_close_is_for_quality_supervisors(coord, reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=False, note="属实")
    with pytest.raises(PermissionDenied):
        review.warning_close(actor=coord, warning=warning)


# Return to marking ----------------------------------------------------------------------


def test_return_to_marking_with_notes_unlocks_the_marks(coord, grader, reviewer, plan):
    session, bookings = in_review(coord, grader, plan)
    session = review.session_return_to_marking(
        actor=reviewer, session=session, notes="第1号考生理论成绩需复核"
    )
    assert (status_of(session), session.review_notes) == (
        SessionStatus.MARKING,
        "第1号考生理论成绩需复核",
    )
    mark = mark_enter(
        actor=grader, booking=bookings[0], component="theory", score=74, reason="复核改分"
    )
    assert mark.score == 74
    event = AuditEvent.objects.filter(object_type="exams.examsession").last()
    assert (event.action, event.reason) == ("session.return_to_marking", "第1号考生理论成绩需复核")


def test_return_needs_notes(coord, grader, reviewer, plan):
    session, _ = in_review(coord, grader, plan)
    with pytest.raises(ValidationError) as refused:
        review.session_return_to_marking(actor=reviewer, session=session, notes="")
    assert refused.value.message_dict == {"notes": ["请填写退回意见"]}


def test_return_of_a_marking_session_is_a_conflict(coord, grader, reviewer, plan):
    session, _ = marked(coord, grader, plan, QUIET)
    with pytest.raises(StateConflict, match="场次当前状态为「评分中」，不能变为「评分中」"):
        review.session_return_to_marking(actor=reviewer, session=session, notes="复核")


def test_return_is_for_quality_supervisors(coord, grader, plan):
    session, _ = in_review(coord, grader, plan)
    with pytest.raises(PermissionDenied):
        review.session_return_to_marking(actor=coord, session=session, notes="复核")


# Approve --------------------------------------------------------------------------------


def test_approve_publishes_passed_and_failed(coord, grader, reviewer, plan, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    # Skill level passes at 60 / 60; the qualification (80 / 80 and safety training)
    # is earned by no one here, so passed means the skill-level certificate.
    session, bookings = marked(coord, grader, plan, [*QUIET, (66, 71)], absent=1)
    misconduct_record(
        actor=coord,
        booking=bookings[4],
        description="夹带资料",
        evidence=SimpleUploadedFile("evidence.jpg", b"jpeg"),
    )
    session = review.session_submit_for_review(actor=coord, session=session)
    session = review.session_approve(actor=reviewer, session=session, notes="同意")
    assert (status_of(session), session.review_notes) == (SessionStatus.APPROVED, "同意")
    cases = [Case.objects.get(pk=b.case_id) for b in bookings]
    assert [c.status for c in cases] == [
        CaseStatus.PASSED,
        CaseStatus.PASSED,
        CaseStatus.FAILED,
        CaseStatus.PASSED,
        CaseStatus.VOID,
        CaseStatus.ABSENT,
    ]
    today = timezone.localdate()
    assert [c.result_date for c in cases[:4]] == [today] * 4
    event = AuditEvent.objects.filter(object_type="exams.examsession").last()
    assert event.action == "session.approve"
    assert event.changes["published"]["after"] == {
        "passed": [bookings[i].ticket_number for i in (0, 1, 3)],
        "failed": [bookings[2].ticket_number],
    }


def test_approve_is_blocked_by_an_open_warning(coord, reviewer, warning):
    review.warning_review(actor=reviewer, warning=warning, confirmed=True, note="核查")
    review.warning_answer(actor=coord, warning=warning, answer="已核实")
    with pytest.raises(StateConflict) as refused:
        review.session_approve(actor=reviewer, session=warning.session)
    assert refused.value.message == f"场次 {warning.session.code} 尚有 1 条预警未关闭，不能审核通过"
    assert refused.value.extra["open_warnings"] == [warning.pk]
    assert status_of(warning.session) == SessionStatus.IN_REVIEW
    review.warning_close(actor=reviewer, warning=warning)
    assert review.session_approve(actor=reviewer, session=warning.session).status == (
        SessionStatus.APPROVED
    )


def test_approve_is_refused_to_a_supervisor_on_the_grading_staff(coord, grader, plan):
    both = UserFactory(username="grader-reviewer", roles=["grader", "reviewer"])
    session, bookings = in_review(coord, grader, plan, staff=[(both, "chief_grader", None)])
    with pytest.raises(PermissionDenied) as refused:
        review.session_approve(actor=both, session=session)
    assert str(refused.value) == f"您参与了场次 {session.code} 的评分，不能审核该场次"
    assert status_of(session) == SessionStatus.IN_REVIEW
    assert status_of(bookings[0].case) == CaseStatus.SCORED


def test_approve_is_refused_to_a_supervisor_who_entered_a_mark(coord, grader, plan):
    both = UserFactory(username="grader-reviewer", roles=["grader", "reviewer"])
    session, bookings = in_review(coord, grader, plan)
    Mark.objects.create(
        booking=bookings[0],
        component=session.components.get(code="practical"),
        slot=MarkSlot.ARBITRATION,
        grader=both,
        score=66,
    )
    with pytest.raises(PermissionDenied):
        review.session_approve(actor=both, session=session)


def test_approve_is_for_quality_supervisors(coord, grader, plan):
    session, _ = in_review(coord, grader, plan)
    with pytest.raises(PermissionDenied, match="需要以下角色之一：质量督导员"):
        review.session_approve(actor=coord, session=session)


def test_approving_a_marking_session_is_a_conflict(coord, grader, reviewer, plan):
    session, _ = marked(coord, grader, plan, QUIET)
    with pytest.raises(StateConflict, match="场次当前状态为「评分中」，不能变为「审核通过」"):
        review.session_approve(actor=reviewer, session=session)


def test_late_check_in_is_flagged_on_submit(coord, grader, plan):
    session, bookings = marked(coord, grader, plan, QUIET)
    starts = starts_at(session)
    Booking.objects.filter(pk=bookings[1].pk).update(checked_in_at=starts + timedelta(minutes=7))
    Booking.objects.filter(pk=bookings[0].pk).update(checked_in_at=starts - timedelta(minutes=20))
    review.session_submit_for_review(actor=coord, session=session)
    warning = QualityWarning.objects.get(session=session)
    assert (warning.rule, warning.subject) == (WarningRule.LATE_CHECK_IN, "session")
    assert (
        warning.message
        == f"1 名考生在开考时间 09:00 之后签到：{bookings[1].ticket_number}（迟 7 分钟）"
    )


# The API --------------------------------------------------------------------------------


def api(client, user):
    client.force_login(user)
    return client


def test_review_queue_lists_sessions_in_review_for_supervisors(client, coord, grader, reviewer):
    plan = PlanFactory()
    session, _ = in_review(coord, grader, plan)
    marked(coord, grader, plan, [(70, 70)])  # still marking: not in the queue
    response = api(client, reviewer).get("/api/v1/review/sessions/")
    assert response.status_code == 200
    assert [
        (row["code"], row["status"], row["open_warnings"]) for row in response.json()["results"]
    ] == [(session.code, "in_review", 0)]


def test_review_queue_is_closed_to_graders(client, coord, grader, plan):
    in_review(coord, grader, plan)
    assert api(client, grader).get("/api/v1/review/sessions/").status_code == 403


def test_review_queue_leaves_out_sessions_the_supervisor_graded(client, coord, grader, plan):
    both = UserFactory(username="grader-reviewer", roles=["grader", "reviewer"])
    in_review(coord, grader, plan, staff=[(both, "chief_grader", None)])
    assert api(client, both).get("/api/v1/review/sessions/").json()["results"] == []


def test_warning_loop_and_approval_through_the_api(
    client, coord, grader, reviewer, plan, django_capture_on_commit_callbacks
):
    session, bookings = marked(coord, grader, plan, [*QUIET, *[(85, 90)] * 4])
    base = f"/api/v1/review/sessions/{session.pk}"
    with django_capture_on_commit_callbacks(execute=True):
        response = api(client, coord).post(f"{base}/submit_for_review/")
    assert (response.status_code, response.json()["status"]) == (200, "in_review")
    (warning,) = api(client, reviewer).get(f"{base}/warnings/").json()
    assert (warning["rule"], warning["status"]) == ("identical_scores", "sent")
    response = client.post(f"{base}/approve/", {"notes": ""}, content_type="application/json")
    assert response.status_code == 409
    url = f"/api/v1/review/warnings/{warning['id']}"
    response = client.post(f"{url}/review/", {"confirmed": True, "note": ""}, "application/json")
    assert (response.status_code, response.json()) == (400, {"note": ["请填写审核意见"]})
    response = client.post(
        f"{url}/review/", {"confirmed": True, "note": "核查"}, "application/json"
    )
    assert response.json()["status"] == "confirmed"
    response = api(client, coord).post(f"{url}/answer/", {"answer": "已核实"}, "application/json")
    assert response.json()["status"] == "answered"
    response = api(client, reviewer).post(f"{url}/close/")
    assert response.json()["status"] == "closed"
    response = client.post(f"{base}/approve/", {"notes": "同意"}, "application/json")
    assert (response.status_code, response.json()["status"]) == (200, "approved")
    assert Case.objects.get(pk=bookings[4].case_id).status == CaseStatus.PASSED


def test_return_to_marking_through_the_api_needs_notes(client, coord, grader, reviewer, plan):
    session, _ = in_review(coord, grader, plan)
    url = f"/api/v1/review/sessions/{session.pk}/return_to_marking/"
    response = api(client, reviewer).post(url, {"notes": ""}, "application/json")
    assert (response.status_code, response.json()) == (400, {"notes": ["请填写退回意见"]})
    response = client.post(url, {"notes": "复核"}, "application/json")
    assert (response.status_code, response.json()["status"]) == (200, "marking")


def test_score_distribution_per_component_with_pass_marks(client, coord, grader, reviewer, plan):
    session, _ = in_review(coord, grader, plan)
    url = f"/api/v1/review/sessions/{session.pk}/distribution/?width=10"
    data = api(client, reviewer).get(url).json()
    theory = next(row for row in data if row["component"] == "theory")
    assert (theory["count"], theory["mean"], theory["max_score"]) == (4, "73.5", 100)
    assert theory["pass_marks"] == [
        {"certificate": "qualification", "label": "职业资格证书", "mark": "80.0"},
        {"certificate": "skill", "label": "职业技能等级证书", "mark": "60.0"},
    ]
    counts = {b["from"]: b["count"] for b in theory["buckets"] if b["count"]}
    assert counts == {50: 1, 70: 2, 90: 1}
    assert len(theory["buckets"]) == 10
    assert api(client, reviewer).get(url.replace("10", "3")).status_code == 400


def test_session_rows_untouched_by_reads(coord, grader, plan):
    session, _ = in_review(coord, grader, plan)
    assert ExamSession.objects.get(pk=session.pk).review_notes == ""


def test_the_sweep_sends_warnings_whose_dispatch_was_lost(coord, grader, plan):
    from exams.tasks import quality_warnings_send_sweep

    # Without running the on_commit callbacks the dispatch is lost: warnings stay new.
    session, _ = in_review(coord, grader, plan, [*QUIET, *[(85, 90)] * 4])
    assert review.warnings_pending_sessions() == [session.pk]
    assert quality_warnings_send_sweep() == [session.pk]
    assert list(QualityWarning.objects.values_list("status", flat=True)) == [WarningStatus.SENT]
    assert review.warnings_pending_sessions() == []
