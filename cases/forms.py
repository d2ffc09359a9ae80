"""Forms of the registration pages. They check shape only (required, types); every rule
of the domain is checked by the service the view calls, whose ValidationError is put
back on the form by `add_service_errors`."""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from catalog.models import Occupation, QualificationType

from .models import CaseStatus, Education, EvaluationPlan, Sex, Verification
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
    (and errors without a field) at the top of the form."""
    if not hasattr(error, "error_dict"):
        for message in error.messages:
            form.add_error(None, message)
        return
    for field, messages in error.message_dict.items():
        target = field if field in form.fields else None
        for message in messages:
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
