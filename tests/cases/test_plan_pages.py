"""The coordinator's plan pages: create (cases:plan-create), configure a draft
(cases:plan-edit), and the open / close / archive buttons on the plan page
(exams:plan-detail). The rules themselves are tested in test_plans.py."""

import re
from datetime import date
from decimal import Decimal

import pytest
from django import forms
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from cases import plans
from cases.forms import PlanConfigureForm, add_service_errors
from cases.models import CertificateKind, EvaluationPlan, PlanStatus
from catalog.models import Occupation, QualificationType

from .factories import PlanFactory, UserFactory, coordinator

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def coord_client(client, coord):
    client.force_login(coord)
    return client


@pytest.fixture
def draft():
    """MEM-WELD-FC, level 5: training (completion), theory and practical; qualification
    80/80, skill 60/60; rows 6 and 7 lead to this type."""
    return PlanFactory(open_plan=False, name="焊工联合评价 草稿")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def form_data(form) -> dict:
    """What a browser posts for `form` as the page shows it, unchanged."""
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif isinstance(field, forms.MultipleChoiceField):
            data[name] = [str(v) for v in value or []]
        else:
            data[name] = "" if value is None else str(value)
    return data


def assert_error_in_card(response, kind: str, field: str, message: str) -> None:
    """`message` is shown inside the certificate card of `kind`, in the field group of
    `field` (Django renders a field's errors just above its input)."""
    body = response.content.decode()
    card = body[body.index(f'data-kind="{kind}"') :]
    at = card.index(message)
    assert 'data-kind="' not in card[1:at]  # still in that card
    assert re.search(r'name="([^"]+)"', card[at:]).group(1) == field


def edit_data(client, plan, **overrides) -> dict:
    response = client.get(reverse("cases:plan-edit", args=[plan.pk]))
    assert response.status_code == 200
    return {**form_data(response.context["form"]), **overrides}


def rules(plan):
    return {
        cert.kind: (
            cert.theory_before_practical,
            {m.component.code: m.pass_mark for m in cert.marks.select_related("component")},
        )
        for cert in plan.certificates.all()
    }


def components(plan):
    return [
        (pc.component.code, pc.max_score, pc.marking_mode, pc.tolerance)
        for pc in plan.components.select_related("component")
    ]


def configure_events(plan):
    return AuditEvent.objects.filter(action="plan.configure", object_id=str(plan.pk))


# Create ------------------------------------------------------------------------------


def create_post(**overrides):
    qtype = QualificationType.objects.get(code="MEM-ELEC-LV")
    data = {
        "name": "2026年低压电工联合评价",
        "qualification_type": qtype.pk,
        "occupation": qtype.occupation_id,
        "level": "5",
        "province": "14",
        "exam_date": "2026-10-20",
        "registration_opens": "2026-08-01",
        "registration_closes": "2026-09-30",
        "retake_window_days": "180",
        "retake_limit": "2",
        "min_education": "junior",
        "min_work_years": "1",
        "alternative_work_years": "",
        "female_retirement_age": "55",
        # require_photo unchecked: not posted
        "double_marked": ["practical"],
    }
    data.update(overrides)
    return data


def test_create_page_saves_a_draft_with_the_catalog_components_and_pass_marks(coord_client):
    response = coord_client.post(reverse("cases:plan-create"), create_post())

    plan = EvaluationPlan.objects.get(name="2026年低压电工联合评价")
    assert response.status_code == 302
    assert response.url == reverse("exams:plan-detail", args=[plan.pk])
    assert messages_of(response) == ["评价计划已创建（草稿）"]
    assert plan.status == PlanStatus.DRAFT
    assert (plan.qualification_type.code, plan.level, plan.province) == ("MEM-ELEC-LV", 5, "14")
    assert (plan.registration_opens, plan.registration_closes) == (
        date(2026, 8, 1),
        date(2026, 9, 30),
    )
    assert (plan.retake_window_days, plan.retake_limit) == (180, 2)
    assert (plan.min_education, plan.min_work_years, plan.alternative_work_years) == (
        "junior",
        Decimal("1.0"),
        None,
    )
    assert (plan.female_retirement_age, plan.require_photo) == (55, False)
    assert components(plan) == [
        ("training", 100, "single", Decimal("5.0")),
        ("theory", 100, "single", Decimal("5.0")),
        ("practical", 100, "double", Decimal("5.0")),
    ]
    assert rules(plan) == {
        CertificateKind.QUALIFICATION: (True, {"training": None, "theory": 80, "practical": 80}),
        CertificateKind.SKILL: (False, {"theory": 60, "practical": 60}),
    }
    assert AuditEvent.objects.filter(action="plan.create", object_id=str(plan.pk)).count() == 1


def test_create_page_shows_the_service_error_on_its_field(coord_client):
    welder = Occupation.objects.get(code="6-18-02-04")
    response = coord_client.post(reverse("cases:plan-create"), create_post(occupation=welder.pk))

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "occupation": ["特种作业操作证 · 低压电工作业对应的职业为电工，与所选职业不符"]
    }
    assert "与所选职业不符" in response.content.decode()
    assert EvaluationPlan.objects.count() == 0


def test_create_page_refuses_a_window_closing_before_it_opens(coord_client):
    response = coord_client.post(
        reverse("cases:plan-create"),
        create_post(registration_opens="2026-09-30", registration_closes="2026-08-01"),
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "registration_closes": ["报名截止日期不能早于报名开始日期"]
    }
    assert EvaluationPlan.objects.count() == 0


def test_create_page_offers_every_attachment_row_naming_its_target(coord_client):
    form = coord_client.get(reverse("cases:plan-create")).context["form"]

    choices = dict(form.fields["disabled_rows"].choices)
    assert list(choices) == [1, 2, 3, 4, 5, 6, 7]
    assert choices[7] == (
        "序号7：持特种设备作业人员证 · 焊接操作，申请特种作业操作证 · 熔化焊接与热切割作业，"
        "免安全培训、理论考试"
    )


def test_create_page_switches_rows_off_with_the_new_plan(coord_client):
    qtype = QualificationType.objects.get(code="MOHURD-ELEC")

    response = coord_client.post(
        reverse("cases:plan-create"),
        create_post(qualification_type=qtype.pk, disabled_rows=["2", "1"]),
    )

    assert response.status_code == 302
    plan = EvaluationPlan.objects.get()
    assert sorted(plan.disabled_rules.values_list("row", flat=True)) == [1, 2]
    event = AuditEvent.objects.get(action="plan.create", object_id=str(plan.pk))
    assert event.changes["disabled_rows"] == {"before": None, "after": [1, 2]}


def test_create_page_shows_a_row_towards_another_type_on_its_field(coord_client):
    response = coord_client.post(
        reverse("cases:plan-create"), create_post(disabled_rows=["1", "3"])
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "disabled_rows": ["序号 1 不是申请本计划证书的互认规则"]
    }
    assert "序号 1 不是申请本计划证书的互认规则" in response.content.decode()
    assert EvaluationPlan.objects.count() == 0
    assert AuditEvent.objects.filter(action="plan.create").count() == 0


def test_plan_list_offers_the_create_page(coord_client):
    response = coord_client.get(reverse("exams:plan-list"))
    assert reverse("cases:plan-create") in response.content.decode()


# Configure a draft -------------------------------------------------------------------


def test_edit_page_shows_scored_components_and_marks_of_the_draft(coord_client, draft):
    form = coord_client.get(reverse("cases:plan-edit", args=[draft.pk])).context["form"]

    assert [row["component"].code for row in form.component_rows()] == ["theory", "practical"]
    assert {
        cert["certificate"].kind: [
            (m["component"].code, m["field"].value() if m["field"] else None) for m in cert["marks"]
        ]
        for cert in form.certificate_rows()
    } == {
        "qualification": [
            ("training", None),
            ("theory", Decimal("80.0")),
            ("practical", Decimal("80.0")),
        ],
        "skill": [("theory", Decimal("60.0")), ("practical", Decimal("60.0"))],
    }
    assert [row for row, _label in form.fields["disabled_rows"].choices] == [6, 7]


def test_edit_changes_a_pass_mark_marking_and_settings_and_audits_them(coord_client, coord, draft):
    data = edit_data(
        coord_client,
        draft,
        mark_skill_theory="65",
        component_practical_marking_mode="double",
        component_practical_tolerance="3",
        min_work_years="2",
        disabled_rows=["6"],
    )

    response = coord_client.post(reverse("cases:plan-edit", args=[draft.pk]), data)

    assert response.status_code == 302
    assert response.url == reverse("exams:plan-detail", args=[draft.pk])
    assert messages_of(response) == ["评价计划已保存"]
    draft.refresh_from_db()
    assert draft.min_work_years == Decimal("2.0")
    assert rules(draft)[CertificateKind.SKILL] == (False, {"theory": 65, "practical": 60})
    assert components(draft)[2] == ("practical", 100, "double", Decimal("3.0"))
    assert list(draft.disabled_rules.values_list("row", flat=True)) == [6]
    event = configure_events(draft).get()
    assert event.actor == coord
    # Only what the coordinator changed: the unchanged values were not sent.
    assert event.changes == {
        "min_work_years": {"before": "0.0", "after": "2.0"},
        "component:practical": {
            "before": {"max_score": 100, "marking_mode": "single", "tolerance": "5.0"},
            "after": {"max_score": 100, "marking_mode": "double", "tolerance": "3.0"},
        },
        "pass_mark:skill:theory": {"before": "60.0", "after": "65.0"},
        "disabled_rows": {"before": [], "after": [6]},
    }


def test_edit_page_offers_the_theory_rule_of_each_certificate(coord_client, draft):
    response = coord_client.get(reverse("cases:plan-edit", args=[draft.pk]))

    form = response.context["form"]
    assert [
        (cert["certificate"].kind, cert["theory_before_practical"].value())
        for cert in form.certificate_rows()
    ] == [("qualification", False), ("skill", False)]
    body = response.content.decode()
    card = body[body.index('data-kind="skill"') :]
    assert 'type="checkbox" name="certificate_skill_theory_before_practical"' in card


def test_edit_turns_theory_first_on_for_one_certificate_and_audits_it(coord_client, draft):
    data = edit_data(coord_client, draft, certificate_qualification_theory_before_practical="on")

    response = coord_client.post(reverse("cases:plan-edit", args=[draft.pk]), data)

    assert response.status_code == 302
    assert rules(draft)[CertificateKind.QUALIFICATION][0] is True
    assert rules(draft)[CertificateKind.SKILL][0] is False
    assert configure_events(draft).get().changes == {
        "certificate:qualification": {
            "before": {"theory_before_practical": False},
            "after": {"theory_before_practical": True},
        }
    }


def test_edit_turns_theory_first_off_when_unticked(coord_client):
    plan = PlanFactory(
        open_plan=False, qualification_type=QualificationType.objects.get(code="MEM-ELEC-LV")
    )
    data = edit_data(coord_client, plan)
    assert data.pop("certificate_qualification_theory_before_practical") == "on"

    response = coord_client.post(reverse("cases:plan-edit", args=[plan.pk]), data)

    assert response.status_code == 302
    assert rules(plan)[CertificateKind.QUALIFICATION][0] is False
    assert list(configure_events(plan).get().changes) == ["certificate:qualification"]


def test_service_errors_land_on_the_input_they_name(coord_client, coord, draft):
    form = PlanConfigureForm(edit_data(coord_client, draft), plan=draft)
    assert form.is_valid()
    with pytest.raises(ValidationError) as info:
        plans.plan_configure(
            actor=coord,
            plan=draft,
            certificates={"skill": {"theory_before_practical": "yes"}},
            components={"practical": {"max_score": 0}, "hot_work": {"max_score": 100}},
            pass_marks={"safety": {"theory": 60}, "qualification": {"theory": -5}},
        )

    add_service_errors(form, info.value)

    assert form.errors == {
        "certificate_skill_theory_before_practical": [
            "职业技能等级证书「理论合格后方可计实操」须为是或否"
        ],
        "component_practical_max_score": ["科目「实操考试」满分须大于 0"],
        "mark_qualification_theory": ["职业资格证书「理论考试」合格分 -5 不能小于 0"],
        # Nothing on the page to put these next to.
        "__all__": ["本计划没有科目「动火作业安全管理考试」", "本计划没有证书「safety」"],
    }


def test_edit_without_changes_writes_no_audit_event(coord_client, draft):
    response = coord_client.post(
        reverse("cases:plan-edit", args=[draft.pk]), edit_data(coord_client, draft)
    )

    assert response.status_code == 302
    assert configure_events(draft).count() == 0


def test_pass_mark_above_the_maximum_shows_the_field_error_and_changes_nothing(coord_client, draft):
    data = edit_data(coord_client, draft, name="改过的名称", mark_qualification_theory="120")

    response = coord_client.post(reverse("cases:plan-edit", args=[draft.pk]), data)

    assert response.status_code == 400
    # The service's message, on the mark's input in the certificate's card.
    message = "职业资格证书「理论考试」合格分 120 超过满分 100"
    assert response.context["form"].errors == {"mark_qualification_theory": [message]}
    assert_error_in_card(response, "qualification", "mark_qualification_theory", message)
    draft.refresh_from_db()
    assert draft.name == "焊工联合评价 草稿"
    assert rules(draft)[CertificateKind.QUALIFICATION][1]["theory"] == 80
    assert configure_events(draft).count() == 0


def test_negative_pass_mark_shows_the_field_error_and_changes_nothing(coord_client, draft):
    data = edit_data(coord_client, draft, retake_limit="3", mark_skill_practical="-1")

    response = coord_client.post(reverse("cases:plan-edit", args=[draft.pk]), data)

    assert response.status_code == 400
    assert response.context["form"].errors == {"mark_skill_practical": ["确保该值大于或等于0。"]}
    draft.refresh_from_db()
    assert draft.retake_limit == 1
    assert rules(draft)[CertificateKind.SKILL][1]["practical"] == 60
    assert configure_events(draft).count() == 0


def test_lowering_a_maximum_below_unchanged_pass_marks_is_refused_on_each_mark(coord_client, draft):
    data = edit_data(coord_client, draft, component_theory_max_score="50")

    response = coord_client.post(reverse("cases:plan-edit", args=[draft.pk]), data)

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "mark_qualification_theory": ["职业资格证书「理论考试」合格分 80 超过满分 50"],
        "mark_skill_theory": ["职业技能等级证书「理论考试」合格分 60 超过满分 50"],
    }
    assert_error_in_card(
        response,
        "skill",
        "mark_skill_theory",
        "职业技能等级证书「理论考试」合格分 60 超过满分 50",
    )
    assert components(draft)[1] == ("theory", 100, "single", Decimal("5.0"))
    assert configure_events(draft).count() == 0


def test_lowering_a_maximum_with_its_marks_saves_them_together(coord_client, draft):
    data = edit_data(
        coord_client,
        draft,
        component_theory_max_score="50",
        mark_qualification_theory="40",
        mark_skill_theory="30",
    )

    response = coord_client.post(reverse("cases:plan-edit", args=[draft.pk]), data)

    assert response.status_code == 302
    assert components(draft)[1] == ("theory", 50, "single", Decimal("5.0"))
    assert rules(draft)[CertificateKind.QUALIFICATION][1]["theory"] == 40
    assert rules(draft)[CertificateKind.SKILL][1]["theory"] == 30


def test_editing_an_open_plan_is_refused(coord_client):
    plan = PlanFactory(name="已开放的计划")
    detail = reverse("exams:plan-detail", args=[plan.pk])

    shown = coord_client.get(reverse("cases:plan-edit", args=[plan.pk]))
    posted = coord_client.post(
        reverse("cases:plan-edit", args=[plan.pk]), {"name": "改名", "retake_limit": "5"}
    )

    assert (shown.status_code, shown.url) == (302, detail)
    assert messages_of(shown) == ["仅草稿状态可修改"]
    assert (posted.status_code, posted.url) == (302, detail)
    plan.refresh_from_db()
    assert (plan.name, plan.retake_limit) == ("已开放的计划", 1)
    assert configure_events(plan).count() == 0


def test_plan_page_links_the_edit_page_only_for_a_draft(coord_client, draft):
    edit_url = reverse("cases:plan-edit", args=[draft.pk])
    body = coord_client.get(reverse("exams:plan-detail", args=[draft.pk])).content.decode()
    assert f'href="{edit_url}"' in body

    open_plan = PlanFactory()
    body = coord_client.get(reverse("exams:plan-detail", args=[open_plan.pk])).content.decode()
    assert reverse("cases:plan-edit", args=[open_plan.pk]) not in body
    assert "仅草稿状态可修改" in body


# Open / close / archive ----------------------------------------------------------------


def test_buttons_open_close_and_archive_the_plan(coord_client, draft):
    detail = reverse("exams:plan-detail", args=[draft.pk])
    for name, status, label in [
        ("open", PlanStatus.OPEN, "开放报名"),
        ("close", PlanStatus.CLOSED, "截止报名"),
        ("archive", PlanStatus.ARCHIVED, "归档"),
    ]:
        assert f'data-transition="{name}"' in coord_client.get(detail).content.decode()
        response = coord_client.post(reverse("exams:plan-transition", args=[draft.pk, name]))
        assert (response.status_code, response.url) == (302, detail)
        assert messages_of(response) == [f"已执行：{label}"]
        draft.refresh_from_db()
        assert draft.status == status
    actions = AuditEvent.objects.filter(object_id=str(draft.pk), action__startswith="plan.")
    assert list(actions.order_by("seq").values_list("action", flat=True)) == [
        "plan.create",
        "plan.open",
        "plan.close",
        "plan.archive",
    ]


def test_a_button_from_the_wrong_state_shows_the_service_message(coord_client, draft):
    response = coord_client.post(reverse("exams:plan-transition", args=[draft.pk, "archive"]))

    assert response.status_code == 409
    assert messages_of(response) == ["评价计划当前状态为「草稿」，不能变为「已归档」"]
    draft.refresh_from_db()
    assert draft.status == PlanStatus.DRAFT


# Roles -------------------------------------------------------------------------------


def test_a_grader_gets_403_and_changes_nothing(client, draft):
    client.force_login(UserFactory(username="grader", roles=["grader"]))
    edit = reverse("cases:plan-edit", args=[draft.pk])

    assert client.get(reverse("cases:plan-create")).status_code == 403
    assert client.post(reverse("cases:plan-create"), create_post()).status_code == 403
    assert client.get(edit).status_code == 403
    assert client.post(edit, {"name": "改名"}).status_code == 403
    opened = client.post(reverse("exams:plan-transition", args=[draft.pk, "open"]))
    assert opened.status_code == 403
    draft.refresh_from_db()
    assert (draft.name, draft.status) == ("焊工联合评价 草稿", PlanStatus.DRAFT)
    assert EvaluationPlan.objects.count() == 1
