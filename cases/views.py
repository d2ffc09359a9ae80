"""Pages of registration and eligibility review, and of setting up evaluation plans.

Each view does only: authentication, role check, a form, ONE service (or selector) call,
render or redirect. Rules live in cases.services and cases.eligibility; their errors are
shown here: ValidationError on the form, EligibilityError / StateConflict as messages.
"""

from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_fsm import ConcurrentTransition

from audit.exceptions import StateConflict
from audit.selectors import audit_event_list_recent
from config.downloads import accel_redirect_response

from . import imports, plans, selectors, services
from .eligibility import evaluate
from .exceptions import EligibilityError
from .forms import (
    TRANSITIONS,
    CandidateForm,
    CandidateSearchForm,
    CaseCreateForm,
    CaseFilterForm,
    HeldCertificateForm,
    HeldVerifyForm,
    PlanConfigureForm,
    PlanCreateForm,
    TransitionForm,
    add_service_errors,
)
from .models import (
    Candidate,
    Case,
    CaseStatus,
    EvaluationPlan,
    HeldCertificate,
    ImportJob,
    PlanStatus,
)
from .roles import Role, has_role

PAGE_SIZE = 25
PREVIEW_PLANS = 10
TRANSITION_SERVICES = {
    "submit": services.case_submit,
    "approve": services.case_approve,
    "return_for_correction": services.case_return_for_correction,
    "reject": services.case_reject,
    "withdraw": services.case_withdraw,
}


def coordinator_required(view):
    """Login, then the coordinator role (admin holds every role); 403 otherwise."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not has_role(request.user, Role.COORDINATOR):
            raise PermissionDenied(_("此页面仅限考务人员使用"))
        return view(request, *args, **kwargs)

    return wrapped


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


# Dashboard -------------------------------------------------------------------------


@login_required
def dashboard(request):
    if not has_role(request.user, Role.COORDINATOR):
        # Other roles land here after login; they see no registration data.
        return render(request, "cases/dashboard.html", {"limited": True})
    return render(
        request,
        "cases/dashboard.html",
        {
            "status_counts": selectors.case_counts_by_status(),
            "plans": selectors.plan_case_counts(),
            "events": audit_event_list_recent(),
        },
    )


# Candidates ------------------------------------------------------------------------


@coordinator_required
def candidate_list(request):
    form = CandidateSearchForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    candidates = selectors.candidate_list(
        user=request.user,
        search=data.get("q", ""),
        filters={k: data.get(k) for k in ("education", "has_held", "status")},
    )
    return render(
        request, "cases/candidate_list.html", {"form": form, "page": _page(request, candidates)}
    )


@coordinator_required
def candidate_create(request):
    form = CandidateForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            candidate = services.candidate_create(actor=request.user, **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("考生已登记"))
            return redirect(candidate)
    return render(request, "cases/candidate_form.html", {"form": form, "candidate": None})


@coordinator_required
def candidate_edit(request, pk):
    candidate = selectors.candidate_get(pk=pk)
    if candidate is None:
        raise Http404
    form = CandidateForm(request.POST or None, request.FILES or None, candidate=candidate)
    if request.method == "POST" and form.is_valid():
        try:
            candidate = services.candidate_update(
                actor=request.user, candidate=candidate, **form.service_kwargs()
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("考生信息已保存"))
            return redirect(candidate)
    return render(request, "cases/candidate_form.html", {"form": form, "candidate": candidate})


def _candidate_page(request, pk, *, status=200, revealed_id_number="", **forms):
    """The candidate page, with any bound form that failed put back in place."""
    candidate = selectors.candidate_get(pk=pk)
    if candidate is None:
        raise Http404
    held_list = list(candidate.held_certificates.all())
    bound_verify = forms.pop("verify_form", None)
    for held in held_list:
        if bound_verify is not None and bound_verify.held_pk == held.pk:
            held.verify_form = bound_verify
        else:
            held.verify_form = HeldVerifyForm(auto_id=f"id_verify{held.pk}_%s")
    today = timezone.localdate()
    # The preview covers the next plans to examine (each costs a few catalog reads).
    plans = list(selectors.plan_list(exam_from=today)[:PREVIEW_PLANS])
    context = {
        "candidate": candidate,
        "held_list": held_list,
        "revealed_id_number": revealed_id_number,
        "held_form": forms.get("held_form") or HeldCertificateForm(auto_id="id_held_%s"),
        "case_form": forms.get("case_form") or CaseCreateForm(auto_id="id_case_%s"),
        "previews": selectors.plan_previews(candidate=candidate, plans=plans, on=today),
        "component_names": selectors.component_names(),
        "occupation_names": selectors.occupation_names(),
    }
    return render(request, "cases/candidate_detail.html", context, status=status)


@coordinator_required
def candidate_detail(request, pk):
    return _candidate_page(request, pk)


@coordinator_required
def candidate_photo(request, pk):
    """The candidate's photo, for coordinators only (photos are never served from
    /media/); private caching, since it is personal data."""
    candidate = get_object_or_404(Candidate, pk=pk)
    if not candidate.photo:
        raise Http404
    # Behind nginx (PROTECTED_MEDIA_PREFIX) nginx sends the file after this check.
    response = accel_redirect_response(candidate.photo.name, content_type="image/jpeg")
    if response is None:
        response = FileResponse(candidate.photo.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=300"
    return response


@never_cache
@require_POST
@coordinator_required
def candidate_reveal_id(request, pk):
    candidate = get_object_or_404(Candidate, pk=pk)
    # Rendered in this response only (never stored in the session); each display audited.
    number = services.candidate_reveal_id_number(actor=request.user, candidate=candidate)
    return _candidate_page(request, pk, revealed_id_number=number)


@require_POST
@coordinator_required
def held_create(request, pk):
    candidate = get_object_or_404(Candidate, pk=pk)
    form = HeldCertificateForm(request.POST, auto_id="id_held_%s")
    if form.is_valid():
        try:
            services.held_certificate_create(
                actor=request.user, candidate=candidate, **form.cleaned_data
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("已持证书已登记"))
            return redirect(reverse("cases:candidate-detail", args=[pk]) + "#held")
    return _candidate_page(request, pk, status=400, held_form=form)


@require_POST
@coordinator_required
def held_verify(request, pk):
    held = get_object_or_404(HeldCertificate, pk=pk)
    form = HeldVerifyForm(request.POST, auto_id=f"id_verify{held.pk}_%s")
    form.held_pk = held.pk
    if form.is_valid():
        try:
            services.held_certificate_verify(
                actor=request.user,
                held=held,
                verification=form.cleaned_data["verification"],
                note=form.cleaned_data["note"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("核验结果已记录"))
            return redirect(reverse("cases:candidate-detail", args=[held.candidate_id]) + "#held")
    return _candidate_page(request, held.candidate_id, status=400, verify_form=form)


# Cases -----------------------------------------------------------------------------


@require_POST
@coordinator_required
def case_create(request, pk):
    candidate = get_object_or_404(Candidate, pk=pk)
    form = CaseCreateForm(request.POST, auto_id="id_case_%s")
    if form.is_valid():
        try:
            case = services.case_create(
                actor=request.user, candidate=candidate, plan=form.cleaned_data["plan"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("已创建报名（草稿）"))
            return redirect(case)
    return _candidate_page(request, pk, status=400, case_form=form)


@coordinator_required
def case_list(request):
    form = CaseFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    plan = data.get("plan")
    cases = selectors.case_list(
        user=request.user, status=data.get("status", ""), plan=plan.pk if plan else None
    )
    return render(request, "cases/case_list.html", {"form": form, "page": _page(request, cases)})


@coordinator_required
def review_queue(request):
    page = _page(request, selectors.case_review_queue(user=request.user))
    for case in page:
        case.approval_problems = services.approval_problems(case)
    return render(request, "cases/review_queue.html", {"page": page})


def _case_page(request, pk, *, status=200, failed=None):
    """The case page; `failed` is a (transition name, bound form) to show with errors."""
    case = selectors.case_get(pk=pk)
    if case is None:
        raise Http404
    available = {t.name for t in case.get_available_user_status_transitions(request.user)}
    transitions = []
    for name, (label, needs_reason) in TRANSITIONS.items():
        if name not in available:
            continue
        if failed and failed[0] == name:
            form = failed[1]
        else:
            form = TransitionForm(auto_id=f"id_{name}_%s")
        transitions.append(
            {"name": name, "label": label, "needs_reason": needs_reason, "form": form}
        )
    held_by_pk = {h.pk: h for h in case.candidate.held_certificates.all()}
    preview = None
    if case.status in {CaseStatus.DRAFT, CaseStatus.RETURNED}:
        preview = evaluate(case, timezone.localdate())
    context = {
        "case": case,
        "transitions": transitions,
        "preview": preview,
        "approval_problems": (
            services.approval_problems(case) if case.status == CaseStatus.SUBMITTED else []
        ),
        "not_counted": [
            {**item, "held": held_by_pk.get(item.get("held_certificate"))}
            for item in case.not_counted
        ],
        "events": selectors.case_audit_events(case=case),
        "component_names": selectors.component_names(),
    }
    return render(request, "cases/case_detail.html", context, status=status)


@coordinator_required
def case_detail(request, pk):
    return _case_page(request, pk)


@require_POST
@coordinator_required
def case_transition(request, pk, name):
    if name not in TRANSITION_SERVICES:
        raise Http404
    case = get_object_or_404(Case, pk=pk)
    form = TransitionForm(request.POST, auto_id=f"id_{name}_%s")
    if not form.is_valid():
        return _case_page(request, pk, status=400, failed=(name, form))
    kwargs = {"actor": request.user, "case": case}
    if TRANSITIONS[name][1]:
        kwargs["reason"] = form.cleaned_data["reason"]
    try:
        TRANSITION_SERVICES[name](**kwargs)
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _case_page(request, pk, status=400, failed=(name, form))
    except EligibilityError as exc:
        for problem in exc.problems:
            messages.error(request, problem)
        return _case_page(request, pk, status=400)
    except (StateConflict, ConcurrentTransition) as exc:
        messages.error(request, getattr(exc, "message", None) or _("案件状态已变化，请刷新后重试"))
        return _case_page(request, pk, status=409)
    messages.success(request, _("已执行：%(action)s") % {"action": TRANSITIONS[name][0]})
    return redirect("cases:case-detail", pk=pk)


@coordinator_required
def case_audit(request, pk):
    case = selectors.case_get(pk=pk)
    if case is None:
        raise Http404
    return render(
        request,
        "cases/case_audit.html",
        {"case": case, "events": selectors.case_audit_events(case=case)},
    )


# Evaluation plans (cases.plans) -----------------------------------------------------
# A plan's own page (components, pass rules, sessions, open / close / archive) is
# exams:plan-detail, next to its sessions; these two pages create and configure a plan
# and lead back there.


@coordinator_required
def plan_create(request):
    form = PlanCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            plan = plans.plan_create(actor=request.user, **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("评价计划已创建（草稿）"))
            return redirect("exams:plan-detail", pk=plan.pk)
    status = 400 if form.errors else 200
    return render(request, "cases/plan_form.html", {"form": form}, status=status)


@coordinator_required
def plan_edit(request, pk):
    """Configure a draft plan. Other states are refused here before any form is shown;
    plans.plan_configure refuses them again under its lock (a plan opened meanwhile)."""
    plan = get_object_or_404(
        EvaluationPlan.objects.select_related("qualification_type", "occupation"), pk=pk
    )
    if plan.status != PlanStatus.DRAFT:
        messages.error(request, _("仅草稿状态可修改"))
        return redirect("exams:plan-detail", pk=pk)
    form = PlanConfigureForm(request.POST or None, plan=plan)
    if request.method == "POST" and form.is_valid():
        try:
            plans.plan_configure(actor=request.user, plan=plan, **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        except StateConflict as exc:
            messages.error(request, exc.message)
            return redirect("exams:plan-detail", pk=pk)
        else:
            messages.success(request, _("评价计划已保存"))
            return redirect("exams:plan-detail", pk=pk)
    status = 400 if form.errors else 200
    return render(request, "cases/plan_edit.html", {"plan": plan, "form": form}, status=status)


# Candidate import (cases.imports) ---------------------------------------------------

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class CandidateImportForm(forms.Form):
    file = forms.FileField(
        label="XLSX 文件",
        help_text="请使用下载的模板填写，扩展名 .xlsx",
        widget=forms.FileInput(attrs={"accept": f".xlsx,{XLSX_CONTENT_TYPE}"}),
    )


@coordinator_required
def candidate_import(request):
    form = CandidateImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = imports.import_job_create(actor=request.user, file=upload, name=upload.name)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return redirect(job)
    context = {
        "form": form,
        "jobs": imports.import_job_list(user=request.user),
        "max_rows": settings.IMPORT_MAX_ROWS,
        "max_mb": settings.IMPORT_MAX_BYTES // (1024 * 1024),
        "cert_slots": imports.CERT_SLOTS,
    }
    return render(request, "cases/import.html", context, status=400 if form.errors else 200)


@coordinator_required
def candidate_import_template(request):
    response = HttpResponse(imports.template_workbook(), content_type=XLSX_CONTENT_TYPE)
    response["Content-Disposition"] = content_disposition_header(True, "考生批量登记模板.xlsx")
    return response


@coordinator_required
def import_job_detail(request, pk):
    job = get_object_or_404(ImportJob.objects.select_related("uploaded_by"), pk=pk)
    return render(
        request,
        "cases/import_job.html",
        {"job": job, "progress": imports.import_job_progress(job)},
    )


@never_cache
@coordinator_required
def import_job_progress(request, pk):
    job = get_object_or_404(ImportJob, pk=pk)
    return JsonResponse(imports.import_job_progress(job))
