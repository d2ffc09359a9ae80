"""Evaluation plans (一试多证, notice §二(二)): one plan names a qualification type and an
occupation + level, the components sat once, and one pass rule per certificate.

`plan_create` fills components and pass rules from the catalog; a coordinator may
override them before opening the plan. Plan states: draft -> open -> closed ->
archived; candidates register only while it is open and within its window.
"""

from datetime import date
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from audit.exceptions import StateConflict
from audit.services import audit_record, snapshot
from catalog.models import Component, Occupation, QualificationType, SkillCertificateRule

from .models import (
    CertificateKind,
    EvaluationPlan,
    MarkingMode,
    PassMark,
    PlanCertificate,
    PlanComponent,
    PlanStatus,
)
from .roles import Role, require_role

PLAN_FIELDS = [
    "name",
    "qualification_type",
    "occupation",
    "level",
    "province",
    "exam_date",
    "registration_opens",
    "registration_closes",
    "retake_window_days",
    "retake_limit",
    "min_education",
    "min_work_years",
    "alternative_work_years",
    "require_photo",
    "status",
]
# The skill-level certificate is assessed on theory and practical (职业技能等级认定).
SKILL_COMPONENTS = ("theory", "practical")


@transaction.atomic(durable=True)
def plan_create(
    *,
    actor,
    name: str,
    qualification_type: str | QualificationType,
    occupation: str | Occupation,
    level: int,
    province: str,
    exam_date: date,
    double_marked: tuple[str, ...] = (),
    **options,
) -> EvaluationPlan:
    """A draft plan with the catalog's components and pass rules: the qualification
    type's components and marks, and the skill-level rule in force on the exam date
    (theory and practical, 60 each). `double_marked` lists component codes marked
    double-blind. Audited as `plan.create`."""
    require_role(actor, Role.COORDINATOR)
    qtype = (
        qualification_type
        if isinstance(qualification_type, QualificationType)
        else QualificationType.objects.get(code=qualification_type)
    )
    occupation = (
        occupation
        if isinstance(occupation, Occupation)
        else Occupation.objects.get(code=occupation)
    )
    if qtype.occupation_id != occupation.pk:
        raise ValidationError(
            {"occupation": [f"{qtype.name}对应的职业为{qtype.occupation.name}，与所选职业不符"]}
        )
    plan = EvaluationPlan(
        name=name,
        qualification_type=qtype,
        occupation=occupation,
        level=level,
        province=province,
        exam_date=exam_date,
        **options,
    )
    plan.full_clean(exclude=["status"])  # protected FSM field: set by transitions only
    plan.save()

    skill_rule = (
        SkillCertificateRule.objects.effective_on(exam_date).order_by("-effective_from").first()
    )
    if skill_rule is None:
        raise ValidationError({"exam_date": ["考试日期没有适用的职业技能等级证书规则"]})
    type_components = list(qtype.components.select_related("component").order_by("order"))
    codes = [qc.component.code for qc in type_components]
    codes += [code for code in SKILL_COMPONENTS if code not in codes]
    components = {c.code: c for c in Component.objects.filter(code__in=codes)}
    PlanComponent.objects.bulk_create(
        PlanComponent(
            plan=plan,
            component=components[code],
            max_score=components[code].max_score,
            marking_mode=MarkingMode.DOUBLE if code in double_marked else MarkingMode.SINGLE,
            order=order,
        )
        for order, code in enumerate(codes)
    )
    qualification = PlanCertificate.objects.create(
        plan=plan,
        kind=CertificateKind.QUALIFICATION,
        theory_before_practical=qtype.theory_before_practical,
    )
    PassMark.objects.bulk_create(
        PassMark(certificate=qualification, component=qc.component, pass_mark=qc.pass_mark)
        for qc in type_components
    )
    skill = PlanCertificate.objects.create(plan=plan, kind=CertificateKind.SKILL)
    PassMark.objects.bulk_create(
        [
            PassMark(
                certificate=skill,
                component=components["theory"],
                pass_mark=skill_rule.theory_pass_mark,
            ),
            PassMark(
                certificate=skill,
                component=components["practical"],
                pass_mark=skill_rule.practical_pass_mark,
            ),
        ]
    )
    audit_record(
        actor=actor,
        instance=plan,
        action="plan.create",
        to_state=plan.status,
        changes={k: {"before": None, "after": v} for k, v in snapshot(plan, PLAN_FIELDS).items()},
    )
    return plan


def _plan_transition(plan: EvaluationPlan, actor, name: str, target_label: str) -> EvaluationPlan:
    require_role(actor, Role.COORDINATOR)
    locked = EvaluationPlan.objects.select_for_update().get(pk=plan.pk)
    method = getattr(locked, name)
    if not can_proceed(method, check_conditions=False):
        raise StateConflict(
            f"评价计划当前状态为「{locked.get_status_display()}」，不能变为「{target_label}」",
            current_state=locked.status,
        )
    before = locked.status
    method()
    locked.save()
    audit_record(
        actor=actor,
        instance=locked,
        action=f"plan.{name}",
        from_state=before,
        to_state=locked.status,
    )
    return locked


@transaction.atomic(durable=True)
def plan_open(*, actor, plan: EvaluationPlan) -> EvaluationPlan:
    """draft -> open: registration may start. Needs at least one certificate whose pass
    rule names a component, and every pass-rule component among the plan's components."""
    components = set(plan.components.values_list("component_id", flat=True))
    marks = PassMark.objects.filter(certificate__plan=plan)
    if not marks.exists():
        raise ValidationError({"certificates": ["评价计划至少需要一项证书合格标准"]})
    missing = marks.exclude(component_id__in=components).select_related("component")
    if missing:
        raise ValidationError(
            {
                "certificates": [
                    f"合格标准中的科目「{m.component.name}」不在本计划科目中" for m in missing
                ]
            }
        )
    return _plan_transition(plan, actor, "open", str(PlanStatus.OPEN.label))


@transaction.atomic(durable=True)
def plan_close(*, actor, plan: EvaluationPlan) -> EvaluationPlan:
    """open -> closed: no further registration."""
    return _plan_transition(plan, actor, "close", str(PlanStatus.CLOSED.label))


@transaction.atomic(durable=True)
def plan_archive(*, actor, plan: EvaluationPlan) -> EvaluationPlan:
    """closed -> archived."""
    return _plan_transition(plan, actor, "archive", str(PlanStatus.ARCHIVED.label))


def registration_problem(plan: EvaluationPlan, on: date | None = None) -> str | None:
    on = on or timezone.localdate()
    if plan.status != PlanStatus.OPEN:
        return f"评价计划「{plan.name}」当前状态为「{plan.get_status_display()}」，不接受报名"
    if plan.registration_opens and on < plan.registration_opens:
        return f"评价计划「{plan.name}」报名自 {plan.registration_opens} 开始"
    if plan.registration_closes and on > plan.registration_closes:
        return f"评价计划「{plan.name}」报名已于 {plan.registration_closes} 截止"
    return None


SETTINGS = [
    "name",
    "exam_date",
    "registration_opens",
    "registration_closes",
    "retake_window_days",
    "retake_limit",
    "min_education",
    "min_work_years",
    "alternative_work_years",
    "require_photo",
    "female_retirement_age",
]


@transaction.atomic(durable=True)
def plan_configure(
    *,
    actor,
    plan: EvaluationPlan,
    components: dict[str, dict] | None = None,
    pass_marks: dict[str, dict[str, object]] | None = None,
    disabled_rows: list[int] | None = None,
    **settings,
) -> EvaluationPlan:
    """Override a draft plan's defaults: settings (SETTINGS), components
    ({code: {max_score, marking_mode, tolerance}}), pass marks ({certificate kind:
    {code: mark or None}}) and the attachment rows switched off for the province
    ("如无特别规定", only rows towards this plan's qualification type). Locks the plan;
    audited as `plan.configure` with every changed value."""
    require_role(actor, Role.COORDINATOR)
    plan = EvaluationPlan.objects.select_for_update().get(pk=plan.pk)
    if plan.status != PlanStatus.DRAFT:
        raise StateConflict(
            f"评价计划当前状态为「{plan.get_status_display()}」，只有草稿可以修改",
            current_state=plan.status,
        )
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValidationError({name: ["不可修改的字段"] for name in unknown})
    before = snapshot(plan, SETTINGS)
    for name, value in settings.items():
        setattr(plan, name, value)
    plan.full_clean(exclude=["status"])
    plan.save()
    changes = {
        name: {"before": before[name], "after": value}
        for name, value in snapshot(plan, SETTINGS).items()
        if before[name] != value
    }
    for code, values in (components or {}).items():
        row = plan.components.filter(component__code=code).first()
        if row is None:
            raise ValidationError({"components": [f"本计划没有科目「{code}」"]})
        old = snapshot(row, ["max_score", "marking_mode", "tolerance"])
        for name in ("max_score", "marking_mode", "tolerance"):
            if name in values:
                setattr(row, name, values[name])
        try:
            row.full_clean(exclude=["plan", "component"])
        except ValidationError as exc:
            raise ValidationError({"components": [f"{code}：{m}" for m in exc.messages]}) from None
        row.save()
        new = snapshot(row, ["max_score", "marking_mode", "tolerance"])
        if new != old:
            changes[f"component:{code}"] = {"before": old, "after": new}
    for kind, marks in (pass_marks or {}).items():
        for code, value in marks.items():
            mark = PassMark.objects.filter(
                certificate__plan=plan, certificate__kind=kind, component__code=code
            ).first()
            if mark is None:
                raise ValidationError(
                    {"pass_marks": [f"证书「{kind}」没有科目「{code}」的合格标准"]}
                )
            max_score = plan.components.get(component=mark.component).max_score
            if value is not None and not (0 <= float(value) <= max_score):
                raise ValidationError(
                    {"pass_marks": [f"{code} 的合格分须在 0 到 {max_score} 之间"]}
                )
            old = str(mark.pass_mark) if mark.pass_mark is not None else None
            mark.pass_mark = None if value is None else Decimal(str(value)).quantize(Decimal("0.1"))
            mark.save(update_fields=["pass_mark"])
            new = str(mark.pass_mark) if mark.pass_mark is not None else None
            if new != old:
                changes[f"pass_mark:{kind}:{code}"] = {"before": old, "after": new}
    if disabled_rows is not None:
        from catalog.models import RecognitionRule

        rules = list(RecognitionRule.objects.filter(row__in=disabled_rows))
        wrong = sorted(
            set(disabled_rows) - {r.row for r in rules if r.target_id == plan.qualification_type_id}
        )
        if wrong:
            raise ValidationError(
                {
                    "disabled_rows": [
                        f"序号 {', '.join(map(str, wrong))} 不是申请本计划证书的互认规则"
                    ]
                }
            )
        old = sorted(plan.disabled_rules.values_list("row", flat=True))
        plan.disabled_rules.set(rules)
        if old != sorted(disabled_rows):
            changes["disabled_rows"] = {"before": old, "after": sorted(disabled_rows)}
    if changes:
        audit_record(actor=actor, instance=plan, action="plan.configure", changes=changes)
    return plan
