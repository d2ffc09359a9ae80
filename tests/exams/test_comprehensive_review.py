"""综合评审 (comprehensive review) on a level-2 plan: sat in the session like any exam
component, scored once by the panel, required by the skill-level certificate only."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from cases.models import CaseStatus
from exams import results, scoring
from exams.models import CertificateResult, ComponentScore
from exams.scheduling import booking_create

from .factories import (
    PlanFactory,
    UserFactory,
    coordinator,
    eligible_case,
    exam_session,
    marking_session,
)

pytestmark = pytest.mark.django_db

WITH_REVIEW = ("theory", "practical", "review")


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def grader():
    return UserFactory(username="grader", roles=["grader"])


@pytest.fixture
def panel():
    """The review panel's secretary, who records the panel's agreed score."""
    return UserFactory(username="panel", roles=["grader"])


@pytest.fixture
def plan():
    """MEM-WELD-FC with 焊工 level 2 (技师): the skill certificate needs 综合评审. Without a
    level-3 certificate the candidate qualifies on 8 years in the occupation."""
    return PlanFactory(level=2, alternative_work_years=Decimal(8))


def level_2_case(coord, plan):
    case = eligible_case(coord, plan, work_years={"6-18-02-04": 10})
    results.training_complete(actor=coord, case=case)
    return case


def sit(coord, grader, panel, plan, case):
    staff = [
        (grader, "grader", "theory"),
        (grader, "grader", "practical"),
        (panel, "grader", "review"),
    ]
    return marking_session(coord, plan, [case], staff=staff, components=WITH_REVIEW)


def finalised(coord, grader, panel, plan, theory, practical, review):
    case = level_2_case(coord, plan)
    session, bookings = sit(coord, grader, panel, plan, case)
    booking = bookings[case.pk]
    assert [c.code for c in booking.components.all()] == ["theory", "practical", "review"]
    scoring.mark_enter(actor=grader, booking=booking, component="theory", score=theory)
    scoring.mark_enter(actor=grader, booking=booking, component="practical", score=practical)
    scoring.mark_enter(actor=panel, booking=booking, component="review", score=review)
    summary = results.session_finalise(actor=coord, session=session)
    assert summary.pending == []
    case.refresh_from_db()
    return case


def stored(case):
    return {r.kind: (r.earned, r.reasons) for r in CertificateResult.objects.filter(case=case)}


def test_review_below_60_earns_the_qualification_but_not_the_skill_certificate(
    coord, grader, panel, plan
):
    case = finalised(coord, grader, panel, plan, 85, 85, 50)
    assert case.status == CaseStatus.SCORED
    assert stored(case) == {
        "qualification": (True, []),
        "skill": (False, ["综合评审 50 分，低于合格线 60 分"]),
    }
    assert {
        r.component.code: (r.status, r.score, r.method)
        for r in ComponentScore.objects.filter(case=case, status="final")
    } == {
        "theory": ("final", Decimal("85.0"), "single"),
        "practical": ("final", Decimal("85.0"), "single"),
        "review": ("final", Decimal("50.0"), "single"),
    }


def test_review_at_60_earns_both_certificates(coord, grader, panel, plan):
    case = finalised(coord, grader, panel, plan, 85, 85, 60)
    assert stored(case) == {"qualification": (True, []), "skill": (True, [])}


def test_unscored_review_keeps_the_case_examined(coord, grader, panel, plan):
    case = level_2_case(coord, plan)
    session, bookings = sit(coord, grader, panel, plan, case)
    booking = bookings[case.pk]
    scoring.mark_enter(actor=grader, booking=booking, component="theory", score=85)
    scoring.mark_enter(actor=grader, booking=booking, component="practical", score=85)
    summary = results.session_finalise(actor=coord, session=session)
    assert summary.pending == [
        {"ticket_number": booking.ticket_number, "message": "「综合评审」尚未评分"}
    ]
    case.refresh_from_db()
    assert case.status == CaseStatus.EXAMINED


def test_a_level_2_case_needs_a_session_covering_the_review(coord, plan):
    case = eligible_case(coord, plan, work_years={"6-18-02-04": 10})
    session = exam_session(coord, plan)  # theory and practical only
    with pytest.raises(ValidationError) as info:
        booking_create(actor=coord, session=session, case=case)
    assert info.value.message_dict == {
        "session": [f"场次 {session.code} 不包含该考生须考的科目：综合评审"]
    }
