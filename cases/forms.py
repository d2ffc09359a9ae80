"""Forms of the registration pages. They check shape only (required, types); every rule
of the domain is checked by the service the view calls, whose ValidationError is put
back on the form by `add_service_errors`."""

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from catalog.models import Component, Occupation, QualificationType, RecognitionRule

from .models import (
    CaseStatus,
    Education,
    EvaluationPlan,
    MarkingMode,
    Province,
    Sex,
    Verification,
)
from .roles import Role

# Labels of the model choices (translated on the models).
STATUS_LABELS = dict(CaseStatus.choices)
EDUCATION_LABELS = dict(Education.choices)
SEX_LABELS = dict(Sex.choices)
VERIFICATION_LABELS = dict(Verification.choices)
ROLE_LABELS = dict(Role.choices)
# Case transitions offered on the case page: name -> (button label, needs a reason).
TRANSITIONS = {
    "submit": (pgettext_lazy("transition", "提交审核"), False),
    "approve": (pgettext_lazy("transition", "审核通过"), False),
    "return_for_correction": (pgettext_lazy("transition", "退回修改"), True),
    "reject": (pgettext_lazy("transition", "不予受理"), True),
    "withdraw": (pgettext_lazy("transition", "撤回报名"), True),
}

ANY = [("", _("全部"))]


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ValidationError on `form`: known fields on the field, the rest
    (and errors without a field) at the top of the form. A form whose inputs do not
    match the service's keys one to one (the plan configure page: one `pass_marks` key,
    one input per certificate and component) places each error with its
    `service_error_field(key, error)`."""
    if not hasattr(error, "error_dict"):
        for message in error.messages:
            form.add_error(None, message)
        return
    locate = getattr(form, "service_error_field", None)
    for key, errors in error.error_dict.items():
        for item in errors:
            field = locate(key, item) if locate else key
            target = field if field in form.fields else None
            for message in item.messages:
                form.add_error(target, message)


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class Form(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")  # labels stand above their inputs
        super().__init__(*args, **kwargs)


class CandidateSearchForm(Form):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        widget=forms.TextInput(attrs={"placeholder": _("姓名、身份证号码或电话")}),
    )
    education = forms.ChoiceField(
        label=_("文化程度"), required=False, choices=ANY + list(EDUCATION_LABELS.items())
    )
    has_held = forms.ChoiceField(
        label=_("已持证书"),
        required=False,
        choices=[*ANY, ("yes", pgettext_lazy("has", "有")), ("no", pgettext_lazy("has", "无"))],
    )
    status = forms.ChoiceField(
        label=_("案件状态"), required=False, choices=ANY + list(STATUS_LABELS.items())
    )


class CaseFilterForm(Form):
    status = forms.ChoiceField(
        label=_("状态"), required=False, choices=ANY + list(STATUS_LABELS.items())
    )
    plan = forms.ModelChoiceField(
        label=_("评价计划"),
        required=False,
        queryset=EvaluationPlan.objects.all(),
        empty_label=_("全部"),
    )


class CandidateForm(Form):
    """Create (`candidate` None) or edit a candidate. On edit the ID number is left
    blank unless it is being changed, so the page never shows it unmasked."""

    id_number = forms.CharField(label=_("身份证号码"), max_length=18)
    name = forms.CharField(label=_("姓名"), max_length=64)
    phone = forms.CharField(label=_("联系电话"), max_length=20)
    education = forms.ChoiceField(
        label=_("文化程度"), choices=[("", _("请选择")), *EDUCATION_LABELS.items()]
    )
    sex = forms.ChoiceField(
        label=_("性别"),
        required=False,
        choices=[("", _("按身份证号码")), *SEX_LABELS.items()],
    )
    birth_date = forms.DateField(
        label=_("出生日期"),
        required=False,
        widget=DateInput(),
        help_text=_("可不填，由身份证号码得出；填写时须与身份证号码一致"),
    )
    photo = forms.FileField(
        label=_("照片"),
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png"}),
        help_text=_("JPEG 或 PNG"),
    )

    def __init__(self, *args, candidate=None, **kwargs):
        self.candidate = candidate
        if candidate is not None:
            kwargs.setdefault(
                "initial",
                {
                    "name": candidate.name,
                    "phone": candidate.phone,
                    "education": candidate.education,
                },
            )
        super().__init__(*args, **kwargs)
        self.occupations = list(Occupation.objects.order_by("code"))
        years = {}
        if candidate is not None:
            years = {w.occupation_id: w.years for w in candidate.work_experience.all()}
            self.fields["id_number"].required = False
            self.fields["id_number"].help_text = _("当前：%(masked)s。留空表示不修改。") % {
                "masked": candidate.masked_id_number
            }
        for occupation in self.occupations:
            self.fields[self.years_field(occupation)] = forms.DecimalField(
                label=_("%(name)s从业年限（年）") % {"name": occupation.name},
                required=False,
                min_value=0,
                max_digits=4,
                decimal_places=1,
                initial=years.get(occupation.pk),
            )

    @staticmethod
    def years_field(occupation: Occupation) -> str:
        return "years_" + occupation.code.replace("-", "_")

    def work_years(self) -> dict[str, object]:
        data = self.cleaned_data
        return {
            o.code: data[self.years_field(o)]
            for o in self.occupations
            if data.get(self.years_field(o)) is not None
        }

    def service_kwargs(self) -> dict:
        """The keyword arguments of services.candidate_create / candidate_update."""
        data = self.cleaned_data
        kwargs = {
            "name": data["name"],
            "phone": data["phone"],
            "education": data["education"],
            "work_years": self.work_years(),
        }
        if data.get("id_number"):
            kwargs["id_number"] = data["id_number"]
        if data.get("sex"):
            kwargs["sex"] = data["sex"]
        if data.get("birth_date"):
            kwargs["birth_date"] = data["birth_date"]
        if data.get("photo"):
            kwargs["photo"] = data["photo"]
        return kwargs


class HeldCertificateForm(Form):
    qualification_type = forms.ModelChoiceField(
        label=_("证书类型"),
        queryset=QualificationType.objects.order_by("code"),
        empty_label=_("请选择证书类型"),
    )
    number = forms.CharField(label=_("证书编号"), max_length=32)
    issuer_name = forms.CharField(label=_("发证机关"), max_length=128)
    issue_date = forms.DateField(label=_("发证日期"), widget=DateInput())
    expiry_date = forms.DateField(
        label=_("有效期至"),
        required=False,
        widget=DateInput(),
        help_text=_("留空按证书类型的有效期计算"),
    )
    review_due_date = forms.DateField(label=_("下次复审日期"), required=False, widget=DateInput())
    revoked_on = forms.DateField(label=_("吊销/注销日期"), required=False, widget=DateInput())


class HeldVerifyForm(Form):
    verification = forms.ChoiceField(
        label=_("核验结果"),
        choices=[
            (value, label)
            for value, label in VERIFICATION_LABELS.items()
            if value != Verification.UNVERIFIED
        ],
    )
    note = forms.CharField(
        label=_("核验说明"),
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": _("人工核验或未通过时必填")}),
    )


class CaseCreateForm(Form):
    plan = forms.ModelChoiceField(
        label=_("评价计划"),
        queryset=EvaluationPlan.objects.select_related("qualification_type", "occupation"),
        empty_label=_("请选择评价计划"),
    )


class TransitionForm(Form):
    reason = forms.CharField(
        label=_("理由"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


# Evaluation plans (cases.plans) ---------------------------------------------------------

ONE_DECIMAL = Decimal("0.1")
FEMALE_RETIREMENT_AGES = EvaluationPlan._meta.get_field("female_retirement_age").choices


def _one_decimal(value: Decimal | None) -> Decimal | None:
    # Stored with one decimal place; quantising here keeps the audit's "after" value
    # in the form the database hands back ("3.0", not "3").
    return None if value is None else value.quantize(ONE_DECIMAL)


class PlanSettingsForm(Form):
    """The plan settings shared by the create and configure pages (cases.plans.SETTINGS,
    without the name). Shape only, as in the API serializers; the service validates."""

    exam_date = forms.DateField(label=_("考试日期"), widget=DateInput())
    registration_opens = forms.DateField(label=_("报名开始"), required=False, widget=DateInput())
    registration_closes = forms.DateField(label=_("报名截止"), required=False, widget=DateInput())
    retake_window_days = forms.IntegerField(
        label=_("补考期限（天）"),
        min_value=0,
        max_value=32767,
        initial=365,
        help_text=_("自成绩公布之日起，可仅补考不合格科目"),
    )
    retake_limit = forms.IntegerField(
        label=_("补考次数上限"), min_value=0, max_value=32767, initial=1
    )
    min_education = forms.ChoiceField(
        label=_("最低文化程度"),
        required=False,
        choices=[("", _("不限")), *EDUCATION_LABELS.items()],
    )
    min_work_years = forms.DecimalField(
        label=_("本职业最低从业年限（年）"),
        min_value=0,
        max_digits=4,
        decimal_places=1,
        initial=Decimal(0),
    )
    alternative_work_years = forms.DecimalField(
        label=_("无下一级证书时所需从业年限（年）"),
        required=False,
        min_value=0,
        max_digits=4,
        decimal_places=1,
        help_text=_("国家职业标准的工作年限路径；留空表示申报四级及以上须比照认定或持下一级证书"),
    )
    female_retirement_age = forms.TypedChoiceField(
        label=_("女性原法定退休年龄"), coerce=int, choices=FEMALE_RETIREMENT_AGES, initial=50
    )
    require_photo = forms.BooleanField(label=_("须上传照片"), required=False, initial=True)

    def clean_min_work_years(self):
        return _one_decimal(self.cleaned_data["min_work_years"])

    def clean_alternative_work_years(self):
        return _one_decimal(self.cleaned_data["alternative_work_years"])

    def clean(self):
        data = super().clean()
        opens, closes = data.get("registration_opens"), data.get("registration_closes")
        # The database constraint (registration_window_ordered) would refuse it too,
        # but with a message naming the constraint rather than the field.
        if opens and closes and closes < opens:
            self.add_error("registration_closes", _("报名截止日期不能早于报名开始日期"))
        return data


def exam_components():
    return Component.objects.filter(kind=Component.Kind.EXAM).order_by("pk")


def recognition_rows(**filters) -> list[tuple[int, str]]:
    """Choices of attachment rows (互通互认) for `disabled_rows`; naming the target
    too when the rows lead to different types (the create page, before one is chosen)."""
    rules = (
        RecognitionRule.objects.filter(**filters)
        .select_related("held", "target")
        .prefetch_related("exempt")
        .order_by("row")
    )
    choices = []
    for rule in rules:
        values = {
            "row": rule.row,
            "held": rule.held.name,
            "target": rule.target.name,
            "exempt": "、".join(c.name for c in rule.exempt.all()),
        }
        if "target" in filters:
            label = _("序号%(row)s：持%(held)s，免%(exempt)s") % values
        else:
            label = _("序号%(row)s：持%(held)s，申请%(target)s，免%(exempt)s") % values
        choices.append((rule.row, label))
    return choices


class PlanCreateForm(PlanSettingsForm):
    """The new-plan page (plans.plan_create). Components and pass rules come from the
    catalog and are adjusted on the configure page, once the qualification type fixes
    which ones exist. Rows switched off for the province may be chosen here already, so
    the plan never exists with them on; the service refuses a row that does not lead
    to the chosen type, on this field."""

    name = forms.CharField(label=_("名称"), max_length=128)
    qualification_type = forms.ModelChoiceField(
        label=_("职业资格证书"),
        queryset=QualificationType.objects.order_by("code"),
        empty_label=_("请选择证书类型"),
    )
    occupation = forms.ModelChoiceField(
        label=_("职业（工种）"),
        queryset=Occupation.objects.order_by("code"),
        empty_label=_("请选择职业"),
    )
    level = forms.TypedChoiceField(label=_("技能等级"), coerce=int)
    province = forms.ChoiceField(label=_("省份"), choices=[("", _("请选择")), *Province.choices])
    double_marked = forms.MultipleChoiceField(
        label=_("双盲评科目"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("所选科目由两名考评员背靠背评分，差值超过允许误差时由主考评员仲裁"),
    )
    disabled_rows = forms.TypedMultipleChoiceField(
        label=_("本省不适用的互认规则"),
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("“如无特别规定”：本省另有规定时关闭对应序号；仅可关闭申请所选证书的序号"),
    )

    field_order = [
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
        "female_retirement_age",
        "require_photo",
        "double_marked",
        "disabled_rows",
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Built per request: `%` on a lazy string would fix the language at import.
        self.fields["level"].choices = [
            (i, gettext("%(level)s级") % {"level": i}) for i in range(5, 0, -1)
        ]
        self.fields["double_marked"].choices = list(exam_components().values_list("code", "name"))
        self.fields["disabled_rows"].choices = recognition_rows()

    def service_kwargs(self) -> dict:
        """The keyword arguments of plans.plan_create."""
        data = dict(self.cleaned_data)
        data["double_marked"] = tuple(data["double_marked"])
        data["disabled_rows"] = tuple(data["disabled_rows"])
        return data


class PlanConfigureForm(PlanSettingsForm):
    """The configure page of a draft plan (plans.plan_configure): its settings, each
    scored component's maximum, marking mode and tolerance, each certificate's pass
    marks and whether its theory must pass first, and the attachment rows switched off
    for the province.

    Only what changed is sent, so the audit event lists exactly the coordinator's edits.
    Completion components (安全培训) have no score, hence no fields. A pass mark above
    its maximum is the service's to refuse (it checks the plan as it would be after the
    change); `service_error_field` puts its message on the mark's input.
    """

    name = forms.CharField(label=_("名称"), max_length=128)
    disabled_rows = forms.TypedMultipleChoiceField(
        label=_("本省不适用的互认规则"),
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("“如无特别规定”：本省另有规定时关闭对应序号"),
    )

    # plans.SETTINGS: what a draft may change (type, occupation, level and province
    # decide the components, so they are fixed at creation).
    setting_names = ["name", *PlanSettingsForm.base_fields]
    field_order = [*setting_names, "disabled_rows"]

    def __init__(self, *args, plan: EvaluationPlan, **kwargs):
        self.plan = plan
        self.plan_components = [
            pc
            for pc in plan.components.select_related("component")
            if pc.component.kind == Component.Kind.EXAM
        ]
        self.plan_certificates = list(
            plan.certificates.prefetch_related("marks__component").order_by("kind")
        )
        initial = {name: getattr(plan, name) for name in self.setting_names}
        initial["disabled_rows"] = sorted(plan.disabled_rules.values_list("row", flat=True))
        kwargs["initial"] = initial
        super().__init__(*args, **kwargs)

        self.fields["disabled_rows"].choices = recognition_rows(target=plan.qualification_type)
        if not self.fields["disabled_rows"].choices:
            del self.fields["disabled_rows"]  # no attachment row leads to this type
        for pc in self.plan_components:
            code = pc.component.code
            self.fields[self.component_field(code, "max_score")] = forms.IntegerField(
                label=_("%(name)s满分") % {"name": pc.component.name},
                min_value=1,
                max_value=32767,
                initial=pc.max_score,
            )
            self.fields[self.component_field(code, "marking_mode")] = forms.ChoiceField(
                label=_("%(name)s评分方式") % {"name": pc.component.name},
                choices=MarkingMode.choices,
                initial=pc.marking_mode,
            )
            self.fields[self.component_field(code, "tolerance")] = forms.DecimalField(
                label=_("%(name)s双评允许误差") % {"name": pc.component.name},
                min_value=0,
                max_digits=4,
                decimal_places=1,
                initial=pc.tolerance,
            )
        for certificate in self.plan_certificates:
            self.fields[self.certificate_field(certificate.kind)] = forms.BooleanField(
                label=_("理论合格后方可计实操"),
                required=False,
                initial=certificate.theory_before_practical,
                help_text=_("理论未合格时，实操成绩不计入本证书"),
            )
            for mark in certificate.marks.all():
                if mark.component.kind != Component.Kind.EXAM:
                    continue
                self.fields[self.mark_field(certificate.kind, mark.component.code)] = (
                    forms.DecimalField(
                        # Shown in its certificate's card, which names the certificate.
                        label=_("%(name)s合格分") % {"name": mark.component.name},
                        min_value=0,
                        max_digits=5,
                        decimal_places=1,
                        initial=mark.pass_mark,
                    )
                )

    @staticmethod
    def component_field(code: str, attribute: str) -> str:
        return f"component_{code}_{attribute}"

    @staticmethod
    def mark_field(kind: str, code: str) -> str:
        return f"mark_{kind}_{code}"

    @staticmethod
    def certificate_field(kind: str) -> str:
        return f"certificate_{kind}_theory_before_practical"

    def service_error_field(self, key: str, error: ValidationError) -> str:
        """The input a plan_configure error is about, from the params the service
        gives it: a certificate's mark (also when a lowered maximum is the cause, as
        the message names the mark), a component's setting, a certificate's rule."""
        params = error.params or {}
        kind, code, attribute = params.get("kind"), params.get("component"), params.get("attribute")
        if kind and code:
            name = self.mark_field(kind, code)
        elif code and attribute:
            name = self.component_field(code, attribute)
        elif kind and attribute:
            name = self.certificate_field(kind)
        else:
            return key
        return name if name in self.fields else key

    # What the template lays out: settings in the grid, one row per component, one
    # card per certificate (completion marks shown without an input).

    def settings_fields(self):
        return [self[name] for name in self.field_order if name in self.fields]

    def component_rows(self):
        return [
            {
                "component": pc.component,
                "cells": [
                    self[self.component_field(pc.component.code, attribute)]
                    for attribute in ("max_score", "marking_mode", "tolerance")
                ],
            }
            for pc in self.plan_components
        ]

    def certificate_rows(self):
        rows = []
        for certificate in self.plan_certificates:
            marks = []
            for mark in certificate.marks.all():
                name = self.mark_field(certificate.kind, mark.component.code)
                field = self[name] if name in self.fields else None
                marks.append({"component": mark.component, "field": field})
            rows.append(
                {
                    "certificate": certificate,
                    "theory_before_practical": self[self.certificate_field(certificate.kind)],
                    "marks": marks,
                }
            )
        return rows

    def clean(self):
        data = super().clean()
        for name in list(data):
            if name.endswith("_tolerance"):
                data[name] = _one_decimal(data[name])
        return data

    def service_kwargs(self) -> dict:
        """The keyword arguments of plans.plan_configure: only the changed values."""
        data = self.cleaned_data
        changed = set(self.changed_data)
        kwargs = {name: data[name] for name in self.setting_names if name in changed}
        certificates = {
            c.kind: {"theory_before_practical": data[self.certificate_field(c.kind)]}
            for c in self.plan_certificates
            if self.certificate_field(c.kind) in changed
        }
        if certificates:
            kwargs["certificates"] = certificates
        components = {}
        for pc in self.plan_components:
            code = pc.component.code
            values = {
                attribute: data[self.component_field(code, attribute)]
                for attribute in ("max_score", "marking_mode", "tolerance")
                if self.component_field(code, attribute) in changed
            }
            if values:
                components[code] = values
        if components:
            kwargs["components"] = components
        pass_marks = {}
        for certificate in self.plan_certificates:
            for mark in certificate.marks.all():
                name = self.mark_field(certificate.kind, mark.component.code)
                if name in changed:
                    pass_marks.setdefault(certificate.kind, {})[mark.component.code] = data[name]
        if pass_marks:
            kwargs["pass_marks"] = pass_marks
        if "disabled_rows" in changed:
            kwargs["disabled_rows"] = data["disabled_rows"]
        return kwargs
