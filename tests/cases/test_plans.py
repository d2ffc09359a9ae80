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


def draft(coord, code="MEM-ELEC-LV", occupation="6-31-01-03", level=5, **kwargs):
    return plans.plan_create(
        actor=coord,
        name="低压电工 联合评价",
        qualification_type=code,
        occupation=occupation,
        level=level,
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


@pytest.mark.parametrize("level", [2, 1])
def test_levels_2_and_1_add_the_comprehensive_review_for_the_skill_certificate(coord, level):
    plan = draft(coord, level=level)
    assert [
        (c.component.code, c.marking_mode, c.max_score)
        for c in plan.components.select_related("component")
    ] == [
        ("training", "single", 100),
        ("theory", "single", 100),
        ("practical", "single", 100),
        ("review", "single", 100),
    ]
    assert rules(plan) == {
        CertificateKind.QUALIFICATION: (True, {"training": None, "theory": 80, "practical": 80}),
        CertificateKind.SKILL: (False, {"theory": 60, "practical": 60, "review": 60}),
    }


def test_level_3_plan_has_no_comprehensive_review(coord):
    plan = draft(coord, level=3)
    codes = list(plan.components.values_list("component__code", flat=True))
    assert codes == ["training", "theory", "practical"]
    assert rules(plan)[CertificateKind.SKILL] == (False, {"theory": 60, "practical": 60})


def test_review_may_be_double_marked_when_the_plan_asks(coord):
    plan = draft(coord, level=2, double_marked=("review",))
    review = plan.components.get(component__code="review")
    assert review.marking_mode == "double"


def test_configure_and_open_a_level_2_plan_with_its_review(coord):
    from audit.models import AuditEvent

    plan = draft(coord, level=2)
    plans.plan_configure(
        actor=coord,
        plan=plan,
        components={"review": {"marking_mode": "double", "tolerance": "4"}},
        pass_marks={"skill": {"review": "70"}},
    )
    review = plan.components.get(component__code="review")
    assert (review.marking_mode, review.tolerance) == ("double", 4)
    assert rules(plan)[CertificateKind.SKILL][1] == {"theory": 60, "practical": 60, "review": 70}
    changes = AuditEvent.objects.get(action="plan.configure").changes
    assert changes["pass_mark:skill:review"] == {"before": "60.0", "after": "70.0"}
    with pytest.raises(ValidationError) as info:
        plans.plan_configure(actor=coord, plan=plan, pass_marks={"qualification": {"review": 60}})
    assert info.value.message_dict == {"pass_marks": ["职业资格证书没有科目「综合评审」的合格标准"]}
    assert plans.plan_open(actor=coord, plan=plan).status == PlanStatus.OPEN


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
    assert patched.json() == {"pass_marks": ["职业资格证书「实操考试」合格分 200 超过满分 100"]}
    opened = api.post(f"/api/v1/plans/{plan['id']}/open/")
    assert opened.json()["status"] == "open"
    assert api.post(f"/api/v1/plans/{plan['id']}/archive/").status_code == 409


# Configure: certificates, the plan as it would be, messages naming what they are about.


def configure_events(plan):
    from audit.models import AuditEvent

    return AuditEvent.objects.filter(action="plan.configure", object_id=str(plan.pk))


def state(plan):
    """Everything plan_configure may write, to show that a refusal wrote nothing."""
    plan.refresh_from_db()
    return (
        plan.name,
        plan.retake_limit,
        rules(plan),
        [
            (pc.component.code, pc.max_score, pc.marking_mode, pc.tolerance)
            for pc in plan.components.select_related("component")
        ],
        sorted(plan.disabled_rules.values_list("row", flat=True)),
    )


def refusal(coord, plan, **kwargs) -> dict:
    """The field messages of a refused plan_configure, after checking it wrote nothing."""
    before = state(plan)
    with pytest.raises(ValidationError) as info:
        plans.plan_configure(actor=coord, plan=plan, **kwargs)
    assert state(plan) == before
    assert configure_events(plan).count() == 0
    return info.value.message_dict


def test_configure_changes_theory_before_practical_per_certificate_and_audits_it(coord):
    plan = draft(coord)

    plans.plan_configure(
        actor=coord,
        plan=plan,
        certificates={
            "qualification": {"theory_before_practical": False},
            "skill": {"theory_before_practical": True},
        },
    )

    assert rules(plan) == {
        CertificateKind.QUALIFICATION: (False, {"training": None, "theory": 80, "practical": 80}),
        CertificateKind.SKILL: (True, {"theory": 60, "practical": 60}),
    }
    assert configure_events(plan).get().changes == {
        "certificate:qualification": {
            "before": {"theory_before_practical": True},
            "after": {"theory_before_practical": False},
        },
        "certificate:skill": {
            "before": {"theory_before_practical": False},
            "after": {"theory_before_practical": True},
        },
    }


def test_configure_with_the_same_theory_rule_writes_no_event(coord):
    plan = draft(coord)
    plans.plan_configure(
        actor=coord, plan=plan, certificates={"qualification": {"theory_before_practical": True}}
    )
    assert configure_events(plan).count() == 0


def test_configure_refuses_unknown_certificates_and_bad_theory_rules(coord):
    plan = draft(coord)

    errors = refusal(
        coord,
        plan,
        name="改过的名称",
        certificates={
            "safety": {"theory_before_practical": True},
            "qualification": {"theory_before_practical": "yes"},
            "skill": {"theory_first": True},
        },
    )

    assert errors == {
        "certificates": [
            "本计划没有证书「safety」",
            "职业资格证书「理论合格后方可计实操」须为是或否",
            "职业技能等级证书不可修改「theory_first」",
        ]
    }


def test_lowering_a_maximum_below_unsent_pass_marks_is_refused_naming_each_certificate(coord):
    plan = draft(coord)

    errors = refusal(coord, plan, components={"theory": {"max_score": 50}})

    # Keyed `components`: that is what was sent; the messages name the marks it breaks.
    assert errors == {
        "components": [
            "职业资格证书「理论考试」合格分 80 超过满分 50",
            "职业技能等级证书「理论考试」合格分 60 超过满分 50",
        ]
    }


def test_lowering_a_maximum_with_the_marks_lowered_too_is_accepted(coord):
    plan = draft(coord)

    plans.plan_configure(
        actor=coord,
        plan=plan,
        components={"theory": {"max_score": 50}},
        pass_marks={"qualification": {"theory": 40}, "skill": {"theory": "30"}},
    )

    assert plan.components.get(component__code="theory").max_score == 50
    assert rules(plan)[CertificateKind.QUALIFICATION][1]["theory"] == 40
    assert rules(plan)[CertificateKind.SKILL][1]["theory"] == 30


def test_raising_a_maximum_lets_a_higher_pass_mark_in_the_same_call(coord):
    plan = draft(coord)

    plans.plan_configure(
        actor=coord,
        plan=plan,
        components={"practical": {"max_score": 150}},
        pass_marks={"qualification": {"practical": 120}},
    )

    assert plan.components.get(component__code="practical").max_score == 150
    assert rules(plan)[CertificateKind.QUALIFICATION][1]["practical"] == 120
    assert configure_events(plan).get().changes["pass_mark:qualification:practical"] == {
        "before": "80.0",
        "after": "120.0",
    }


def test_pass_mark_errors_name_the_certificate_and_component_all_at_once(coord):
    plan = draft(coord)

    errors = refusal(
        coord,
        plan,
        retake_limit=3,
        pass_marks={
            "skill": {"theory": 120, "practical": -1, "training": 50},
            "qualification": {"practical": "八十", "theory": "85"},
            "safety": {"theory": 60},
        },
    )

    assert errors == {
        "pass_marks": [
            "职业技能等级证书「实操考试」合格分 -1 不能小于 0",
            "职业技能等级证书没有科目「安全培训」的合格标准",
            "职业资格证书「实操考试」合格分须为数字",
            "本计划没有证书「safety」",
            "职业技能等级证书「理论考试」合格分 120 超过满分 100",
        ]
    }


def test_component_errors_name_the_component(coord):
    plan = draft(coord)

    errors = refusal(
        coord,
        plan,
        components={
            "theory": {"max_score": 0},
            "practical": {"marking_mode": "triple", "order": 1},
            "hot_work": {"max_score": 100},
        },
    )

    assert errors == {
        "components": [
            "科目「理论考试」满分须大于 0",
            "科目「实操考试」不可修改「order」",
            "科目「实操考试」评分方式：值 'triple' 不是有效选项。",
            "本计划没有科目「动火作业安全管理考试」",
        ]
    }


def test_a_refused_part_writes_none_of_the_valid_parts(coord):
    plan = draft(coord)

    errors = refusal(
        coord,
        plan,
        name="改过的名称",
        retake_limit=3,
        certificates={"skill": {"theory_before_practical": True}},
        components={"practical": {"marking_mode": "double"}},
        pass_marks={"skill": {"theory": 65}},
        disabled_rows=[3, 7],
    )

    assert errors == {"disabled_rows": ["序号 7 不是申请本计划证书的互认规则"]}


# Create with rows switched off


def test_create_switches_rows_off_in_the_same_transaction_and_audits_them(coord):
    from audit.models import AuditEvent

    plan = draft(coord, code="MOHURD-ELEC", disabled_rows=[2, 1, 2])

    assert sorted(plan.disabled_rules.values_list("row", flat=True)) == [1, 2]
    changes = AuditEvent.objects.get(action="plan.create", object_id=str(plan.pk)).changes
    assert changes["disabled_rows"] == {"before": None, "after": [1, 2]}


def test_create_without_rows_records_none(coord):
    from audit.models import AuditEvent

    plan = draft(coord)

    assert plan.disabled_rules.count() == 0
    assert "disabled_rows" not in AuditEvent.objects.get(action="plan.create").changes


def test_create_refuses_rows_towards_other_types_and_creates_nothing(coord):
    from audit.models import AuditEvent
    from cases.models import EvaluationPlan

    with pytest.raises(ValidationError) as info:
        draft(coord, disabled_rows=[3, 5, 99])

    assert info.value.message_dict == {"disabled_rows": ["序号 5, 99 不是申请本计划证书的互认规则"]}
    assert EvaluationPlan.objects.count() == 0
    assert AuditEvent.objects.filter(action="plan.create").count() == 0


# API


@pytest.fixture
def api(coord):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(coord)
    return client


def test_plan_api_patches_theory_before_practical(api, coord):
    plan = draft(coord)

    response = api.patch(
        f"/api/v1/plans/{plan.pk}/",
        {"certificates": {"skill": {"theory_before_practical": True}}},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert [(c["kind"], c["theory_before_practical"]) for c in response.json()["certificates"]] == [
        ("qualification", True),
        ("skill", True),
    ]
    assert configure_events(plan).get().changes == {
        "certificate:skill": {
            "before": {"theory_before_practical": False},
            "after": {"theory_before_practical": True},
        }
    }


def test_plan_api_refuses_an_unknown_certificate_and_writes_nothing(api, coord):
    plan = draft(coord)

    response = api.patch(
        f"/api/v1/plans/{plan.pk}/",
        {
            "retake_limit": 3,
            "certificates": {"safety": {"theory_before_practical": True}},
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"certificates": ["本计划没有证书「safety」"]}
    plan.refresh_from_db()
    assert plan.retake_limit == 1
    assert configure_events(plan).count() == 0


def test_plan_api_refuses_a_theory_rule_that_is_not_a_boolean(api, coord):
    plan = draft(coord)

    response = api.patch(
        f"/api/v1/plans/{plan.pk}/",
        {"certificates": {"skill": {"theory_before_practical": "maybe"}}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "certificates": {"skill": {"theory_before_practical": ["必须是有效的布尔值。"]}}
    }
    assert configure_events(plan).count() == 0


def test_plan_api_refuses_a_maximum_below_an_existing_pass_mark(api, coord):
    plan = draft(coord)

    response = api.patch(
        f"/api/v1/plans/{plan.pk}/",
        {"components": {"practical": {"max_score": 70}}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"components": ["职业资格证书「实操考试」合格分 80 超过满分 70"]}
    assert plan.components.get(component__code="practical").max_score == 100


def test_plan_api_creates_a_plan_with_rows_switched_off(api):
    response = api.post(
        "/api/v1/plans/",
        {
            "name": "建筑电工 联合评价",
            "qualification_type": "MOHURD-ELEC",
            "occupation": "6-31-01-03",
            "level": 5,
            "province": "14",
            "exam_date": "2026-12-01",
            "disabled_rows": [2],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["disabled_rows"] == [2]


def test_plan_api_refuses_rows_towards_other_types_and_creates_nothing(api):
    from cases.models import EvaluationPlan

    response = api.post(
        "/api/v1/plans/",
        {
            "name": "建筑电工 联合评价",
            "qualification_type": "MOHURD-ELEC",
            "occupation": "6-31-01-03",
            "level": 5,
            "province": "14",
            "exam_date": "2026-12-01",
            "disabled_rows": [3],
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"disabled_rows": ["序号 3 不是申请本计划证书的互认规则"]}
    assert EvaluationPlan.objects.count() == 0
