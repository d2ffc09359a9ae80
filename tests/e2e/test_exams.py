"""Exam pages driven in chromium against a live server: a grader keys scores into the
grid, and a supervisor approves a reviewed session. Test data is built through the
services (tests/exams/factories.py)."""

import pytest
from playwright.sync_api import Page, expect

from exams import review
from exams.models import Booking, ExamSession, Mark, QualityWarning, SessionStatus, WarningStatus
from exams.scoring import marks_enter
from tests.exams.factories import (
    PlanFactory,
    UserFactory,
    coordinator,
    eligible_case,
    marking_session,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PASSWORD = "pass-Word-123"
SCORES = [(72, 65), (90, 95), (55, 40), (77, 88)]


def login(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="工作台")).to_be_visible()


@pytest.fixture
def marking(live_server):
    """A session in marking with four checked-in candidates; `marker` grades both
    components."""
    coord = coordinator()
    marker = UserFactory(username="marker", roles=["grader"])
    plan = PlanFactory(name="2026年焊工联合评价 第9期")
    cases = [eligible_case(coord, plan) for _ in SCORES]
    session, bookings = marking_session(
        coord,
        plan,
        cases,
        staff=[(marker, "grader", "theory"), (marker, "grader", "practical")],
        code="E2E1",
    )
    ordered = sorted(bookings.values(), key=lambda b: b.seat_number)
    return live_server.url, coord, marker, session, ordered


def test_grader_keys_scores_into_the_grid_and_saves(page: Page, marking):
    url, _coord, _marker, _session, bookings = marking
    login(page, url, "marker")
    page.get_by_role("link", name="我的评分").click()
    row = page.locator("tr[data-session='E2E1']")
    row.get_by_role("link", name="理论考试").click()
    expect(page.get_by_role("heading", name="评分 · E2E1 · 理论考试")).to_be_visible()

    # The first empty score has the focus; Enter and ArrowDown move down, ArrowUp back
    # up; Enter on the last row saves the batch. No mouse. (The grid's script sets the
    # focus once loaded: keys typed before that would be lost on a slow machine.)
    page.wait_for_function("document.activeElement && document.activeElement.tagName === 'INPUT'")
    page.keyboard.type("72")
    page.keyboard.press("Enter")
    page.keyboard.type("9")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowDown")  # back on the second row, its text selected
    page.keyboard.type("90")
    page.keyboard.press("Enter")
    page.keyboard.type("55")
    page.keyboard.press("Tab")
    page.keyboard.type("77.5")
    page.keyboard.press("Enter")

    expect(page.get_by_text("已保存：新录入 4，修改 0，未变 0")).to_be_visible()
    own = page.get_by_test_id("own-mark")
    expect(own).to_have_text(["72", "90", "55", "77.5"])
    scores = {
        b.ticket_number: str(Mark.objects.get(booking=b, component__code="theory").score)
        for b in bookings
    }
    assert scores == {
        bookings[0].ticket_number: "72.0",
        bookings[1].ticket_number: "90.0",
        bookings[2].ticket_number: "55.0",
        bookings[3].ticket_number: "77.5",
    }


def test_grid_shows_a_bad_score_on_its_row(page: Page, marking):
    url, _coord, _marker, session, bookings = marking
    login(page, url, "marker")
    page.goto(f"{url}/exams/grading/{session.pk}/theory/")
    page.keyboard.type("101")
    page.keyboard.press("Control+Enter")
    row = page.locator(f"tr[data-ticket='{bookings[0].ticket_number}']")
    expect(row).to_contain_text("分数不能超过满分 100 分")
    expect(page.get_by_test_id("grid-error")).to_have_text("有 1 处错误，本批成绩均未保存")
    assert Mark.objects.count() == 0


def test_supervisor_approves_a_session_whose_warnings_are_closed(page: Page, marking):
    url, coord, marker, session, bookings = marking
    supervisor = UserFactory(username="supervisor", roles=["reviewer"])
    for index, code in enumerate(("theory", "practical")):
        marks_enter(
            actor=marker,
            session=session,
            component=code,
            entries=[
                {"ticket_number": b.ticket_number, "score": s[index]}
                for b, s in zip(bookings, SCORES, strict=True)
            ],
        )
    review.session_submit_for_review(actor=coord, session=session)
    # Whatever warnings the rules raised (late check-in, as the desk stamped today's
    # time) go through their loop: confirmed, answered, closed.
    warnings = list(QualityWarning.objects.filter(session=session))
    for warning in warnings:
        assert warning.status == WarningStatus.SENT
        warning = review.warning_review(
            actor=supervisor, warning=warning, confirmed=True, note="请说明"
        )
        warning = review.warning_answer(actor=coord, warning=warning, answer="已核实")
        review.warning_close(actor=supervisor, warning=warning)

    login(page, url, "supervisor")
    page.get_by_role("link", name="质量审核").click()
    page.locator("tr[data-session='E2E1']").get_by_role("link", name="E2E1").click()
    expect(page.locator("#distribution svg")).to_have_count(2)
    expect(page.locator("#warnings tbody tr")).to_have_count(len(warnings))
    for status in page.locator("#warnings tbody tr .badge").all():
        expect(status).to_have_text("已关闭")
    page.get_by_label("督导意见").first.fill("成绩分布正常")
    page.get_by_role("button", name="审核通过并公布成绩").click()

    expect(page.get_by_text("场次 E2E1 已审核通过，成绩已公布")).to_be_visible()
    expect(page.locator(".page-head .badge")).to_have_text("审核通过")
    expect(page.get_by_role("button", name="审核通过并公布成绩")).to_have_count(0)
    assert ExamSession.objects.get(pk=session.pk).status == SessionStatus.APPROVED
    statuses = [Booking.objects.get(pk=b.pk).case.status for b in bookings]
    assert statuses == ["passed", "passed", "failed", "passed"]
