"""The batch services of cases.services, each on its own: exactly the given rows move,
one audit event per object like the single service's, all or nothing, roles, source
states, and a query count that does not grow with the batch. Transitions common to
every batch are checked per transition through TRANSITIONS; the end-to-end paths that
call them are tested in tests/exams and tests/issuance."""

import itertools
from dataclasses import dataclass
from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases import services
from cases.models import Candidate, Case, CaseStatus

from .factories import PlanFactory, UserFactory, coordinator, hold, make_id_number, register

pytestmark = pytest.mark.django_db

ON = date(2026, 6, 1)  # application date
RESULT_DAY = date(2026, 9, 20)
DETAIL = {"session": "20260915-01", "seat": 7, "ticket": "1-20260915-01-007"}
MISSING = 10**9
S = CaseStatus


@pytest.fixture
def plan():
    return PlanFactory()


@dataclass
class Staff:
    coordinator: object
    grader: object
    reviewer: object
    officer: object

    def fresh(self, role: str):
        """The user re-read: no role cache carried over from an earlier call."""
        return get_user_model().objects.get(pk=getattr(self, role).pk)


@pytest.fixture
def staff():
    return Staff(
        coordinator=coordinator(),
        grader=UserFactory(username="grader", roles=["grader"]),
        reviewer=UserFactory(username="reviewer", roles=["reviewer"]),
        officer=UserFactory(username="officer", roles=["issuer_officer"]),
    )


# Reaching a state ---------------------------------------------------------------------
# PATH: each state from the one before it, by the batch services (fast for 55 cases) and
# by the single services (for the reference event).

PATH = [S.DRAFT, S.SUBMITTED, S.ELIGIBLE, S.SCHEDULED, S.EXAMINED, S.SCORED, S.PASSED]


def _batch_step(staff, pks, state):
    if state == S.SUBMITTED:
        return services.cases_submit(actor=staff.coordinator, cases=pks, on=ON)
    if state == S.ELIGIBLE:
        return services.cases_approve(actor=staff.coordinator, cases=pks)
    if state == S.SCHEDULED:
        return services.cases_schedule(actor=staff.coordinator, details=dict.fromkeys(pks, DETAIL))
    if state == S.EXAMINED:
        return services.cases_check_in(actor=staff.coordinator, cases=pks)
    if state == S.SCORED:
        return services.cases_finalise_scores(actor=staff.grader, cases=pks)
    if state == S.PASSED:
        return services.cases_publish_results(
            actor=staff.reviewer, passed=dict.fromkeys(pks, True), on=RESULT_DAY
        )
    raise AssertionError(state)


def _single_step(staff, case, state):
    if state == S.SUBMITTED:
        return services.case_submit(actor=staff.coordinator, case=case, on=ON)
    if state == S.ELIGIBLE:
        return services.case_approve(actor=staff.coordinator, case=case)
    if state == S.SCHEDULED:
        return services.case_schedule(actor=staff.coordinator, case=case, detail=DETAIL)
    if state == S.EXAMINED:
        return services.case_check_in(actor=staff.coordinator, case=case)
    if state == S.SCORED:
        return services.case_finalise_scores(actor=staff.grader, case=case)
    if state == S.PASSED:
        return services.case_publish_result(
            actor=staff.reviewer, case=case, passed=True, on=RESULT_DAY
        )
    raise AssertionError(state)


def registration(**overrides) -> services.Registration:
    fields = {
        "id_number": make_id_number(date(1990, 5, 17), "M"),
        "name": "张三",
        "phone": "13800138000",
        "education": "senior",
    }
    return services.Registration(**{**fields, **overrides})


def cases_at(staff, plan, state, n) -> list[int]:
    """The ids of `n` new cases of `plan` in `state` (on PATH), through batch services."""
    candidates = services.candidates_register(
        actor=staff.coordinator, registrations=[registration() for _ in range(n)]
    )
    pks = [
        c.pk
        for c in services.cases_create(actor=staff.coordinator, plan=plan, candidates=candidates)
    ]
    for step in PATH[1 : PATH.index(state) + 1]:
        _batch_step(staff, pks, step)
    assert list(Case.objects.filter(pk__in=pks).values_list("status", flat=True)) == [state] * n
    return pks


def case_at(staff, plan, state) -> Case:
    """One new case of `plan` in `state` (on PATH), through the single services."""
    case = services.case_create(
        actor=staff.coordinator, candidate=register(staff.coordinator), plan=plan
    )
    for step in PATH[1 : PATH.index(state) + 1]:
        case = _single_step(staff, case, step)
    return case


def statuses(pks) -> list[str]:
    by_pk = dict(Case.objects.filter(pk__in=pks).values_list("pk", "status"))
    return [by_pk[pk] for pk in pks]


def shape(event: AuditEvent) -> dict:
    """What an event says, apart from which object it is about and its place in the chain."""
    return {
        "action": event.action,
        "object_type": event.object_type,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "reason": event.reason,
        "changes": event.changes,
        "actor_username": event.actor_username,
    }


def last_event(action: str, pk) -> AuditEvent:
    return AuditEvent.objects.filter(action=action, object_id=str(pk)).latest("seq")


def count_queries(run) -> int:
    with CaptureQueriesContext(connection) as queries:
        run()
    return len(queries.captured_queries)


def conflict(pk, state, target) -> str:
    return f"案件 #{pk} 当前状态为「{S(state).label}」，不能变为「{S(target).label}」"


# The transitions every batch takes the same way ------------------------------------------


@dataclass
class Transition:
    """A batch transition service: from `source` to `target` by a user of `role`;
    `wrong_role` may not; `early` is a state (on PATH) it refuses. `batch(actor, pks)`
    calls the batch service, `single(actor, case)` its single counterpart."""

    name: str
    action: str
    source: str
    target: str
    role: str
    wrong_role: str
    refusal: str
    early: str
    batch: object
    single: object

    def __str__(self):
        return self.name


REASON = "考生申请"
TRANSITIONS = [
    Transition(
        "cases_submit",
        "case.submit",
        S.DRAFT,
        S.SUBMITTED,
        "coordinator",
        "grader",
        "需要以下角色之一：考务人员",
        S.SUBMITTED,
        lambda actor, pks: services.cases_submit(actor=actor, cases=pks, on=ON).submitted,
        lambda actor, case: services.case_submit(actor=actor, case=case, on=ON),
    ),
    Transition(
        "cases_approve",
        "case.approve",
        S.SUBMITTED,
        S.ELIGIBLE,
        "coordinator",
        "grader",
        "需要以下角色之一：考务人员",
        S.DRAFT,
        lambda actor, pks: services.cases_approve(actor=actor, cases=pks).approved,
        lambda actor, case: services.case_approve(actor=actor, case=case),
    ),
    Transition(
        "cases_withdraw",
        "case.withdraw",
        S.ELIGIBLE,
        S.WITHDRAWN,
        "coordinator",
        "grader",
        "需要以下角色之一：考务人员",
        S.EXAMINED,  # DESIGN.md: withdrawal is open up to scheduled
        lambda actor, pks: services.cases_withdraw(actor=actor, reasons=dict.fromkeys(pks, REASON)),
        lambda actor, case: services.case_withdraw(actor=actor, case=case, reason=REASON),
    ),
    Transition(
        "cases_return_for_correction",
        "case.return_for_correction",
        S.SUBMITTED,
        S.RETURNED,
        "coordinator",
        "grader",
        "需要以下角色之一：考务人员",
        S.DRAFT,
        lambda actor, pks: services.cases_return_for_correction(
            actor=actor, reasons=dict.fromkeys(pks, REASON)
        ),
        lambda actor, case: services.case_return_for_correction(
            actor=actor, case=case, reason=REASON
        ),
    ),
    Transition(
        "cases_reject",
        "case.reject",
        S.SUBMITTED,
        S.REJECTED,
        "coordinator",
        "grader",
        "需要以下角色之一：考务人员",
        S.DRAFT,
        lambda actor, pks: services.cases_reject(actor=actor, reasons=dict.fromkeys(pks, REASON)),
        lambda actor, case: services.case_reject(actor=actor, case=case, reason=REASON),
    ),
    Transition(
        "cases_schedule",
        "case.schedule",
        S.ELIGIBLE,
        S.SCHEDULED,
        "coordinator",
        "grader",
        "需要以下角色之一：考务人员",
        S.SUBMITTED,
        lambda actor, pks: services.cases_schedule(actor=actor, details=dict.fromkeys(pks, DETAIL)),
        lambda actor, case: services.case_schedule(actor=actor, case=case, detail=DETAIL),
    ),
    Transition(
        "cases_check_in",
        "case.check_in",
        S.SCHEDULED,
        S.EXAMINED,
        "coordinator",
        "grader",
        "需要以下角色之一：考务人员",
        S.ELIGIBLE,
        lambda actor, pks: services.cases_check_in(actor=actor, cases=pks),
        lambda actor, case: services.case_check_in(actor=actor, case=case),
    ),
    Transition(
        "cases_finalise_scores",
        "case.finalise_scores",
        S.EXAMINED,
        S.SCORED,
        "grader",
        "reviewer",
        "需要以下角色之一：考评员、考务人员",
        S.SCHEDULED,
        lambda actor, pks: services.cases_finalise_scores(actor=actor, cases=pks),
        lambda actor, case: services.case_finalise_scores(actor=actor, case=case),
    ),
    Transition(
        "cases_publish_results-pass",
        "case.pass",
        S.SCORED,
        S.PASSED,
        "reviewer",
        "coordinator",
        "需要以下角色之一：质量督导员",
        S.EXAMINED,
        lambda actor, pks: services.cases_publish_results(
            actor=actor, passed=dict.fromkeys(pks, True), on=RESULT_DAY
        ),
        lambda actor, case: services.case_publish_result(
            actor=actor, case=case, passed=True, on=RESULT_DAY
        ),
    ),
    Transition(
        "cases_publish_results-fail",
        "case.fail",
        S.SCORED,
        S.FAILED,
        "reviewer",
        "coordinator",
        "需要以下角色之一：质量督导员",
        S.EXAMINED,
        lambda actor, pks: services.cases_publish_results(
            actor=actor, passed=dict.fromkeys(pks, False), on=RESULT_DAY
        ),
        lambda actor, case: services.case_publish_result(
            actor=actor, case=case, passed=False, on=RESULT_DAY
        ),
    ),
    Transition(
        "cases_complete",
        "case.complete",
        S.PASSED,
        S.COMPLETED,
        "officer",
        "coordinator",
        "需要以下角色之一：发证机关人员",
        S.SCORED,
        lambda actor, pks: services.cases_complete(actor=actor, cases=pks),
        lambda actor, case: services.case_complete(actor=actor, case=case),
    ),
]
every_transition = pytest.mark.parametrize("t", TRANSITIONS, ids=str)


@every_transition
def test_batch_moves_exactly_the_given_cases(t, staff, plan):
    first, second, untouched = cases_at(staff, plan, t.source, 3)

    moved = t.batch(staff.fresh(t.role), [second, first])

    assert [case.pk for case in moved] == [first, second]
    assert [case.status for case in moved] == [t.target, t.target]
    assert statuses([first, second, untouched]) == [t.target, t.target, t.source]


@every_transition
def test_batch_writes_one_event_per_case(t, staff, plan):
    pks = cases_at(staff, plan, t.source, 3)
    before = AuditEvent.objects.count()

    t.batch(staff.fresh(t.role), pks)

    events = AuditEvent.objects.filter(seq__gt=before).order_by("seq")
    assert [(e.action, e.object_id) for e in events] == [(t.action, str(pk)) for pk in pks]


@every_transition
def test_batch_event_says_what_the_single_service_event_says(t, staff, plan):
    reference = case_at(staff, plan, t.source)
    t.single(staff.fresh(t.role), reference)
    (pk,) = cases_at(staff, plan, t.source, 1)

    t.batch(staff.fresh(t.role), [pk])

    batch_event = last_event(t.action, pk)
    assert shape(batch_event) == shape(last_event(t.action, reference.pk))
    assert batch_event.object_repr == str(Case.objects.get(pk=pk))


@every_transition
def test_batch_with_an_unknown_case_writes_nothing_and_names_it(t, staff, plan):
    pks = cases_at(staff, plan, t.source, 2)
    before = AuditEvent.objects.count()

    with pytest.raises(ValidationError) as info:
        t.batch(staff.fresh(t.role), [*pks, MISSING])

    assert info.value.message_dict == {"cases": [f"案件 #{MISSING} 不存在"]}
    assert statuses(pks) == [t.source, t.source]
    assert AuditEvent.objects.count() == before


@every_transition
def test_batch_with_a_case_in_the_wrong_state_writes_nothing_and_names_it(t, staff, plan):
    ready = cases_at(staff, plan, t.source, 2)
    (early,) = cases_at(staff, plan, t.early, 1)
    before = AuditEvent.objects.count()

    with pytest.raises(StateConflict) as info:
        t.batch(staff.fresh(t.role), [*ready, early])

    assert info.value.message == conflict(early, t.early, t.target)
    assert info.value.extra == {"current_state": t.early, "target_state": t.target}
    assert statuses([*ready, early]) == [t.source, t.source, t.early]
    assert AuditEvent.objects.count() == before


@every_transition
def test_batch_by_the_wrong_role_is_refused_and_writes_nothing(t, staff, plan):
    pks = cases_at(staff, plan, t.source, 2)
    before = AuditEvent.objects.count()

    with pytest.raises(PermissionDenied) as info:
        t.batch(staff.fresh(t.wrong_role), pks)

    assert str(info.value) == t.refusal
    assert statuses(pks) == [t.source, t.source]
    assert AuditEvent.objects.count() == before


@every_transition
def test_batch_takes_as_many_queries_for_50_cases_as_for_5(t, staff, plan):
    pks = cases_at(staff, plan, t.source, 55)
    few, many = pks[:5], pks[5:]

    actor = staff.fresh(t.role)
    for_5 = count_queries(lambda: t.batch(actor, few))
    actor = staff.fresh(t.role)
    for_50 = count_queries(lambda: t.batch(actor, many))

    assert for_50 == for_5
    assert statuses(pks) == [t.target] * 55


# Reasons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch", [services.cases_return_for_correction, services.cases_reject], ids=lambda f: f.__name__
)
def test_batch_without_a_required_reason_writes_nothing_and_names_the_case(batch, staff, plan):
    given, blank = cases_at(staff, plan, S.SUBMITTED, 2)
    before = AuditEvent.objects.count()

    with pytest.raises(ValidationError) as info:
        batch(actor=staff.coordinator, reasons={given: "照片不清晰", blank: "  "})

    assert info.value.message_dict == {"reason": [f"案件 #{blank} 请填写理由"]}
    assert statuses([given, blank]) == [S.SUBMITTED, S.SUBMITTED]
    assert AuditEvent.objects.count() == before


def test_cases_withdraw_records_each_case_its_own_reason(staff, plan):
    first, second = cases_at(staff, plan, S.ELIGIBLE, 2)

    services.cases_withdraw(actor=staff.coordinator, reasons={first: " 另有安排 ", second: ""})

    assert [
        (c.status_reason, last_event("case.withdraw", c.pk).reason)
        for c in Case.objects.filter(pk__in=[first, second]).order_by("pk")
    ] == [("另有安排", "另有安排"), ("", "")]


def test_cases_publish_results_passes_and_fails_in_one_batch(staff, plan):
    passed, failed = cases_at(staff, plan, S.SCORED, 2)

    moved = services.cases_publish_results(
        actor=staff.reviewer, passed={passed: True, failed: False}, on=RESULT_DAY
    )

    assert [(c.pk, c.status, c.result_date) for c in moved] == [
        (passed, S.PASSED, RESULT_DAY),
        (failed, S.FAILED, RESULT_DAY),
    ]
    assert AuditEvent.objects.filter(action__in=["case.pass", "case.fail"]).count() == 2


def test_cases_publish_results_with_a_failed_case_in_the_wrong_state_writes_nothing(staff, plan):
    # The passed group is written before the failed group is checked; the conflict must
    # still undo it.
    (passed,) = cases_at(staff, plan, S.SCORED, 1)
    (early,) = cases_at(staff, plan, S.EXAMINED, 1)
    before = AuditEvent.objects.count()

    with pytest.raises(StateConflict) as info:
        services.cases_publish_results(
            actor=staff.reviewer, passed={passed: True, early: False}, on=RESULT_DAY
        )

    assert info.value.message == conflict(early, S.EXAMINED, S.FAILED)
    assert statuses([passed, early]) == [S.SCORED, S.EXAMINED]
    assert AuditEvent.objects.count() == before


# cases_submit and cases_approve: a case's own problems refuse that case only ------------


def test_cases_submit_keeps_an_ineligible_case_as_it_is_and_lists_its_problems(staff, plan):
    coord = staff.coordinator
    (ready,) = cases_at(staff, plan, S.DRAFT, 1)
    young = services.case_create(
        actor=coord, candidate=register(coord, birth=date(2008, 9, 16)), plan=plan
    ).pk

    outcome = services.cases_submit(actor=coord, cases=[ready, young], on=ON)

    assert [c.pk for c in outcome.submitted] == [ready]
    assert outcome.refused == {young: ["考试日期 2026-09-15 时未满18周岁（17岁）"]}
    assert statuses([ready, young]) == [S.SUBMITTED, S.DRAFT]
    assert AuditEvent.objects.filter(action="case.submit", object_id=str(young)).count() == 0


def test_cases_submit_snapshots_exemptions_like_case_submit(staff, plan):
    coord = staff.coordinator
    single, batch = register(coord), register(coord)
    for candidate in (single, batch):
        hold(coord, candidate, "SAMR-WELD")
    reference = services.case_submit(
        actor=coord, case=services.case_create(actor=coord, candidate=single, plan=plan), on=ON
    )
    case = services.case_create(actor=coord, candidate=batch, plan=plan)

    services.cases_submit(actor=coord, cases=[case.pk], on=ON)

    def exemptions(c):
        return [(e.component.code, e.row) for e in Case.objects.get(pk=c.pk).exemptions.all()]

    assert exemptions(case) == exemptions(reference) != []
    single_changes = last_event("case.submit", reference.pk).changes
    batch_changes = last_event("case.submit", case.pk).changes
    basis = {reference.exemptions.first().basis_id: case.exemptions.first().basis_id}
    for item in single_changes["exempt"]["after"]:
        item["basis"] = basis[item["basis"]]
    assert batch_changes == single_changes


def test_cases_approve_keeps_a_case_with_an_unverified_basis_submitted(staff, plan):
    coord = staff.coordinator
    (ready,) = cases_at(staff, plan, S.SUBMITTED, 1)
    candidate = register(coord)
    held = hold(coord, candidate, "SAMR-WELD", verified=False)
    unverified = services.case_submit(
        actor=coord, case=services.case_create(actor=coord, candidate=candidate, plan=plan), on=ON
    ).pk

    outcome = services.cases_approve(actor=coord, cases=[ready, unverified])

    assert [c.pk for c in outcome.approved] == [ready]
    assert outcome.refused == {unverified: [f"证书 SAMR-WELD {held.number} 尚未核验（未核验）"]}
    assert statuses([ready, unverified]) == [S.ELIGIBLE, S.SUBMITTED]


# cases_create ----------------------------------------------------------------------------


def test_cases_create_opens_a_draft_per_candidate_in_the_order_given(staff, plan):
    coord = staff.coordinator
    first, second = register(coord, name="甲"), register(coord, name="乙")
    register(coord, name="丙")

    cases = services.cases_create(actor=coord, plan=plan, candidates=[second, first])

    assert [(c.candidate_id, c.status) for c in cases] == [
        (second.pk, S.DRAFT),
        (first.pk, S.DRAFT),
    ]
    assert Case.objects.count() == 2
    events = AuditEvent.objects.filter(action="case.create").order_by("seq")
    assert [e.object_id for e in events] == [str(c.pk) for c in cases]


def test_cases_create_event_says_what_case_create_says(staff, plan):
    coord = staff.coordinator
    candidate = register(coord)
    reference = services.case_create(actor=coord, candidate=candidate, plan=plan)
    # Withdrawn, the application no longer blocks a new one of the same candidate and
    # plan, so both events describe the same pair.
    services.case_withdraw(actor=coord, case=reference)

    (case,) = services.cases_create(actor=coord, plan=plan, candidates=[candidate])

    assert shape(last_event("case.create", case.pk)) == shape(
        last_event("case.create", reference.pk)
    )


def test_cases_create_with_a_candidate_already_applied_writes_nothing_and_names_them(staff, plan):
    coord = staff.coordinator
    fresh, applied = register(coord, name="甲"), register(coord, name="乙")
    services.case_create(actor=coord, candidate=applied, plan=plan)
    before = (Case.objects.count(), AuditEvent.objects.count())

    with pytest.raises(ValidationError) as info:
        services.cases_create(actor=coord, plan=plan, candidates=[fresh, applied])

    assert info.value.message_dict == {"plan": ["考生 乙 已报名此评价计划"]}
    assert (Case.objects.count(), AuditEvent.objects.count()) == before


def test_cases_create_with_a_candidate_given_twice_writes_nothing_and_names_them(staff, plan):
    coord = staff.coordinator
    once, twice = register(coord, name="甲"), register(coord, name="乙")
    before = AuditEvent.objects.count()

    with pytest.raises(ValidationError) as info:
        services.cases_create(actor=coord, plan=plan, candidates=[twice, once, twice])

    assert info.value.message_dict == {"plan": ["考生 乙 在本批中重复"]}
    assert Case.objects.count() == 0
    assert AuditEvent.objects.count() == before


def test_cases_create_for_a_plan_not_open_is_refused(staff):
    coord = staff.coordinator
    plan = PlanFactory(name="2026年焊工联合评价 草稿期", open_plan=False)
    candidate = register(coord)

    with pytest.raises(ValidationError) as info:
        services.cases_create(actor=coord, plan=plan, candidates=[candidate])

    assert info.value.message_dict == {
        "plan": ["评价计划「2026年焊工联合评价 草稿期」当前状态为「草稿」，不接受报名"]
    }
    assert Case.objects.count() == 0


def test_cases_create_by_a_grader_is_refused(staff, plan):
    candidate = register(staff.coordinator)

    with pytest.raises(PermissionDenied) as info:
        services.cases_create(actor=staff.grader, plan=plan, candidates=[candidate])

    assert str(info.value) == "需要以下角色之一：考务人员"
    assert Case.objects.count() == 0


def test_cases_create_takes_as_many_queries_for_50_candidates_as_for_5(staff, plan):
    candidates = services.candidates_register(
        actor=staff.coordinator, registrations=[registration() for _ in range(55)]
    )

    actor = staff.fresh("coordinator")
    for_5 = count_queries(
        lambda: services.cases_create(actor=actor, plan=plan, candidates=candidates[:5])
    )
    actor = staff.fresh("coordinator")
    for_50 = count_queries(
        lambda: services.cases_create(actor=actor, plan=plan, candidates=candidates[5:])
    )

    assert for_50 == for_5
    assert Case.objects.count() == 55


# candidates_register ---------------------------------------------------------------------


def test_candidates_register_creates_every_candidate_in_the_order_given(staff):
    numbers = [make_id_number(date(1990, 5, 17), "M") for _ in range(3)]

    candidates = services.candidates_register(
        actor=staff.coordinator,
        registrations=[registration(id_number=n, name=f"考生{i}") for i, n in enumerate(numbers)],
    )

    assert [(c.id_number, c.name) for c in candidates] == [
        (numbers[0], "考生0"),
        (numbers[1], "考生1"),
        (numbers[2], "考生2"),
    ]
    assert Candidate.objects.count() == 3
    events = AuditEvent.objects.filter(action="candidate.create").order_by("seq")
    assert [e.object_id for e in events] == [str(c.pk) for c in candidates]


def test_candidates_register_events_say_what_the_single_services_say(staff):
    coord = staff.coordinator
    born, held = (
        date(1985, 7, 1),
        {"issuer_name": "山西省市场监督管理局", "issue_date": date(2024, 3, 1)},
    )
    single = services.candidate_create(
        actor=coord,
        id_number=make_id_number(born, "F"),
        name="李四",
        phone="13900001111",
        education="college",
        work_years={"6-18-02-04": "6.5"},
    )
    services.held_certificate_create(
        actor=coord, candidate=single, qualification_type="SAMR-WELD", number="TS00000001", **held
    )

    (batch,) = services.candidates_register(
        actor=coord,
        registrations=[
            registration(
                id_number=make_id_number(born, "F"),
                name="李四",
                phone="13900001111",
                education="college",
                work_years={"6-18-02-04": "6.5"},
                held=[{"qualification_type": "SAMR-WELD", "number": "TS00000002", **held}],
            )
        ],
    )

    expected = shape(last_event("candidate.create", single.pk))
    expected["changes"]["id_number"]["after"] = batch.id_number
    assert shape(last_event("candidate.create", batch.pk)) == expected
    (single_held,), (batch_held,) = single.held_certificates.all(), batch.held_certificates.all()
    expected = shape(last_event("held_certificate.create", single_held.pk))
    expected["changes"]["number"]["after"] = "TS00000002"
    assert shape(last_event("held_certificate.create", batch_held.pk)) == expected


def test_candidates_register_with_a_bad_row_writes_nothing_and_names_the_row(staff):
    good = make_id_number()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    registrations = [registration(), registration(id_number=bad), registration()]

    with pytest.raises(ValidationError) as info:
        services.candidates_register(actor=staff.coordinator, registrations=registrations)

    assert info.value.message_dict == {"registrations": ["第 2 名：身份证号码校验位错误"]}
    assert Candidate.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_candidates_register_with_a_number_already_registered_writes_nothing(staff):
    taken = register(staff.coordinator)
    before = AuditEvent.objects.count()

    with pytest.raises(ValidationError) as info:
        services.candidates_register(
            actor=staff.coordinator,
            registrations=[registration(), registration(id_number=taken.id_number)],
        )

    assert info.value.message_dict == {"registrations": ["第 2 名：该身份证号码已登记"]}
    assert Candidate.objects.count() == 1
    assert AuditEvent.objects.count() == before


def test_candidates_register_with_a_number_given_twice_names_both_rows(staff):
    number = make_id_number()

    with pytest.raises(ValidationError) as info:
        services.candidates_register(
            actor=staff.coordinator,
            registrations=[registration(id_number=number), registration(id_number=number)],
        )

    assert info.value.message_dict == {"registrations": ["第 2 名：身份证号码与第 1 名重复"]}
    assert Candidate.objects.count() == 0


def test_candidates_register_by_a_grader_is_refused(staff):
    with pytest.raises(PermissionDenied) as info:
        services.candidates_register(actor=staff.grader, registrations=[registration()])

    assert str(info.value) == "需要以下角色之一：考务人员"
    assert Candidate.objects.count() == 0


_certificate_numbers = itertools.count(50_000_001)


def _with_certificate() -> services.Registration:
    held = {
        "qualification_type": "SAMR-WELD",
        "number": f"TS{next(_certificate_numbers):08d}",
        "issuer_name": "山西省市场监督管理局",
        "issue_date": date(2024, 3, 1),
    }
    return registration(held=[held])


def _with_work_years() -> services.Registration:
    return registration(work_years={"6-18-02-04": "3"})


def _register_queries(staff, n, make) -> int:
    actor = staff.fresh("coordinator")
    batch = [make() for _ in range(n)]
    return count_queries(lambda: services.candidates_register(actor=actor, registrations=batch))


def test_candidates_register_takes_as_many_queries_for_50_as_for_5(staff):
    for_5 = _register_queries(staff, 5, _with_certificate)
    for_50 = _register_queries(staff, 50, _with_certificate)

    assert for_50 == for_5
    assert Candidate.objects.count() == 55


def test_candidates_register_with_work_years_takes_as_many_queries_for_50_as_for_5(staff):
    for_5 = _register_queries(staff, 5, _with_work_years)
    for_50 = _register_queries(staff, 50, _with_work_years)

    assert for_50 == for_5
