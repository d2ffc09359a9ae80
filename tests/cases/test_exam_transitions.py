"""The case's exam-stage transitions, driven through cases services as the exams
services drive them."""

from datetime import date, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases import services
from cases.models import CaseStatus

from .factories import PlanFactory, UserFactory, coordinator, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def reviewer():
    return UserFactory(username="reviewer", roles=["reviewer"])


def eligible(coord, **plan_options):
    plan = PlanFactory(**plan_options)
    case = services.case_create(actor=coord, candidate=register(coord), plan=plan)
    case = services.case_submit(actor=coord, case=case, on=date(2026, 6, 1))
    return services.case_approve(actor=coord, case=case)


def scored(coord):
    case = services.case_schedule(actor=coord, case=eligible(coord), detail={"seat": 1})
    case = services.case_check_in(actor=coord, case=case)
    return services.case_finalise_scores(actor=coord, case=case)


def test_schedule_check_in_finalise_and_publish(coord, reviewer):
    case = scored(coord)
    assert (case.status, case.attempts) == (CaseStatus.SCORED, 1)
    case = services.case_publish_result(
        actor=reviewer, case=case, passed=True, on=date(2026, 10, 1)
    )
    assert (case.status, case.result_date) == (CaseStatus.PASSED, date(2026, 10, 1))
    actions = list(
        AuditEvent.objects.filter(object_type="cases.case", object_id=str(case.pk)).values_list(
            "action", flat=True
        )
    )
    assert actions[-4:] == ["case.schedule", "case.check_in", "case.finalise_scores", "case.pass"]


def test_publishing_is_for_quality_supervisors(coord):
    case = scored(coord)
    with pytest.raises(PermissionDenied):
        services.case_publish_result(actor=coord, case=case, passed=True, on=date(2026, 10, 1))


def test_check_in_of_an_eligible_case_is_a_conflict(coord):
    with pytest.raises(StateConflict, match="案件当前状态为「资格审核通过」，不能变为「已参考」"):
        services.case_check_in(actor=coord, case=eligible(coord))


def test_void_needs_a_reason_and_ends_the_case(coord):
    case = services.case_check_in(
        actor=coord, case=services.case_schedule(actor=coord, case=eligible(coord))
    )
    with pytest.raises(ValidationError):
        services.case_void(actor=coord, case=case, reason=" ")
    case = services.case_void(actor=coord, case=case, reason="夹带资料，监控录像为证")
    assert case.status == CaseStatus.VOID
    with pytest.raises(StateConflict):
        services.case_retake(actor=coord, case=case)


def test_failed_case_retakes_within_the_window_once(coord, reviewer):
    case = services.case_publish_result(
        actor=reviewer, case=scored(coord), passed=False, on=date(2026, 10, 1)
    )
    with pytest.raises(ValidationError) as info:
        services.case_retake(actor=coord, case=case, on=date(2026, 10, 1) + timedelta(days=366))
    assert info.value.message_dict == {"case": ["补考期限已过（自 2026-10-01 起 365 天内）"]}
    case = services.case_retake(actor=coord, case=case, on=date(2026, 11, 1))
    assert case.status == CaseStatus.ELIGIBLE
    # Second sitting, failed again: the plan allows one retake.
    case = services.case_schedule(actor=coord, case=case)
    case = services.case_finalise_scores(
        actor=coord, case=services.case_check_in(actor=coord, case=case)
    )
    case = services.case_publish_result(
        actor=reviewer, case=case, passed=False, on=date(2026, 12, 1)
    )
    assert case.attempts == 2
    with pytest.raises(ValidationError) as info:
        services.case_retake(actor=coord, case=case, on=date(2026, 12, 2))
    assert info.value.message_dict == {"case": ["补考次数已达上限（1 次）"]}


def test_absent_case_may_retake(coord):
    case = services.case_schedule(actor=coord, case=eligible(coord))
    case = services.case_mark_absent(actor=coord, case=case)
    assert (case.status, case.attempts) == (CaseStatus.ABSENT, 1)
    assert (
        services.case_retake(actor=coord, case=case, on=date(2026, 9, 20)).status
        == CaseStatus.ELIGIBLE
    )


def test_unschedule_returns_the_case_to_eligible(coord):
    case = services.case_schedule(actor=coord, case=eligible(coord))
    case = services.case_unschedule(actor=coord, case=case, reason="考生申请改期")
    assert case.status == CaseStatus.ELIGIBLE


def test_complete_is_for_issuing_officers(coord, reviewer):
    case = services.case_publish_result(
        actor=reviewer, case=scored(coord), passed=True, on=date(2026, 10, 1)
    )
    with pytest.raises(PermissionDenied):
        services.case_complete(actor=coord, case=case)
    officer = UserFactory(username="officer", roles=["issuer_officer"])
    assert services.case_complete(actor=officer, case=case).status == CaseStatus.COMPLETED


def test_retake_through_the_api(coord, reviewer):
    from rest_framework.test import APIClient

    case = services.case_publish_result(
        actor=reviewer, case=scored(coord), passed=False, on=date(2026, 10, 1)
    )
    api = APIClient()
    api.force_authenticate(coord)
    response = api.post(f"/api/v1/cases/{case.pk}/retake/")
    assert response.status_code == 200
    assert response.json()["status"] == "eligible"
    again = api.post(f"/api/v1/cases/{case.pk}/retake/")
    assert again.status_code == 409
