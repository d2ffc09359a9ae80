from datetime import date, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.exceptions import StateConflict
from cases import plans, services
from cases.models import CertificateKind, PlanStatus

from .factories import UserFactory, coordinator, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


def draft(coord, code="MEM-ELEC-LV", occupation="6-31-01-03", **kwargs):
    return plans.plan_create(
        actor=coord,
        name="低压电工 联合评价",
        qualification_type=code,
        occupation=occupation,
        level=5,
        province="14",
        exam_date=date(2026, 12, 1),
        **kwargs,
    )


def rules(plan):
    return {
        cert.kind: (
            cert.theory_before_practical,
            {m.component.code: m.pass_mark for m in cert.marks.select_related("component")},
        )
        for cert in plan.certificates.all()
    }


def test_plan_takes_components_and_pass_rules_from_the_catalog(coord):
    plan = draft(coord, double_marked=("practical",))
    assert plan.status == PlanStatus.DRAFT
    assert [
        (c.component.code, c.marking_mode) for c in plan.components.select_related("component")
    ] == [("training", "single"), ("theory", "single"), ("practical", "double")]
    assert rules(plan) == {
        CertificateKind.QUALIFICATION: (True, {"training": None, "theory": 80, "practical": 80}),
        CertificateKind.SKILL: (False, {"theory": 60, "practical": 60}),
    }


def test_samr_plan_has_hot_work_and_its_own_marks(coord):
    plan = draft(coord, code="SAMR-WELD", occupation="6-18-02-04")
    assert rules(plan)[CertificateKind.QUALIFICATION] == (
        False,
        {"theory": 60, "practical": 60, "hot_work": 60},
    )


def test_occupation_must_match_the_qualification_type(coord):
    with pytest.raises(ValidationError) as info:
        draft(coord, occupation="6-18-02-04")
    assert info.value.message_dict == {
        "occupation": ["特种作业操作证 · 低压电工作业对应的职业为电工，与所选职业不符"]
    }


def test_plan_moves_draft_open_closed_archived(coord):
    plan = draft(coord)
    plan = plans.plan_open(actor=coord, plan=plan)
    assert plan.status == PlanStatus.OPEN
    plan = plans.plan_close(actor=coord, plan=plan)
    plan = plans.plan_archive(actor=coord, plan=plan)
    assert plan.status == PlanStatus.ARCHIVED


def test_archiving_an_open_plan_is_a_conflict(coord):
    plan = plans.plan_open(actor=coord, plan=draft(coord))
    with pytest.raises(StateConflict, match="评价计划当前状态为「报名中」，不能变为「已归档」"):
        plans.plan_archive(actor=coord, plan=plan)


def test_only_coordinators_manage_plans(coord):
    plan = draft(coord)
    with pytest.raises(PermissionDenied):
        plans.plan_open(actor=UserFactory(roles=["reviewer"]), plan=plan)


def test_registration_only_while_open_and_within_the_window(coord):
    today = timezone.localdate()
    plan = draft(coord)
    candidate = register(coord)
    with pytest.raises(ValidationError, match="当前状态为「草稿」，不接受报名"):
        services.case_create(actor=coord, candidate=candidate, plan=plan)
    plan.registration_closes = today - timedelta(days=1)
    plan.save(update_fields=["registration_closes"])
    plan = plans.plan_open(actor=coord, plan=plan)
    with pytest.raises(ValidationError, match=f"报名已于 {today - timedelta(days=1)} 截止"):
        services.case_create(actor=coord, candidate=candidate, plan=plan)


def test_configure_overrides_a_draft_plan_and_audits_it(coord):
    from audit.models import AuditEvent

    plan = draft(coord)
    plans.plan_configure(
        actor=coord,
        plan=plan,
        retake_limit=2,
        components={"practical": {"marking_mode": "double", "tolerance": "3"}},
        pass_marks={"skill": {"theory": "65"}},
        disabled_rows=[3],
    )
    assert rules(plan)[CertificateKind.SKILL][1] == {"theory": 65, "practical": 60}
    practical = plan.components.get(component__code="practical")
    assert (practical.marking_mode, practical.tolerance) == ("double", 3)
    assert list(plan.disabled_rules.values_list("row", flat=True)) == [3]
    changes = AuditEvent.objects.get(action="plan.configure").changes
    assert changes["retake_limit"] == {"before": 1, "after": 2}
    assert changes["pass_mark:skill:theory"] == {"before": "60.0", "after": "65.0"}


def test_configure_refuses_rows_towards_other_types_and_open_plans(coord):
    plan = draft(coord)
    with pytest.raises(ValidationError) as info:
        plans.plan_configure(actor=coord, plan=plan, disabled_rows=[7])
    assert info.value.message_dict == {"disabled_rows": ["序号 7 不是申请本计划证书的互认规则"]}
    plan = plans.plan_open(actor=coord, plan=plan)
    with pytest.raises(StateConflict, match="只有草稿可以修改"):
        plans.plan_configure(actor=coord, plan=plan, retake_limit=3)


def test_plan_api_creates_configures_and_opens(coord):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(coord)
    created = api.post(
        "/api/v1/plans/",
        {
            "name": "建筑电工 联合评价",
            "qualification_type": "MOHURD-ELEC",
            "occupation": "6-31-01-03",
            "level": 5,
            "province": "14",
            "exam_date": "2026-12-01",
            "double_marked": ["practical"],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    plan = created.json()
    assert plan["status"] == "draft"
    assert plan["certificates"][0] == {
        "kind": "qualification",
        "theory_before_practical": True,
        "marks": {"training": None, "theory": "60.0", "practical": "70.0"},
    }
    patched = api.patch(
        f"/api/v1/plans/{plan['id']}/",
        {"pass_marks": {"qualification": {"practical": 200}}},
        format="json",
    )
    assert patched.status_code == 400
    assert patched.json() == {"pass_marks": ["practical 的合格分须在 0 到 100 之间"]}
    opened = api.post(f"/api/v1/plans/{plan['id']}/open/")
    assert opened.json()["status"] == "open"
    assert api.post(f"/api/v1/plans/{plan['id']}/archive/").status_code == 409
