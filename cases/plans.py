"""Evaluation plans (一试多证, notice §二(二)): one plan names a qualification type and an
occupation + level, the components sat once, and one pass rule per certificate.

`plan_create` fills components and pass rules from the catalog; a coordinator may
override them before opening the plan. Plan states: draft -> open -> closed ->
archived; candidates register only while it is open and within its window.
"""

from datetime import date
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from audit.exceptions import StateConflict
from audit.services import audit_record, snapshot
from catalog.models import (
    Component,
    Occupation,
    QualificationType,
    RecognitionRule,
    SkillCertificateRule,
)

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
# Levels 2 and 1 (技师、高级技师) also need a 综合评审 (SkillCertificateRule.
# review_required_levels). The national occupational skill standards (国家职业技能标准,
# "鉴定方式") score it like theory and practical: "均实行百分制，成绩皆达60分（含）以上者
# 为合格". The rule has no field for it, hence the constant. The panel records one
# agreed score, so the component is single-marked unless the plan asks otherwise.
REVIEW_COMPONENT = "review"
REVIEW_PASS_MARK = 60


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
    disabled_rows: list[int] | tuple[int, ...] = (),
    **options,
) -> EvaluationPlan:
    """A draft plan with the catalog's components and pass rules: the qualification
    type's components and marks, and the skill-level rule in force on the exam date
    (theory and practical, 60 each; for the levels the rule lists, also 综合评审 at 60,
    which the qualification certificate does not require). `double_marked` lists
    component codes marked double-blind; `disabled_rows` the attachment rows switched
    off for the province ("如无特别规定"), each a row towards the qualification type;
    they are set in the same transaction, so no one sees the plan with them still on.
    Audited as `plan.create`, with the rows when there are any."""
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
    rules = _rules_to_switch_off(qtype, disabled_rows) if disabled_rows else []
    plan.save()
    if rules:
        plan.disabled_rules.set(rules)

    skill_rule = (
        SkillCertificateRule.objects.effective_on(exam_date).order_by("-effective_from").first()
    )
    if skill_rule is None:
        raise ValidationError({"exam_date": ["考试日期没有适用的职业技能等级证书规则"]})
    type_components = list(qtype.components.select_related("component").order_by("order"))
    codes = [qc.component.code for qc in type_components]
    needs_review = plan.level in skill_rule.levels_needing_review
    skill_codes = (*SKILL_COMPONENTS, REVIEW_COMPONENT) if needs_review else SKILL_COMPONENTS
    codes += [code for code in skill_codes if code not in codes]
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
    skill_marks = [
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
    if needs_review:
        skill_marks.append(
            PassMark(
                certificate=skill,
                component=components[REVIEW_COMPONENT],
                pass_mark=REVIEW_PASS_MARK,
            )
        )
    PassMark.objects.bulk_create(skill_marks)
    changes = {k: {"before": None, "after": v} for k, v in snapshot(plan, PLAN_FIELDS).items()}
    if rules:
        changes["disabled_rows"] = {"before": None, "after": sorted(r.row for r in rules)}
    audit_record(
        actor=actor,
        instance=plan,
        action="plan.create",
        to_state=plan.status,
        changes=changes,
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


# What plan_configure may change on a component and on a certificate.
COMPONENT_SETTINGS = ["max_score", "marking_mode", "tolerance"]
CERTIFICATE_SETTINGS = ["theory_before_practical"]
ONE_DECIMAL = Decimal("0.1")


def _error(text: str, /, **params) -> ValidationError:
    """A message with its params kept: the configure page reads `kind`, `component` and
    `attribute` to show the message next to the input it is about."""
    return ValidationError(text, params=params)


def _number(value: Decimal) -> str:
    # "120", not "120.0" or "1.2E+2", in messages.
    return f"{value.normalize():f}"


def _component_name(code: str) -> str:
    return Component.objects.filter(code=code).values_list("name", flat=True).first() or code


def _rules_to_switch_off(qualification_type: QualificationType, rows) -> list[RecognitionRule]:
    """The attachment rows `rows`, each of which must lead to `qualification_type`: "如无
    特别规定" lets a province switch off a row that would exempt its own candidates."""
    rules = list(RecognitionRule.objects.filter(row__in=rows, target=qualification_type))
    wrong = sorted(set(rows) - {rule.row for rule in rules})
    if wrong:
        raise ValidationError(
            {"disabled_rows": [f"序号 {', '.join(map(str, wrong))} 不是申请本计划证书的互认规则"]}
        )
    return rules


@transaction.atomic(durable=True)
def plan_configure(
    *,
    actor,
    plan: EvaluationPlan,
    certificates: dict[str, dict[str, object]] | None = None,
    components: dict[str, dict] | None = None,
    pass_marks: dict[str, dict[str, object]] | None = None,
    disabled_rows: list[int] | None = None,
    **settings,
) -> EvaluationPlan:
    """Override a draft plan's defaults: settings (SETTINGS), certificates ({kind:
    {theory_before_practical}}), components ({code: {max_score, marking_mode,
    tolerance}}), pass marks ({certificate kind: {code: mark or None}}) and the
    attachment rows switched off for the province ("如无特别规定", only rows towards this
    plan's qualification type).

    The plan as it would be afterwards is checked as a whole, so lowering a maximum
    below a pass mark that was not sent is refused too. Every problem is reported at
    once, keyed `certificates` / `components` / `pass_marks` / `disabled_rows` or by
    setting, naming the certificate and component; nothing is written unless all pass.
    Locks the plan; audited as `plan.configure` with every changed value (none: no
    event). Refuses a plan that is no longer a draft (StateConflict)."""
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
    errors: dict[str, list[ValidationError]] = {}

    def refuse(key: str, error: ValidationError) -> None:
        errors.setdefault(key, []).append(error)

    # Everything is changed in memory and checked first, then written.
    before = snapshot(plan, SETTINGS)
    for name, value in settings.items():
        setattr(plan, name, value)
    try:
        plan.full_clean(exclude=["status"])
    except ValidationError as exc:
        for key, messages in exc.error_dict.items():
            errors.setdefault(key, []).extend(messages)

    plan_certificates = {c.kind: c for c in plan.certificates.all()}
    certificates_before = {
        kind: snapshot(c, CERTIFICATE_SETTINGS) for kind, c in plan_certificates.items()
    }
    for kind, values in (certificates or {}).items():
        certificate = plan_certificates.get(kind)
        if certificate is None:
            refuse("certificates", _error("本计划没有证书「%(kind)s」", kind=kind))
            continue
        label = certificate.get_kind_display()
        for attribute, value in values.items():
            if attribute not in CERTIFICATE_SETTINGS:
                refuse(
                    "certificates",
                    _error(
                        "%(label)s不可修改「%(attribute)s」",
                        kind=kind,
                        attribute=attribute,
                        label=label,
                    ),
                )
            elif not isinstance(value, bool):
                refuse(
                    "certificates",
                    _error(
                        "%(label)s「%(field)s」须为是或否",
                        kind=kind,
                        attribute=attribute,
                        label=label,
                        field=PlanCertificate._meta.get_field(attribute).verbose_name,
                    ),
                )
            else:
                setattr(certificate, attribute, value)

    plan_components = {pc.component.code: pc for pc in plan.components.select_related("component")}
    components_before = {
        code: snapshot(pc, COMPONENT_SETTINGS) for code, pc in plan_components.items()
    }
    bad_maximum = set()  # components whose new maximum is itself refused
    for code, values in (components or {}).items():
        row = plan_components.get(code)
        if row is None:
            refuse(
                "components",
                _error("本计划没有科目「%(name)s」", component=code, name=_component_name(code)),
            )
            continue
        name = row.component.name
        for attribute in sorted(set(values) - set(COMPONENT_SETTINGS)):
            refuse(
                "components",
                _error(
                    "科目「%(name)s」不可修改「%(attribute)s」",
                    component=code,
                    attribute=attribute,
                    name=name,
                ),
            )
        for attribute in COMPONENT_SETTINGS:
            if attribute in values:
                setattr(row, attribute, values[attribute])
        try:
            # The unique pair (plan, component) does not change; the positive maximum
            # (max_score_positive) is checked below with a message naming the component.
            row.full_clean(
                exclude=["plan", "component"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as exc:
            for attribute, messages in exc.message_dict.items():
                if attribute == "max_score":
                    bad_maximum.add(code)
                for message in messages:
                    refuse(
                        "components",
                        _error(
                            "科目「%(name)s」%(field)s：%(message)s",
                            component=code,
                            attribute=attribute,
                            name=name,
                            field=PlanComponent._meta.get_field(attribute).verbose_name,
                            message=message,
                        ),
                    )
        if code not in bad_maximum and row.max_score < 1:
            bad_maximum.add(code)
            refuse(
                "components",
                _error(
                    "科目「%(name)s」满分须大于 0",
                    component=code,
                    attribute="max_score",
                    name=name,
                ),
            )

    marks = {
        (m.certificate.kind, m.component.code): m
        for m in PassMark.objects.filter(certificate__plan=plan).select_related(
            "certificate", "component"
        )
    }
    marks_before = {key: m.pass_mark for key, m in marks.items()}
    sent = set()
    for kind, values in (pass_marks or {}).items():
        if kind not in plan_certificates:
            refuse("pass_marks", _error("本计划没有证书「%(kind)s」", kind=kind))
            continue
        label = plan_certificates[kind].get_kind_display()
        for code, value in values.items():
            mark = marks.get((kind, code))
            if mark is None:
                refuse(
                    "pass_marks",
                    _error(
                        "%(label)s没有科目「%(name)s」的合格标准",
                        kind=kind,
                        component=code,
                        label=label,
                        name=_component_name(code),
                    ),
                )
                continue
            sent.add((kind, code))
            params = {"kind": kind, "component": code, "label": label, "name": mark.component.name}
            if value is None:
                mark.pass_mark = None  # no mark: the component must be completed
                continue
            try:
                number = Decimal(str(value)).quantize(ONE_DECIMAL)
            except InvalidOperation:
                refuse("pass_marks", _error("%(label)s「%(name)s」合格分须为数字", **params))
                continue
            if number < 0:
                refuse(
                    "pass_marks",
                    _error(
                        "%(label)s「%(name)s」合格分 %(mark)s 不能小于 0",
                        mark=_number(number),
                        **params,
                    ),
                )
                continue
            mark.pass_mark = number

    # The resulting state: a mark above its component's maximum could never be reached,
    # whether the mark or the maximum was changed. Keyed by what the caller sent.
    for (kind, code), mark in marks.items():
        row = plan_components.get(code)
        if mark.pass_mark is None or row is None or code in bad_maximum:
            continue
        if mark.pass_mark > row.max_score:
            refuse(
                "pass_marks" if (kind, code) in sent else "components",
                _error(
                    "%(label)s「%(name)s」合格分 %(mark)s 超过满分 %(max_score)s",
                    kind=kind,
                    component=code,
                    label=plan_certificates[kind].get_kind_display(),
                    name=row.component.name,
                    mark=_number(mark.pass_mark),
                    max_score=row.max_score,
                ),
            )

    rules = None
    if disabled_rows is not None:
        try:
            rules = _rules_to_switch_off(plan.qualification_type, disabled_rows)
        except ValidationError as exc:
            errors.setdefault("disabled_rows", []).extend(exc.error_dict["disabled_rows"])
    if errors:
        raise ValidationError(errors)

    changes = {
        name: {"before": before[name], "after": value}
        for name, value in snapshot(plan, SETTINGS).items()
        if before[name] != value
    }
    if changes:
        plan.save()
    for kind, certificate in plan_certificates.items():
        new = snapshot(certificate, CERTIFICATE_SETTINGS)
        if new != certificates_before[kind]:
            certificate.save(update_fields=CERTIFICATE_SETTINGS)
            changes[f"certificate:{kind}"] = {"before": certificates_before[kind], "after": new}
    for code, row in plan_components.items():
        new = snapshot(row, COMPONENT_SETTINGS)
        if new != components_before[code]:
            row.save(update_fields=COMPONENT_SETTINGS)
            changes[f"component:{code}"] = {"before": components_before[code], "after": new}
    for (kind, code), mark in marks.items():
        old = marks_before[(kind, code)]
        if mark.pass_mark != old:
            mark.save(update_fields=["pass_mark"])
            changes[f"pass_mark:{kind}:{code}"] = {
                "before": None if old is None else str(old),
                "after": None if mark.pass_mark is None else str(mark.pass_mark),
            }
    if rules is not None:
        old_rows = sorted(plan.disabled_rules.values_list("row", flat=True))
        new_rows = sorted({rule.row for rule in rules})
        if old_rows != new_rows:
            plan.disabled_rules.set(rules)
            changes["disabled_rows"] = {"before": old_rows, "after": new_rows}
    if changes:
        audit_record(actor=actor, instance=plan, action="plan.configure", changes=changes)
    return plan
