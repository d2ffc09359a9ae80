"""Forms of the exam pages. Like cases.forms they check shape only (required, types);
the rules are the services' (cases.plans, exams.sessions, exams.scheduling, ...), whose
ValidationError the view puts back on the form with `add_service_errors`."""

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from cases.forms import ANY, DateInput, Form, add_service_errors  # noqa: F401 - re-exported
from cases.models import EvaluationPlan, PlanStatus
from catalog.models import Component

from .models import Room, SessionStatus, StaffRole

PLAN_STATUS_LABELS = dict(PlanStatus.choices)
SESSION_STATUS_LABELS = dict(SessionStatus.choices)

# State buttons: transition name -> (label, css class). Only those the object may take
# are shown (FSM `get_available_status_transitions`).
PLAN_TRANSITIONS = {
    "open": (pgettext_lazy("plan transition", "开放报名"), "primary"),
    "close": (pgettext_lazy("plan transition", "截止报名"), ""),
    "archive": (pgettext_lazy("plan transition", "归档"), "danger"),
}
SESSION_TRANSITIONS = {
    "open": (pgettext_lazy("session transition", "开放编排"), "primary"),
    "freeze_roster": (pgettext_lazy("session transition", "锁定名单"), ""),
    "start": (pgettext_lazy("session transition", "开考"), "primary"),
    "close": (pgettext_lazy("session transition", "结束考试（未签到记为缺考）"), "danger"),
}


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", **kwargs)


def exam_component_choices() -> list[tuple[str, str]]:
    return list(
        Component.objects.filter(kind=Component.Kind.EXAM)
        .order_by("pk")
        .values_list("code", "name")
    )


class VenueForm(Form):
    name = forms.CharField(label=_("考点名称"), max_length=128)
    address = forms.CharField(label=_("地址"), max_length=256, required=False)


class RoomForm(Form):
    name = forms.CharField(label=_("考场"), max_length=64)
    capacity = forms.IntegerField(label=_("座位数"), min_value=1)


class SessionForm(Form):
    plan = forms.ModelChoiceField(
        label=_("评价计划"),
        queryset=EvaluationPlan.objects.exclude(status=PlanStatus.ARCHIVED).order_by(
            "-exam_date", "name"
        ),
        empty_label=_("请选择评价计划"),
    )
    room = forms.ModelChoiceField(
        label=_("考场"),
        queryset=Room.objects.select_related("venue"),
        empty_label=_("请选择考场"),
    )
    date = forms.DateField(label=_("考试日期"), widget=DateInput())
    start_time = forms.TimeField(label=_("开始时间"), widget=TimeInput())
    end_time = forms.TimeField(label=_("结束时间"), widget=TimeInput())
    capacity = forms.IntegerField(label=_("容量"), min_value=1)
    components = forms.MultipleChoiceField(label=_("考试科目"), widget=forms.CheckboxSelectMultiple)
    code = forms.CharField(
        label=_("场次编号"),
        max_length=16,
        required=False,
        help_text=_("留空按日期自动编号"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["components"].choices = exam_component_choices()


class SessionFilterForm(Form):
    plan = forms.ModelChoiceField(
        label=_("评价计划"),
        required=False,
        queryset=EvaluationPlan.objects.order_by("-exam_date", "name"),
        empty_label=_("全部"),
    )
    status = forms.ChoiceField(
        label=_("状态"), required=False, choices=ANY + list(SESSION_STATUS_LABELS.items())
    )


class StaffForm(Form):
    user = forms.ModelChoiceField(
        label=_("人员"),
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        empty_label=_("请选择"),
    )
    role = forms.ChoiceField(label=_("职责"), choices=StaffRole.choices)
    component = forms.ChoiceField(label=_("科目"), required=False)

    def __init__(self, *args, session=None, **kwargs):
        super().__init__(*args, **kwargs)
        components = session.components.order_by("pk") if session is not None else []
        self.fields["component"].choices = [("", _("不分科目"))] + [
            (c.code, c.name) for c in components
        ]


class BookingForm(Form):
    case = forms.ModelChoiceField(label=_("案件"), queryset=None, empty_label=_("请选择案件"))

    def __init__(self, *args, cases=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["case"].queryset = cases
        self.fields["case"].label_from_instance = lambda case: (
            f"#{case.pk} {case.candidate.masked_name} {case.candidate.masked_id_number}"
        )


class ReasonForm(Form):
    reason = forms.CharField(
        label=_("理由"), max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class CheckInForm(Form):
    code = forms.CharField(
        label=_("准考证号或身份证号码"),
        max_length=32,
        required=False,  # the service names an empty scan
        widget=forms.TextInput(
            attrs={
                "autofocus": True,
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "class": "scan-input",
                "placeholder": _("扫描准考证二维码或输入号码后按回车"),
            }
        ),
    )


class MisconductForm(Form):
    description = forms.CharField(
        label=_("违纪情况"), widget=forms.Textarea(attrs={"rows": 4}), required=False
    )
    evidence = forms.FileField(
        label=_("证据"),
        required=False,
        help_text=_("照片、视频或监考记录扫描件"),
    )


# Grading -------------------------------------------------------------------------------


def grid_entries(data, rows) -> tuple[list[dict], dict[str, str]]:
    """The entries a score-grid POST asks to save: one per row whose input is not
    empty (`score_<booking pk>`), in row order, with the batch's reason; and the typed
    values by ticket number (to put back on the page when the batch is refused)."""
    reason = (data.get("reason") or "").strip()
    entries, typed = [], {}
    for row in rows:
        value = (data.get(f"score_{row.pk}") or "").strip()
        typed[row.ticket_number] = value
        if value:
            entries.append({"ticket_number": row.ticket_number, "score": value, "reason": reason})
    return entries, typed


class ScoreImportForm(Form):
    file = forms.FileField(
        label=_("成绩文件（XLSX 或 CSV）"),
        help_text=_("列：准考证号、科目代码、分数，可选评次（单评/一评/二评）"),
        widget=forms.FileInput(attrs={"accept": ".xlsx,.csv"}),
    )
    reason = forms.CharField(
        label=_("修改理由"),
        required=False,
        max_length=2000,
        help_text=_("文件修改已录入的分数时必填"),
    )


# Quality review ----------------------------------------------------------------------------


class WarningReviewForm(Form):
    note = forms.CharField(
        label=_("审核意见"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class WarningAnswerForm(Form):
    answer = forms.CharField(
        label=_("考务反馈"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class ReviewNotesForm(Form):
    notes = forms.CharField(
        label=_("督导意见"),
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
