"""The locking path of mark entry and finalising on PostgreSQL: two threads, each on its
own connection, released together by a barrier. Every write locks the session row
first (exams.scoring, exams.results), so the second writer sees the first one's work."""

import threading
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from cases.models import CaseStatus
from exams import results, scoring
from exams.models import ComponentScore, Mark

from .factories import PlanFactory, UserFactory, coordinator, eligible_case, marking_session

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def race(*calls) -> list:
    """Run `calls` at once, one thread each; their outcomes in call order: the return
    value, or the ValidationError's message dict."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            outcomes[index] = call()
        except ValidationError as exc:
            outcomes[index] = exc.message_dict
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def assert_chain_intact():
    assert list(audit_chain_verify()) == [AuditEvent.objects.count()]


def test_two_graders_racing_for_the_single_slot_leave_one_audited_mark(on_postgresql):
    coord = coordinator()
    graders = [UserFactory(username=f"g{i}", roles=["grader"]) for i in range(2)]
    plan = PlanFactory()
    case = eligible_case(coord, plan)
    _, bookings = marking_session(
        coord, plan, [case], staff=[(g, "grader", "theory") for g in graders]
    )
    booking = bookings[case.pk]
    scores = (70, 90)

    outcomes = race(
        *[
            lambda grader=grader, score=score: scoring.mark_enter(
                actor=grader, booking=booking, component="theory", score=score, slot="single"
            )
            for grader, score in zip(graders, scores, strict=True)
        ]
    )

    mark = Mark.objects.get(booking=booking, component__code="theory")
    winner = next(i for i, outcome in enumerate(outcomes) if isinstance(outcome, Mark))
    loser = 1 - winner
    assert (outcomes[winner].pk, mark.grader_id, mark.slot, mark.score) == (
        mark.pk,
        graders[winner].pk,
        "single",
        Decimal(scores[winner]),
    )
    # The later writer waited for the session lock, then found the slot taken.
    assert outcomes[loser] == {"slot": ["该考生的单评已由其他考评员录入"]}
    events = AuditEvent.objects.filter(object_type="exams.mark")
    assert [(e.action, e.object_id, e.actor_id) for e in events] == [
        ("mark.enter", str(mark.pk), graders[winner].pk)
    ]
    assert events.get().changes["score"] == {"before": None, "after": f"{scores[winner]}.0"}
    assert_chain_intact()


def test_double_marks_entered_together_both_land_and_finalise_once(on_postgresql):
    coord = coordinator()
    other_coord = coordinator(username="coord2")
    graders = [UserFactory(username=f"g{i}", roles=["grader"]) for i in range(3)]
    plan = PlanFactory(double_marked=("practical",))
    case = eligible_case(coord, plan)
    session, bookings = marking_session(
        coord,
        plan,
        [case],
        staff=[
            (graders[0], "grader", "theory"),
            (graders[1], "grader", "practical"),
            (graders[2], "grader", "practical"),
        ],
    )
    booking = bookings[case.pk]
    scoring.mark_enter(actor=graders[0], booking=booking, component="theory", score=88)

    # No slot given: each takes the next free one, which the lock makes one each.
    outcomes = race(
        lambda: scoring.mark_enter(
            actor=graders[1], booking=booking, component="practical", score=80
        ),
        lambda: scoring.mark_enter(
            actor=graders[2], booking=booking, component="practical", score=83
        ),
    )
    assert all(isinstance(outcome, Mark) for outcome in outcomes)
    marks = Mark.objects.filter(booking=booking, component__code="practical")
    assert sorted(marks.values_list("slot", flat=True)) == ["first", "second"]
    assert {(m.grader_id, m.score) for m in marks} == {
        (graders[1].pk, Decimal("80.0")),
        (graders[2].pk, Decimal("83.0")),
    }
    assert AuditEvent.objects.filter(action="mark.enter").count() == 3

    # Two coordinators finalising together: the second waits for the session lock and
    # finds the rows written, so one row per component, one results event, one
    # transition.
    summaries = race(
        lambda: results.session_finalise(actor=coord, session=session),
        lambda: results.session_finalise(actor=other_coord, session=session),
    )
    assert [s.finalised for s in summaries] == [[booking.ticket_number]] * 2
    rows = ComponentScore.objects.filter(case=case).order_by("component_id")
    assert [(r.component.code, r.status, r.score, r.method) for r in rows] == [
        ("theory", "final", Decimal("88.0"), "single"),
        ("practical", "final", Decimal("81.5"), "mean"),
    ]
    case.refresh_from_db()
    assert case.status == CaseStatus.SCORED
    case_events = AuditEvent.objects.filter(object_type="cases.case", object_id=str(case.pk))
    assert case_events.filter(action="case.results").count() == 1
    assert case_events.filter(action="case.finalise_scores").count() == 1
    assert_chain_intact()
