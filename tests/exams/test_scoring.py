"""Marks: grader scope, score validation, double-blind marking with arbitration, the
lock at review, audit, the grid batch and the marking API."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework.test import APIClient

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases.models import PlanComponent
from exams import results, scoring
from exams.models import Mark, SessionStatus

from .factories import PlanFactory, UserFactory, coordinator, eligible_case, hold, marking_session
from .factories import register as register_candidate

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def graders():
    return {
        name: UserFactory(username=name, roles=["grader"])
        for name in ("theory1", "prac1", "prac2", "chief", "outsider")
    }


@pytest.fixture
def plan():
    return PlanFactory(double_marked=("practical",))


@pytest.fixture
def marking(coord, graders, plan):
    """A MEM-WELD-FC session in marking: three candidates checked in (the third holds
    SAMR-WELD: theory and training exempt, row 7), one absent."""
    first = eligible_case(coord, plan, name="张三")
    second = eligible_case(coord, plan, name="李四")
    candidate = register_candidate(coord, name="王五")
    hold(coord, candidate, "SAMR-WELD")
    exempt = eligible_case(coord, plan, candidate=candidate)
    absent = eligible_case(coord, plan, name="赵六")
    session, bookings = marking_session(
        coord,
        plan,
        [first, second, exempt, absent],
        absent=[absent],
        staff=[
            (graders["theory1"], "grader", "theory"),
            (graders["prac1"], "grader", "practical"),
            (graders["prac2"], "grader", "practical"),
            (graders["chief"], "chief_grader", "practical"),
        ],
    )
    return {
        "session": session,
        "first": bookings[first.pk],
        "second": bookings[second.pk],
        "exempt": bookings[exempt.pk],
        "absent": bookings[absent.pk],
    }


def enter(grader, booking, component, score, **kwargs):
    return scoring.mark_enter(
        actor=grader, booking=booking, component=component, score=score, **kwargs
    )


# Single marking ------------------------------------------------------------------------


def test_single_mark_is_entered_and_audited(marking, graders):
    mark = enter(graders["theory1"], marking["first"], "theory", "85.5")
    assert (mark.slot, mark.score, mark.grader) == ("single", Decimal("85.5"), graders["theory1"])
    event = AuditEvent.objects.get(action="mark.enter")
    assert event.object_id == str(mark.pk)
    assert event.changes == {
        "booking": {"before": None, "after": marking["first"].ticket_number},
        "component": {"before": None, "after": "theory"},
        "slot": {"before": None, "after": "single"},
        "score": {"before": None, "after": "85.5"},
    }


@pytest.mark.parametrize(
    ("score", "message"),
    [
        (100.5, "分数不能超过满分 100 分"),
        ("101", "分数不能超过满分 100 分"),
        (-1, "分数不能为负数"),
        ("八十", "分数须为数字"),
        ("abc", "分数须为数字"),
        (True, "分数须为数字"),
        ("NaN", "分数须为数字"),
        ("", "请填写分数"),
        ("85.25", "分数最多保留一位小数"),
    ],
)
def test_bad_score_is_refused_on_the_score_field(marking, graders, score, message):
    with pytest.raises(ValidationError) as info:
        enter(graders["theory1"], marking["first"], "theory", score)
    assert info.value.message_dict == {"score": [message]}
    assert Mark.objects.count() == 0
    assert AuditEvent.objects.filter(action="mark.enter").count() == 0


def test_score_at_the_maximum_and_zero_are_accepted(marking, graders):
    assert enter(graders["theory1"], marking["first"], "theory", 100).score == Decimal("100.0")
    assert enter(graders["theory1"], marking["second"], "theory", 0).score == Decimal("0.0")


def test_score_above_a_lower_plan_maximum_is_refused(marking, graders, plan):
    PlanComponent.objects.filter(plan=plan, component__code="theory").update(max_score=50)
    with pytest.raises(ValidationError) as info:
        enter(graders["theory1"], marking["first"], "theory", 51)
    assert info.value.message_dict == {"score": ["分数不能超过满分 50 分"]}


def test_score_for_an_exempt_component_is_refused(marking, graders):
    with pytest.raises(ValidationError) as info:
        enter(graders["theory1"], marking["exempt"], "theory", 90)
    assert info.value.message_dict == {
        "component": ["考生免考「理论考试」（互认序号 7），不能录入成绩"]
    }
    assert Mark.objects.count() == 0


def test_grader_not_assigned_to_the_session_is_refused(marking, graders):
    with pytest.raises(PermissionDenied) as info:
        enter(graders["outsider"], marking["first"], "theory", 80)
    code = marking["session"].code
    assert str(info.value) == f"您不是场次 {code}「理论考试」的考评员，不能评分"
    assert Mark.objects.count() == 0


def test_grader_of_another_component_is_refused(marking, graders):
    with pytest.raises(PermissionDenied):
        enter(graders["prac1"], marking["first"], "theory", 80)


def test_user_without_the_grader_role_is_refused(marking, coord):
    with pytest.raises(PermissionDenied) as info:
        enter(coord, marking["first"], "theory", 80)
    assert str(info.value) == "需要以下角色之一：考评员"


def test_absent_candidate_cannot_be_marked(marking, graders):
    with pytest.raises(StateConflict) as info:
        enter(graders["theory1"], marking["absent"], "theory", 80)
    ticket = marking["absent"].ticket_number
    assert info.value.message == f"准考证号 {ticket} 的状态为「缺考」，不能评分"


def test_component_the_session_does_not_examine_is_refused(marking, graders):
    with pytest.raises(ValidationError) as info:
        enter(graders["theory1"], marking["first"], "training", 80)
    code = marking["session"].code
    assert info.value.message_dict == {"component": [f"科目「training」不是场次 {code} 的考试科目"]}


def test_changing_a_mark_requires_a_reason(marking, graders):
    enter(graders["theory1"], marking["first"], "theory", 70)
    with pytest.raises(ValidationError) as info:
        enter(graders["theory1"], marking["first"], "theory", 72)
    assert info.value.message_dict == {"reason": ["修改已录入的分数须填写理由"]}
    assert Mark.objects.get().score == Decimal("70.0")


def test_changing_a_mark_is_audited_with_before_after_and_reason(marking, graders):
    mark = enter(graders["theory1"], marking["first"], "theory", 70)
    enter(graders["theory1"], marking["first"], "theory", 72, reason="漏计第5题")
    mark.refresh_from_db()
    assert mark.score == Decimal("72.0")
    event = AuditEvent.objects.get(action="mark.change")
    assert (event.object_id, event.reason) == (str(mark.pk), "漏计第5题")
    assert event.changes == {"score": {"before": "70.0", "after": "72.0"}}


def test_sending_the_same_score_again_changes_nothing(marking, graders):
    enter(graders["theory1"], marking["first"], "theory", 70)
    mark = enter(graders["theory1"], marking["first"], "theory", "70.0")
    assert mark.score == Decimal("70.0")
    assert AuditEvent.objects.filter(action__startswith="mark.").count() == 1


def test_another_grader_cannot_overwrite_a_single_mark(marking, graders, coord):
    other = UserFactory(username="theory2", roles=["grader"])
    from exams.sessions import session_assign_staff

    session_assign_staff(
        actor=coord, session=marking["session"], user=other, role="grader", component="theory"
    )
    enter(graders["theory1"], marking["first"], "theory", 70)
    with pytest.raises(ValidationError) as info:
        enter(other, marking["first"], "theory", 90, reason="复核")
    assert info.value.message_dict == {"slot": ["该考生的单评已由其他考评员录入"]}


def _lock(marking, graders, coord):
    """Mark everything, finalise and submit the session for review."""
    from exams.review import session_submit_for_review

    for key in ("first", "second"):
        enter(graders["theory1"], marking[key], "theory", 85)
    for key in ("first", "second", "exempt"):
        enter(graders["prac1"], marking[key], "practical", 80)
        enter(graders["prac2"], marking[key], "practical", 82)
    results.session_finalise(actor=coord, session=marking["session"])
    return session_submit_for_review(actor=coord, session=marking["session"])


def test_changing_a_locked_score_is_refused(marking, graders, coord):
    session = _lock(marking, graders, coord)
    assert session.status == SessionStatus.IN_REVIEW
    with pytest.raises(StateConflict) as info:
        enter(graders["theory1"], marking["first"], "theory", 90, reason="复核")
    assert info.value.message == (
        f"场次 {session.code} 当前状态为「质量审核中」，成绩已锁定，不能录入或修改"
    )
    assert Mark.objects.get(booking=marking["first"], component__code="theory").score == 85


def test_marking_before_the_session_closes_is_refused(coord, graders, plan):
    from exams.scheduling import booking_create

    from .factories import exam_session

    session = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=session, case=eligible_case(coord, plan))
    with pytest.raises(StateConflict) as info:
        enter(graders["theory1"], booking, "theory", 80)
    assert info.value.message == f"场次 {session.code} 当前状态为「开放编排」，尚未进入评分"


# Double-blind marking --------------------------------------------------------------------


def test_double_marking_gives_two_graders_the_first_and_second_slots(marking, graders):
    first = enter(graders["prac1"], marking["first"], "practical", 80)
    second = enter(graders["prac2"], marking["first"], "practical", 84)
    assert (first.slot, second.slot) == ("first", "second")


def test_the_same_grader_may_not_take_both_slots(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 80)
    with pytest.raises(ValidationError) as info:
        enter(graders["prac1"], marking["first"], "practical", 80, slot="second")
    assert info.value.message_dict == {"slot": ["同一考评员不能同时录入一评和二评"]}


def test_a_grader_re_entering_changes_their_own_slot(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 80)
    enter(graders["prac2"], marking["first"], "practical", 84)
    mark = enter(graders["prac1"], marking["first"], "practical", 81, reason="复核")
    assert (mark.slot, mark.score) == ("first", Decimal("81.0"))
    assert Mark.objects.filter(booking=marking["first"]).count() == 2


def test_single_slot_is_refused_for_a_double_marked_component(marking, graders):
    with pytest.raises(ValidationError) as info:
        enter(graders["prac1"], marking["first"], "practical", 80, slot="single")
    assert info.value.message_dict == {"slot": ["「实操考试」为双盲评，评次须为一评、二评或仲裁"]}


def test_chief_grader_arbitrates_marks_beyond_the_tolerance(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 70)
    enter(graders["prac2"], marking["first"], "practical", 80)
    mark = enter(graders["chief"], marking["first"], "practical", 76)
    assert (mark.slot, mark.score) == ("arbitration", Decimal("76.0"))


def test_marks_under_an_arbitration_cannot_change(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 50)
    enter(graders["prac2"], marking["first"], "practical", 90)
    enter(graders["chief"], marking["first"], "practical", 85)
    with pytest.raises(ValidationError) as info:
        enter(graders["prac1"], marking["first"], "practical", 88, reason="复核后改分")
    assert info.value.message_dict == {"score": ["该考生本科目已仲裁，一评、二评分数不能再修改"]}
    assert Mark.objects.get(booking=marking["first"], slot="first").score == Decimal("50.0")


def test_arbitration_within_the_tolerance_is_refused(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 70)
    enter(graders["prac2"], marking["first"], "practical", 75)
    with pytest.raises(ValidationError) as info:
        enter(graders["chief"], marking["first"], "practical", 72)
    assert info.value.message_dict == {"slot": ["一评、二评分差未超过允许误差 5.0 分，无需仲裁"]}


def test_arbitration_before_both_marks_is_refused(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 70)
    with pytest.raises(ValidationError) as info:
        enter(graders["chief"], marking["first"], "practical", 72)
    assert info.value.message_dict == {"slot": ["一评、二评尚未全部录入，不能仲裁"]}


def test_a_grader_who_is_not_chief_cannot_arbitrate(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 60)
    enter(graders["prac2"], marking["first"], "practical", 90)
    with pytest.raises(PermissionDenied) as info:
        enter(graders["prac1"], marking["first"], "practical", 75, slot="arbitration")
    assert str(info.value) == "仅主考评员可以仲裁「实操考试」"


@pytest.mark.parametrize(
    ("marks", "expected"),
    [
        ({"first": "72.5", "second": "75.0"}, (Decimal("73.8"), "mean")),
        ({"first": "70", "second": "75"}, (Decimal("72.5"), "mean")),
        ({"first": "70", "second": "75.1"}, None),
        ({"first": "70", "second": "80", "arbitration": "78"}, (Decimal("78"), "arbitrated")),
        ({"first": "70"}, None),
    ],
)
def test_final_score_of_a_double_marked_component(plan, marks, expected):
    pc = PlanComponent.objects.get(plan=plan, component__code="practical")
    given = {slot: Decimal(value) for slot, value in marks.items()}
    assert scoring.mark_final(pc, given) == expected


# The grid batch ------------------------------------------------------------------------


def test_batch_is_written_when_every_entry_is_valid(marking, graders):
    counts = scoring.marks_enter(
        actor=graders["theory1"],
        session=marking["session"],
        component="theory",
        entries=[
            {"ticket_number": marking["first"].ticket_number, "score": 81},
            {"ticket_number": marking["second"].ticket_number, "score": "79.5"},
        ],
    )
    assert counts == {"entered": 2, "changed": 0, "unchanged": 0}
    assert sorted(Mark.objects.values_list("score", flat=True)) == [
        Decimal("79.5"),
        Decimal("81.0"),
    ]


def test_batch_with_one_bad_entry_writes_nothing(marking, graders):
    with pytest.raises(scoring.MarkBatchError) as info:
        scoring.marks_enter(
            actor=graders["theory1"],
            session=marking["session"],
            component="theory",
            entries=[
                {"ticket_number": marking["first"].ticket_number, "score": 81},
                {"ticket_number": marking["second"].ticket_number, "score": 181},
                {"ticket_number": "NOPE", "score": 50},
                {"ticket_number": marking["exempt"].ticket_number, "score": 50},
            ],
        )
    assert info.value.errors == [
        {
            "index": 1,
            "ticket_number": marking["second"].ticket_number,
            "field": "score",
            "message": "分数不能超过满分 100 分",
        },
        {
            "index": 2,
            "ticket_number": "NOPE",
            "field": "ticket_number",
            "message": "准考证号 NOPE 不是本场次的考生",
        },
        {
            "index": 3,
            "ticket_number": marking["exempt"].ticket_number,
            "field": "component",
            "message": "考生免考「理论考试」（互认序号 7），不能录入成绩",
        },
    ]
    assert Mark.objects.count() == 0
    assert AuditEvent.objects.filter(action="mark.enter").count() == 0


def test_batch_by_an_unassigned_grader_is_refused_as_a_whole(marking, graders):
    with pytest.raises(PermissionDenied):
        scoring.marks_enter(
            actor=graders["outsider"],
            session=marking["session"],
            component="theory",
            entries=[{"ticket_number": marking["first"].ticket_number, "score": 81}],
        )


# API -----------------------------------------------------------------------------------


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_sheet_shows_only_the_graders_own_marks(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 70)
    enter(graders["prac2"], marking["first"], "practical", 90)
    session = marking["session"]
    response = client_for(graders["prac2"]).get(
        "/api/v1/marking/sheet/", {"session": session.pk, "component": "practical"}
    )
    assert response.status_code == 200
    rows = {row["ticket_number"]: row for row in response.json()}
    assert rows[marking["first"].ticket_number] == {
        "booking": marking["first"].pk,
        "ticket_number": marking["first"].ticket_number,
        "seat_number": marking["first"].seat_number,
        "slot": "second",
        "score": "90.0",
    }
    assert rows[marking["second"].ticket_number]["slot"] == "first"
    assert rows[marking["second"].ticket_number]["score"] is None
    assert marking["absent"].ticket_number not in rows
    assert "70.0" not in response.content.decode()


def test_api_sheet_for_the_chief_flags_arbitration_without_the_marks(marking, graders):
    enter(graders["prac1"], marking["first"], "practical", 60)
    enter(graders["prac2"], marking["first"], "practical", 90)
    response = client_for(graders["chief"]).get(
        "/api/v1/marking/sheet/", {"session": marking["session"].pk, "component": "practical"}
    )
    row = next(r for r in response.json() if r["ticket_number"] == marking["first"].ticket_number)
    assert (row["slot"], row["score"], row["needs_arbitration"]) == ("arbitration", None, True)
    assert "60.0" not in response.content.decode()
    assert "90.0" not in response.content.decode()


def test_api_sheet_of_an_unassigned_grader_is_not_found(marking, graders):
    response = client_for(graders["outsider"]).get(
        "/api/v1/marking/sheet/", {"session": marking["session"].pk, "component": "theory"}
    )
    assert response.status_code == 404


def test_api_sheet_of_an_unassigned_component_is_not_found(marking, graders):
    response = client_for(graders["theory1"]).get(
        "/api/v1/marking/sheet/", {"session": marking["session"].pk, "component": "practical"}
    )
    assert response.status_code == 404


def test_api_sheet_refuses_other_roles(marking, coord):
    response = client_for(coord).get(
        "/api/v1/marking/sheet/", {"session": marking["session"].pk, "component": "theory"}
    )
    assert response.status_code == 403


def test_api_assignments_list_the_graders_sessions(marking, graders):
    response = client_for(graders["theory1"]).get("/api/v1/marking/assignments/")
    assert response.status_code == 200
    assert [(r["session"], r["component"], r["roles"]) for r in response.json()] == [
        (marking["session"].pk, "theory", ["grader"])
    ]


def test_api_post_one_mark(marking, graders):
    response = client_for(graders["theory1"]).post(
        "/api/v1/marking/marks/",
        {
            "session": marking["session"].pk,
            "component": "theory",
            "ticket_number": marking["first"].ticket_number,
            "score": 88,
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["slot"] == "single"
    assert response.json()["score"] == "88.0"


def test_api_post_a_score_above_the_maximum_is_400_on_score(marking, graders):
    response = client_for(graders["theory1"]).post(
        "/api/v1/marking/marks/",
        {
            "session": marking["session"].pk,
            "component": "theory",
            "ticket_number": marking["first"].ticket_number,
            "score": 120,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"score": ["分数不能超过满分 100 分"]}


def test_api_post_by_an_unassigned_grader_is_403(marking, graders):
    response = client_for(graders["outsider"]).post(
        "/api/v1/marking/marks/",
        {
            "session": marking["session"].pk,
            "component": "theory",
            "ticket_number": marking["first"].ticket_number,
            "score": 80,
        },
        format="json",
    )
    assert response.status_code == 403
    assert Mark.objects.count() == 0


def test_api_post_to_a_locked_session_is_409(marking, graders, coord):
    _lock(marking, graders, coord)
    response = client_for(graders["theory1"]).post(
        "/api/v1/marking/marks/",
        {
            "session": marking["session"].pk,
            "component": "theory",
            "ticket_number": marking["first"].ticket_number,
            "score": 90,
            "reason": "复核",
        },
        format="json",
    )
    assert response.status_code == 409


def test_api_batch_is_all_or_nothing(marking, graders):
    payload = {
        "session": marking["session"].pk,
        "component": "theory",
        "marks": [
            {"ticket_number": marking["first"].ticket_number, "score": 81},
            {"ticket_number": marking["second"].ticket_number, "score": "x"},
        ],
    }
    response = client_for(graders["theory1"]).post("/api/v1/marking/marks/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "index": 1,
            "ticket_number": marking["second"].ticket_number,
            "field": "score",
            "message": "分数须为数字",
        }
    ]
    assert Mark.objects.count() == 0
    payload["marks"][1]["score"] = 77
    response = client_for(graders["theory1"]).post("/api/v1/marking/marks/", payload, format="json")
    assert response.status_code == 201
    assert response.json() == {"entered": 2, "changed": 0, "unchanged": 0}
