"""The results path costs the same number of queries for a session of 3 bookings as for
one of 15, the case transitions examined -> scored included (cases.services.
cases_finalise_scores, one batch per session), whose cost is measured here and bounded."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases import services as case_services
from cases.models import Case, CaseStatus
from exams import results, scoring
from exams.models import CertificateResult, ComponentScore

from .factories import (
    PlanFactory,
    UserFactory,
    coordinator,
    eligible_case,
    hold,
    marking_session,
    register,
)

pytestmark = pytest.mark.django_db

FEW, MANY = 3, 15


# cases.services.cases_finalise_scores as measured: savepoint, the cases re-read under
# lock in one query, one update for all, the audit events (savepoint, chain head, insert,
# chain head update, release) and the release. On PostgreSQL the events' insert is a
# COPY on psycopg's own cursor (config.bulk.insert_rows), which Django's query capture
# does not see: one fewer there.
def transition_queries() -> int:
    return 8 if connection.vendor == "postgresql" else 9


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def graders():
    return [UserFactory(username=f"g{i}", roles=["grader"]) for i in range(3)]


@pytest.fixture
def plan():
    """MEM-WELD-FC with the practical double-marked."""
    return PlanFactory(double_marked=("practical",))


def sitting(coord, plan, graders, n):
    """A marking session of `n` bookings: the first candidate holds SAMR-WELD (exempt
    from training and theory, sits the practical only), the others sit both."""
    exempt = register(coord, name="免考生")
    hold(coord, exempt, "SAMR-WELD")
    cases = [eligible_case(coord, plan, candidate=exempt)]
    cases += [eligible_case(coord, plan, name=f"考生{i}") for i in range(n - 1)]
    staff = [
        (graders[0], "grader", "theory"),
        (graders[1], "grader", "practical"),
        (graders[2], "grader", "practical"),
    ]
    session, bookings = marking_session(coord, plan, cases, staff=staff)
    return session, list(bookings.values())


def mark_theory(graders, bookings, score=88, reason=""):
    for booking in bookings:
        if booking.components.filter(code="theory").exists():
            scoring.mark_enter(
                actor=graders[0], booking=booking, component="theory", score=score, reason=reason
            )


def mark_practical(graders, bookings):
    for booking in bookings:
        for grader, score in ((graders[1], 80), (graders[2], 82)):
            scoring.mark_enter(actor=grader, booking=booking, component="practical", score=score)


def queries(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured)


@pytest.fixture
def transitions(monkeypatch):
    """(cases moved, queries) of each cases_finalise_scores call, in call order."""
    costs: list[tuple[int, int]] = []
    transition = case_services.cases_finalise_scores

    def counted(**kwargs):
        with CaptureQueriesContext(connection) as captured:
            cases = transition(**kwargs)
        costs.append((len(cases), len(captured)))
        return cases

    monkeypatch.setattr(case_services, "cases_finalise_scores", counted)
    return costs


def test_marking_outstanding_reads_four_queries_for_any_number_of_bookings(
    coord, plan, graders, django_assert_num_queries
):
    few, few_bookings = sitting(coord, plan, graders, FEW)
    many, many_bookings = sitting(coord, plan, graders, MANY)
    mark_theory(graders, few_bookings + many_bookings)
    for session, size in ((few, FEW), (many, MANY)):
        # Bookings, their components, the plan components, the marks.
        with django_assert_num_queries(4):
            outstanding = results.session_marking_outstanding(session)
        assert [item["message"] for item in outstanding] == ["「实操考试」尚缺一评、二评"] * size


def test_results_page_queries_do_not_grow_with_bookings(coord, plan, graders, client):
    few, few_bookings = sitting(coord, plan, graders, FEW)
    many, many_bookings = sitting(coord, plan, graders, MANY)
    mark_theory(graders, few_bookings + many_bookings)
    client.force_login(coord)

    def page(session, size):
        def get():
            response = client.get(reverse("exams:session-results", args=[session.pk]))
            assert response.status_code == 200
            content = response.content.decode()
            assert content.count("data-ticket=") == size
            page.outstanding = content.count("尚缺一评、二评")

        return get

    # While marking: the outstanding list names every booking.
    assert queries(page(few, FEW)) == queries(page(many, MANY))
    assert page.outstanding == MANY
    # Scored: every row shows its component scores and certificate results.
    mark_practical(graders, few_bookings + many_bookings)
    results.session_finalise(actor=coord, session=few)
    results.session_finalise(actor=coord, session=many)
    assert queries(page(few, FEW)) == queries(page(many, MANY))
    assert page.outstanding == 0


def test_session_finalise_costs_only_the_case_transitions_per_booking(
    coord, plan, graders, transitions
):
    few, few_bookings = sitting(coord, plan, graders, FEW)
    many, many_bookings = sitting(coord, plan, graders, MANY)
    mark_theory(graders, few_bookings + many_bookings)
    mark_practical(graders, few_bookings + many_bookings)

    def finalise(session):
        transitions.clear()
        count = queries(lambda: results.session_finalise(actor=coord, session=session))
        return count - sum(cost for _, cost in transitions), list(transitions)

    few_rest, few_transitions = finalise(few)
    many_rest, many_transitions = finalise(many)
    # One batch per session moves every case.
    assert (few_transitions, many_transitions) == (
        [(FEW, transition_queries())],
        [(MANY, transition_queries())],
    )
    assert few_rest == many_rest
    # Savepoints (4), session lock, bookings, components, plan components, marks, cases
    # locked, exemptions, scores, certificate results, certificates, pass marks, two
    # inserts, the audit append (5).
    assert many_rest <= 22

    scores = ComponentScore.objects.filter(case__bookings__session=many)
    # The exempt candidate: training and theory exempt, practical final; the others
    # theory and practical final (training is recorded, not examined).
    assert scores.count() == 3 + 2 * (MANY - 1)
    assert set(scores.filter(component__code="practical").values_list("score", "method")) == {
        (81, "mean")
    }
    assert CertificateResult.objects.filter(case__bookings__session=many).count() == 2 * MANY
    statuses = Case.objects.filter(bookings__session=many).values_list("status", flat=True)
    assert sorted(statuses) == [CaseStatus.SCORED] * MANY

    # Again, nothing changed: no transition, no write beyond the reads.
    assert finalise(few) == finalise(many)
    assert transitions == []
    # After a correction of every theory mark the scored cases' rows are rewritten.
    mark_theory(graders, few_bookings + many_bookings, score=90, reason="复核更正")
    assert finalise(few) == finalise(many)
    theory = scores.filter(component__code="theory", status="final")
    assert list(theory.values_list("score", flat=True)) == [90] * (MANY - 1)
