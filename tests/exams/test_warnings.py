"""The early-warning rules (exams.warnings): each with data that fires and data that
does not, then the facts read from a real session."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from exams import review
from exams import warnings as rules
from exams.models import Booking, QualityWarning, WarningRule
from exams.warnings import (
    CandidateFacts,
    ComponentMarks,
    DoubleMark,
    Finding,
    SessionRate,
    grader_disagreement_warnings,
    heaping_warnings,
    identical_scores_warnings,
    late_check_in_warnings,
    pass_rate_warnings,
)

D = Decimal
THEORY = ComponentMarks("theory", "理论考试", (D(60), D(80)))


# (a) Pass rate --------------------------------------------------------------------------


def test_pass_rate_25_points_from_the_other_sessions_fires():
    others = [SessionRate("S1", 20, 12), SessionRate("S2", 20, 14)]  # 60 %, 70 %: mean 65
    (finding,) = pass_rate_warnings(candidates=20, passed=19, others=others)
    assert finding == Finding(
        WarningRule.PASS_RATE,
        "session",
        {
            "candidates": 20,
            "passed": 19,
            "rate": "95.0",
            "mean": "65.0",
            "sd": None,
            "gap": "30.0",
            "sessions": ["S1", "S2"],
        },
        "本场次通过率 95.0%（19/20），高于本计划其他 2 个场次的平均通过率 65.0%，"
        "相差 30.0 个百分点",
    )


def test_pass_rate_within_25_points_of_two_sessions_is_quiet():
    others = [SessionRate("S1", 20, 12), SessionRate("S2", 20, 14)]
    assert pass_rate_warnings(candidates=20, passed=18, others=others) == []  # 90 %: 25 apart


def test_pass_rate_beyond_two_standard_deviations_fires():
    # 60, 62, 64 % (sd 2): 45 % is 17 points below, under 25 but far beyond 2 sd.
    others = [SessionRate(f"S{i}", 50, 30 + i) for i in range(3)]
    (finding,) = pass_rate_warnings(candidates=20, passed=9, others=others)
    assert (finding.detail["sd"], finding.detail["gap"]) == ("2.0", "17.0")
    assert finding.message == (
        "本场次通过率 45.0%（9/20），低于本计划其他 3 个场次的平均通过率 62.0%，"
        "相差 17.0 个百分点（标准差 2.0）"
    )


def test_pass_rate_within_two_standard_deviations_is_quiet():
    others = [SessionRate("S1", 20, 8), SessionRate("S2", 20, 12), SessionRate("S3", 20, 16)]
    assert pass_rate_warnings(candidates=20, passed=8, others=others) == []  # 40 vs 60 ± 20


def test_pass_rate_small_gap_under_a_tiny_deviation_is_quiet():
    others = [SessionRate(f"S{i}", 100, 60) for i in range(3)]  # sd 0
    assert pass_rate_warnings(candidates=20, passed=11, others=others) == []  # 55 %: 5 points


def test_pass_rate_ignores_small_sessions():
    others = [SessionRate("S1", 9, 0), SessionRate("S2", 9, 0)]
    assert pass_rate_warnings(candidates=20, passed=20, others=others) == []
    assert pass_rate_warnings(candidates=9, passed=9, others=[SessionRate("S3", 20, 0)]) == []


# (b) Heaping at a pass mark --------------------------------------------------------------


def test_heaping_just_above_a_pass_mark_fires():
    scores = {"theory": [D(s) for s in [80, 80, 81, 82, 80.5, 79, 70, 90, 95]]}
    (finding,) = heaping_warnings(components=[THEORY], scores=scores)
    assert finding.subject == "theory@80"
    assert finding.detail == {
        "component": "theory",
        "pass_mark": "80",
        "at_or_just_above": 5,
        "just_below": 1,
        "total": 9,
        "upper_window": "80–82",
        "lower_window": "77–79",
    }
    assert (
        finding.message
        == "理论考试成绩在合格线 80 分处堆积：80–82 分 5 人，77–79 分仅 1 人（共 9 人）"
    )


def test_heaping_with_as_many_just_below_is_quiet():
    scores = {"theory": [D(s) for s in [80, 80, 81, 82, 82, 77, 78, 79]]}
    assert heaping_warnings(components=[THEORY], scores=scores) == []


def test_heaping_needs_a_minimum_count():
    scores = {"theory": [D(s) for s in [60, 61, 62, 62]]}
    assert heaping_warnings(components=[THEORY], scores=scores) == []


# (c) Grader pairs that disagree ----------------------------------------------------------


def pairs(n_apart: int, n_close: int, first="li", second="wang"):
    marks = [(70, 80)] * n_apart + [(70, 73)] * n_close
    return [
        DoubleMark(f"T{i:03d}", "practical", first, second, D(a), D(b), D(5))
        for i, (a, b) in enumerate(marks)
    ]


def test_grader_pair_disagreeing_often_fires():
    # The pair is unordered: who marked first does not split it.
    marks = pairs(2, 2) + pairs(1, 1, first="wang", second="li")[0:1]
    (finding,) = grader_disagreement_warnings(
        double_marks=marks, component_names={"practical": "实操考试"}
    )
    assert finding.subject == "practical:li+wang"
    assert finding.detail["tickets"] == ["T000", "T000", "T001"]
    assert finding.message == (
        "实操考试考评员 li 与 wang 双评分歧频繁：5 份中 3 份两评分差超过允许误差 5 分（60.0%）"
    )


def test_grader_pair_within_tolerance_is_quiet():
    # 3 of 10 apart is 30 %: not more than the 30 % threshold.
    assert grader_disagreement_warnings(double_marks=pairs(3, 7)) == []


def test_grader_pair_needs_a_minimum_of_scripts():
    assert grader_disagreement_warnings(double_marks=pairs(4, 0)) == []


# (d) Identical score vectors -------------------------------------------------------------


def cand(ticket, theory, practical=None):
    scores = {"theory": D(theory)}
    if practical is not None:
        scores["practical"] = D(practical)
    return CandidateFacts(ticket, scores=scores)


def test_four_identical_vectors_fire():
    everyone = [cand(f"T{i}", 85, 90) for i in range(4)] + [
        cand(f"U{i}", 60 + i, 70) for i in range(30)
    ]
    (finding,) = identical_scores_warnings(candidates=everyone)
    assert finding.subject == "practical=90,theory=85"
    assert finding.detail == {
        "scores": {"practical": "90", "theory": "85"},
        "count": 4,
        "total": 34,
        "tickets": ["T0", "T1", "T2", "T3"],
    }


def test_three_identical_vectors_in_a_small_session_fire_by_share():
    everyone = [cand(f"T{i}", 85.5, 90) for i in range(3)] + [
        cand(f"U{i}", 60 + i, 70) for i in range(10)
    ]
    (finding,) = identical_scores_warnings(candidates=everyone)
    assert (finding.subject, finding.detail["count"]) == ("practical=90,theory=85.5", 3)


def test_three_identical_vectors_in_a_large_session_are_quiet():
    everyone = [cand(f"T{i}", 85, 90) for i in range(3)] + [
        cand(f"U{i}", 50 + i, 70) for i in range(30)
    ]
    assert identical_scores_warnings(candidates=everyone) == []


def test_identical_single_component_scores_are_quiet():
    assert identical_scores_warnings(candidates=[cand(f"T{i}", 85) for i in range(6)]) == []


# (e) Late check-ins ----------------------------------------------------------------------

STARTS = datetime(2026, 9, 15, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai


def test_check_in_after_the_start_fires():
    check_ins = [
        ("T2", STARTS + timedelta(minutes=12, seconds=5)),
        ("T1", STARTS - timedelta(minutes=30)),
        ("T3", STARTS + timedelta(seconds=30)),
        ("T4", None),
    ]
    (finding,) = late_check_in_warnings(starts_at=STARTS, check_ins=check_ins)
    assert finding.message == "2 名考生在开考时间 09:00 之后签到：T2（迟 13 分钟）、T3（迟 1 分钟）"
    assert [row["ticket"] for row in finding.detail["late"]] == ["T2", "T3"]


def test_check_ins_up_to_the_start_are_quiet():
    check_ins = [("T1", STARTS), ("T2", STARTS - timedelta(minutes=1))]
    assert late_check_in_warnings(starts_at=STARTS, check_ins=check_ins) == []


# Facts from a real session ---------------------------------------------------------------


@pytest.mark.django_db
def test_facts_and_warnings_read_from_a_double_marked_session(monkeypatch):
    from exams.scoring import MarkEntry, marks_enter

    from .factories import PlanFactory, UserFactory, coordinator, eligible_case, marking_session

    coord = coordinator()
    li = UserFactory(username="li", roles=["grader"])
    wang = UserFactory(username="wang", roles=["grader"])
    chief = UserFactory(username="chief", roles=["grader"])
    plan = PlanFactory(double_marked=("practical",))
    cases = [eligible_case(coord, plan) for _ in range(5)]
    session, bookings = marking_session(
        coord,
        plan,
        cases,
        staff=[
            (li, "grader", "theory"),
            (li, "grader", "practical"),
            (wang, "grader", "practical"),
            (chief, "chief_grader", "practical"),
        ],
    )
    tickets = [bookings[c.pk].ticket_number for c in cases]
    marks_enter(
        actor=li,
        session=session,
        component="theory",
        entries=[MarkEntry(t, s) for t, s in zip(tickets, [80, 81, 82, 80, 81], strict=True)],
    )
    first = [60, 70, 80, 90, 75]
    second = [70, 72, 90, 91, 85]  # three of five more than 5 apart
    marks_enter(
        actor=li,
        session=session,
        component="practical",
        entries=[MarkEntry(t, s, "first") for t, s in zip(tickets, first, strict=True)],
    )
    marks_enter(
        actor=wang,
        session=session,
        component="practical",
        entries=[MarkEntry(t, s, "second") for t, s in zip(tickets, second, strict=True)],
    )
    marks_enter(
        actor=chief,
        session=session,
        component="practical",
        entries=[MarkEntry(tickets[i], 68, "arbitration") for i in (0, 2, 4)],
    )
    Booking.objects.filter(session=session).update(
        checked_in_at=review._starts_at(session) - timedelta(minutes=5)
    )
    monkeypatch.setattr(rules, "HEAPING_MIN_COUNT", 5)
    review.session_submit_for_review(actor=coord, session=session)

    facts = review.session_facts(session)
    assert [c.code for c in facts.components] == ["theory", "practical"]
    assert facts.components[0].pass_marks == (D(60), D(80))
    assert [dm.first_grader + "/" + dm.second_grader for dm in facts.double_marks] == [
        "li/wang"
    ] * 5
    assert [c.scores["practical"] for c in facts.candidates] == [
        D(68),
        D(71),
        D(68),
        D("90.5"),
        D(68),
    ]
    assert [(w.rule, w.subject) for w in QualityWarning.objects.filter(session=session)] == [
        (WarningRule.HEAPING, "theory@80"),
        (WarningRule.GRADER_DISAGREEMENT, "practical:li+wang"),
    ]


@pytest.mark.django_db
def test_pass_rate_compares_with_the_plans_other_sessions(monkeypatch):
    from exams.scoring import MarkEntry, marks_enter

    from .factories import PlanFactory, UserFactory, coordinator, eligible_case, marking_session

    monkeypatch.setattr(rules, "PASS_RATE_MIN_CANDIDATES", 2)
    coord = coordinator()
    grader = UserFactory(username="g", roles=["grader"])
    plan = PlanFactory()

    def session_with(scores, start):
        from datetime import time

        cases = [eligible_case(coord, plan) for _ in scores]
        session, bookings = marking_session(
            coord,
            plan,
            cases,
            staff=[(grader, "grader", "theory"), (grader, "grader", "practical")],
            start=time(start, 0),
            end=time(start + 1, 0),
        )
        for code in ("theory", "practical"):
            marks_enter(
                actor=grader,
                session=session,
                component=code,
                entries=[
                    MarkEntry(bookings[c.pk].ticket_number, s)
                    for c, s in zip(cases, scores, strict=True)
                ],
            )
        Booking.objects.filter(session=session).update(
            checked_in_at=review._starts_at(session) - timedelta(minutes=5)
        )
        return review.session_submit_for_review(actor=coord, session=session)

    first = session_with([50, 51, 52, 70], 8)  # 25 % pass: no peers yet, no warning
    assert QualityWarning.objects.filter(session=first).count() == 0
    second = session_with([70, 71, 72, 73], 14)  # 100 %: 75 points above
    warning = QualityWarning.objects.get(session=second)
    assert warning.message == (
        "本场次通过率 100.0%（4/4），高于本计划其他 1 个场次的平均通过率 25.0%，相差 75.0 个百分点"
    )
    assert warning.detail["sessions"] == [first.code]
