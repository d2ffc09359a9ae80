"""Results: final component scores, per-certificate outcome with reasons (一试多证),
training completion, retake carry-over, and the results API."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework.test import APIClient

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases.models import CaseStatus
from catalog.models import QualificationType
from exams import results, scoring
from exams.models import CertificateResult, ComponentScore

from .factories import PlanFactory, UserFactory, coordinator, eligible_case, hold, marking_session
from .factories import register as register_candidate

pytestmark = pytest.mark.django_db

THEORY_BEFORE = "理论考试未合格，实操考试 85 分不予计入（须理论合格后方可计实操）"


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def grader():
    return UserFactory(username="grader", roles=["grader"])


def lv_plan():
    """MEM-ELEC-LV with 电工 level 5 (theory before practical), single marking."""
    return PlanFactory(
        name="2026年低压电工联合评价",
        qualification_type=QualificationType.objects.get(code="MEM-ELEC-LV"),
    )


def sit(coord, grader, plan, cases, **kwargs):
    staff = [(grader, "grader", "theory"), (grader, "grader", "practical")]
    return marking_session(coord, plan, cases, staff=staff, **kwargs)


def mark(grader, booking, theory=None, practical=None):
    if theory is not None:
        scoring.mark_enter(actor=grader, booking=booking, component="theory", score=theory)
    if practical is not None:
        scoring.mark_enter(actor=grader, booking=booking, component="practical", score=practical)


def outcome(case):
    return {r.kind: (r.earned, r.reasons) for r in results.case_outcome(case)}


def stored(case):
    return {r.kind: (r.earned, r.reasons) for r in CertificateResult.objects.filter(case=case)}


def finalised_case(coord, grader, plan, theory, practical, *, training=True):
    case = eligible_case(coord, plan)
    if training:
        results.training_complete(actor=coord, case=case)
    session, bookings = sit(coord, grader, plan, [case])
    mark(grader, bookings[case.pk], theory, practical)
    summary = results.session_finalise(actor=coord, session=session)
    assert summary.pending == []
    case.refresh_from_db()
    return case


# DESIGN.md's examples --------------------------------------------------------------------


def test_design_example_75_85_earns_the_skill_certificate_only(coord, grader):
    case = finalised_case(coord, grader, lv_plan(), 75, 85)
    assert case.status == CaseStatus.SCORED
    assert stored(case) == {
        "qualification": (False, ["理论考试 75 分，低于合格线 80 分", THEORY_BEFORE]),
        "skill": (True, []),
    }


def test_both_certificates_earned(coord, grader):
    case = finalised_case(coord, grader, lv_plan(), 85, 90)
    assert stored(case) == {"qualification": (True, []), "skill": (True, [])}


def test_no_certificate_earned(coord, grader):
    case = finalised_case(coord, grader, lv_plan(), 50, 55)
    assert stored(case) == {
        "qualification": (
            False,
            ["理论考试 50 分，低于合格线 80 分", "实操考试 55 分，低于合格线 80 分"],
        ),
        "skill": (
            False,
            ["理论考试 50 分，低于合格线 60 分", "实操考试 55 分，低于合格线 60 分"],
        ),
    }


def test_practical_below_the_mark_is_reported_once_under_theory_before_practical(coord, grader):
    case = finalised_case(coord, grader, lv_plan(), 85, 70)
    assert stored(case)["qualification"] == (False, ["实操考试 70 分，低于合格线 80 分"])


def test_missing_training_is_not_met(coord, grader):
    case = finalised_case(coord, grader, lv_plan(), 85, 90, training=False)
    assert stored(case) == {"qualification": (False, ["未完成安全培训"]), "skill": (True, [])}


def test_exempt_theory_counts_as_met_for_the_qualification(coord, grader):
    """Row 7: a SAMR-WELD holder applying for MEM-WELD-FC is exempt from training and
    theory and sits the practical only."""
    plan = PlanFactory()  # MEM-WELD-FC
    candidate = register_candidate(coord, name="王五")
    hold(coord, candidate, "SAMR-WELD")
    case = eligible_case(coord, plan, candidate=candidate)
    session, bookings = sit(coord, grader, plan, [case])
    assert [c.code for c in bookings[case.pk].components.all()] == ["practical"]
    mark(grader, bookings[case.pk], practical=82)
    results.session_finalise(actor=coord, session=session)
    assert stored(case) == {"qualification": (True, []), "skill": (True, [])}
    rows = {
        r.component.code: (r.status, r.score, r.method)
        for r in ComponentScore.objects.filter(case=case)
    }
    assert rows == {
        "training": ("exempt", None, "exempt"),
        "theory": ("exempt", None, "exempt"),
        "practical": ("final", Decimal("82.0"), "single"),
    }


# Finalising ----------------------------------------------------------------------------


def test_finalise_writes_final_scores_with_their_method(coord):
    plan = PlanFactory(double_marked=("practical",))
    graders = [UserFactory(username=f"g{i}", roles=["grader"]) for i in range(3)]
    chief = UserFactory(username="chief", roles=["grader"])
    first, second = eligible_case(coord, plan, name="甲"), eligible_case(coord, plan, name="乙")
    session, bookings = marking_session(
        coord,
        plan,
        [first, second],
        staff=[
            (graders[0], "grader", "theory"),
            (graders[1], "grader", "practical"),
            (graders[2], "grader", "practical"),
            (chief, "chief_grader", "practical"),
        ],
    )
    for case, (a, b) in ((first, (72.5, 75)), (second, (60, 80))):
        booking = bookings[case.pk]
        scoring.mark_enter(actor=graders[0], booking=booking, component="theory", score=88)
        scoring.mark_enter(actor=graders[1], booking=booking, component="practical", score=a)
        scoring.mark_enter(actor=graders[2], booking=booking, component="practical", score=b)
    summary = results.session_finalise(actor=coord, session=session)
    assert summary.finalised == [bookings[first.pk].ticket_number]
    assert summary.pending == [
        {
            "ticket_number": bookings[second.pk].ticket_number,
            "message": "「实操考试」一评、二评分差超过允许误差，待主考评员仲裁",
        }
    ]
    scoring.mark_enter(actor=chief, booking=bookings[second.pk], component="practical", score=71)
    summary = results.session_finalise(actor=coord, session=session)
    assert summary.pending == []
    finals = {
        (r.case_id, r.component.code): (r.score, r.method, r.attempt)
        for r in ComponentScore.objects.filter(status="final")
    }
    assert finals == {
        (first.pk, "theory"): (Decimal("88.0"), "single", 1),
        (first.pk, "practical"): (Decimal("73.8"), "mean", 1),
        (second.pk, "theory"): (Decimal("88.0"), "single", 1),
        (second.pk, "practical"): (Decimal("71.0"), "arbitrated", 1),
    }
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (CaseStatus.SCORED, CaseStatus.SCORED)


def test_finalise_leaves_incomplete_cases_examined(coord, grader):
    plan = lv_plan()
    case = eligible_case(coord, plan)
    session, bookings = sit(coord, grader, plan, [case])
    mark(grader, bookings[case.pk], theory=80)
    summary = results.session_finalise(actor=coord, session=session)
    assert summary.pending == [
        {"ticket_number": bookings[case.pk].ticket_number, "message": "「实操考试」尚未评分"}
    ]
    case.refresh_from_db()
    assert case.status == CaseStatus.EXAMINED
    assert ComponentScore.objects.filter(case=case).count() == 0


def test_case_finalise_refuses_missing_marks(coord, grader):
    plan = lv_plan()
    case = eligible_case(coord, plan)
    sit(coord, grader, plan, [case])
    with pytest.raises(ValidationError) as info:
        results.case_scores_finalise(actor=coord, case=case)
    assert info.value.message_dict == {"case": ["「理论考试」尚未评分", "「实操考试」尚未评分"]}


def test_case_finalise_one_case(coord, grader):
    plan = lv_plan()
    case = eligible_case(coord, plan)
    _, bookings = sit(coord, grader, plan, [case])
    mark(grader, bookings[case.pk], 90, 90)
    case = results.case_scores_finalise(actor=coord, case=case)
    assert case.status == CaseStatus.SCORED
    assert AuditEvent.objects.filter(action="case.results", object_id=str(case.pk)).count() == 1


def test_finalise_again_rewrites_after_a_correction_and_audits_it(coord, grader):
    plan = lv_plan()
    case = eligible_case(coord, plan)
    results.training_complete(actor=coord, case=case)
    session, bookings = sit(coord, grader, plan, [case])
    mark(grader, bookings[case.pk], 75, 85)
    results.session_finalise(actor=coord, session=session)
    scoring.mark_enter(
        actor=grader, booking=bookings[case.pk], component="theory", score=82, reason="漏判"
    )
    results.session_finalise(actor=coord, session=session)
    assert stored(case) == {"qualification": (True, []), "skill": (True, [])}
    events = AuditEvent.objects.filter(action="case.results", object_id=str(case.pk))
    assert events.count() == 2
    assert events.last().changes["scores"]["after"]["theory"] == ["final", "82.0", "single"]
    # Nothing changed: no further event.
    results.session_finalise(actor=coord, session=session)
    assert events.count() == 2


def test_finalise_needs_a_coordinator(coord, grader):
    plan = lv_plan()
    session, _ = sit(coord, grader, plan, [eligible_case(coord, plan)])
    with pytest.raises(PermissionDenied):
        results.session_finalise(actor=grader, session=session)


def test_finalise_outside_marking_is_refused(coord, grader):
    from .factories import exam_session

    plan = lv_plan()
    session = exam_session(coord, plan)
    with pytest.raises(StateConflict) as info:
        results.session_finalise(actor=coord, session=session)
    assert info.value.message == (
        f"场次 {session.code} 当前状态为「开放编排」，只有评分中的场次才能确定成绩"
    )


def test_case_outcome_is_pure(coord, grader):
    plan = lv_plan()
    case = eligible_case(coord, plan)
    assert outcome(case) == {
        "qualification": (False, ["未完成安全培训", "理论考试无成绩", "实操考试无成绩"]),
        "skill": (False, ["理论考试无成绩", "实操考试无成绩"]),
    }
    assert CertificateResult.objects.count() == 0


# Training ------------------------------------------------------------------------------


def test_training_complete_is_recorded_once_and_audited(coord):
    plan = lv_plan()
    case = eligible_case(coord, plan)
    row = results.training_complete(actor=coord, case=case, note="培训学时已满")
    again = results.training_complete(actor=coord, case=case)
    assert again.pk == row.pk
    assert (row.status, row.method, row.score) == ("completed", "completion", None)
    event = AuditEvent.objects.get(action="case.training_complete")
    assert (event.reason, event.changes) == (
        "培训学时已满",
        {"completed": {"before": None, "after": "training"}},
    )


def test_training_complete_for_an_exempt_case_is_refused(coord):
    plan = PlanFactory()
    candidate = register_candidate(coord)
    hold(coord, candidate, "SAMR-WELD")
    case = eligible_case(coord, plan, candidate=candidate)
    with pytest.raises(ValidationError) as info:
        results.training_complete(actor=coord, case=case)
    assert info.value.message_dict == {
        "component": ["考生免于「安全培训」（互认序号 7），无须登记"]
    }


def test_training_complete_for_an_exam_component_is_refused(coord):
    case = eligible_case(coord, lv_plan())
    with pytest.raises(ValidationError) as info:
        results.training_complete(actor=coord, case=case, component="theory")
    assert info.value.message_dict == {"component": ["「theory」不是本评价计划须完成的培训科目"]}


def test_training_complete_needs_a_coordinator(coord, grader):
    case = eligible_case(coord, lv_plan())
    with pytest.raises(PermissionDenied):
        results.training_complete(actor=grader, case=case)


# Retakes -------------------------------------------------------------------------------


def _retake_session(coord, grader, plan, case):
    """The retake's session in marking, with the case booked through the scheduling
    service (only its outstanding components) and checked in."""
    from exams.attendance import check_in
    from exams.scheduling import booking_create
    from exams.sessions import (
        session_assign_staff,
        session_close,
        session_freeze_roster,
        session_open,
        session_start,
    )

    from .factories import desk_time, exam_session

    session = exam_session(coord, plan, day=date(2026, 10, 15))
    for component in ("theory", "practical"):
        session_assign_staff(
            actor=coord, session=session, user=grader, role="grader", component=component
        )
    if session.status == "planned":
        session = session_open(actor=coord, session=session)
    booking = booking_create(actor=coord, session=session, case=case)
    assert booking.attempt == 2
    session = session_freeze_roster(actor=coord, session=session)
    check_in(
        actor=coord, session=session, ticket_or_id=booking.ticket_number, at=desk_time(session)
    )
    session = session_close(actor=coord, session=session_start(actor=coord, session=session))
    booking.refresh_from_db()
    return session, booking


def test_retake_carries_over_the_passed_theory(coord, grader):
    from cases import services as case_services
    from exams import review

    plan = PlanFactory()  # MEM-WELD-FC: theory 80 / practical 80, no ordering rule
    reviewer = UserFactory(username="reviewer", roles=["reviewer"])
    case = eligible_case(coord, plan)
    results.training_complete(actor=coord, case=case)
    session, bookings = sit(coord, grader, plan, [case])
    mark(grader, bookings[case.pk], 90, 50)
    results.session_finalise(actor=coord, session=session)
    review.session_submit_for_review(actor=coord, session=session)
    review.warnings_send(session_id=session.pk)
    for warning in session.warnings.all():  # e.g. a pass rate far from the plan's others
        warning = review.warning_review(
            actor=reviewer, warning=warning, confirmed=False, note="单人场次，不具代表性"
        )
        review.warning_close(actor=reviewer, warning=warning)
    review.session_approve(actor=reviewer, session=session)
    case.refresh_from_db()
    assert case.status == CaseStatus.FAILED

    case = case_services.case_retake(actor=coord, case=case)
    session, retake = _retake_session(coord, grader, plan, case)
    assert (retake.attempt, [c.code for c in retake.components.all()]) == (2, ["practical"])
    with pytest.raises(ValidationError) as info:
        mark(grader, retake, theory=95)
    assert info.value.message_dict == {"component": ["考生本场不考「理论考试」，不能录入成绩"]}
    mark(grader, retake, practical=85)
    results.session_finalise(actor=coord, session=session)
    case.refresh_from_db()
    assert case.status == CaseStatus.SCORED
    by_attempt = {
        (r.kind, r.attempt): (r.earned, r.reasons) for r in CertificateResult.objects.all()
    }
    assert by_attempt == {
        ("qualification", 1): (False, ["实操考试 50 分，低于合格线 80 分"]),
        ("skill", 1): (False, ["实操考试 50 分，低于合格线 60 分"]),
        ("qualification", 2): (True, []),
        ("skill", 2): (True, []),
    }


# API -----------------------------------------------------------------------------------


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_results_per_case_with_reasons(coord, grader):
    case = finalised_case(coord, grader, lv_plan(), 75, 85)
    response = client_for(coord).get(f"/api/v1/results/{case.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert (body["case"], body["status"]) == (case.pk, "scored")
    assert body["certificates"] == [
        {
            "kind": "qualification",
            "kind_label": "职业资格证书",
            "attempt": 1,
            "earned": False,
            "reasons": ["理论考试 75 分，低于合格线 80 分", THEORY_BEFORE],
        },
        {
            "kind": "skill",
            "kind_label": "职业技能等级证书",
            "attempt": 1,
            "earned": True,
            "reasons": [],
        },
    ]
    assert [(c["component"], c["status"], c["score"]) for c in body["components"]] == [
        ("training", "completed", None),
        ("theory", "final", "75.0"),
        ("practical", "final", "85.0"),
    ]


def test_api_results_are_not_for_graders(coord, grader):
    case = eligible_case(coord, lv_plan())
    assert client_for(grader).get(f"/api/v1/results/{case.pk}/").status_code == 403


def test_api_finalise_and_training(coord, grader):
    plan = lv_plan()
    case = eligible_case(coord, plan)
    response = client_for(coord).post(
        f"/api/v1/results/{case.pk}/training-complete/", {}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["status"] == "completed"
    session, bookings = sit(coord, grader, plan, [case])
    mark(grader, bookings[case.pk], 85, 85)
    response = client_for(coord).post(
        "/api/v1/results/finalise/", {"session": session.pk}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"finalised": [bookings[case.pk].ticket_number], "pending": []}
    assert (
        client_for(grader)
        .post("/api/v1/results/finalise/", {"session": session.pk}, format="json")
        .status_code
        == 403
    )


def test_results_api_is_scoped_by_role_and_review_state(coord):
    from rest_framework.test import APIClient

    from ..cases.factories import UserFactory
    from .factories import eligible_case

    plan = PlanFactory()
    case = eligible_case(coord, plan)
    reviewer = UserFactory(username="reviewer-scope", roles=["reviewer"])
    officer = UserFactory(username="officer-scope", roles=["issuer_officer"])
    for user, status in [(coord, 200), (reviewer, 404), (officer, 404)]:
        api = APIClient()
        api.force_authenticate(user)
        assert api.get(f"/api/v1/results/{case.pk}/").status_code == status, user.username
