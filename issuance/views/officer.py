"""Pages of an issuer's officers (issue 4 item 8): the queue of my issuer's certificates
with batch approve / issue / download / print, one certificate with its transitions and
audit history, and the list of certificates due for review (item 6).

Each view does only: authentication, role check, a form, ONE service (or query) call,
render, redirect or a file. Reads are scoped by issuance.queries (another issuer's
certificate is not found); writes go to issuance.services, which checks the issuer
itself (403). Service errors are shown where they belong: ValidationError on the form
(or as a message for a batch), StateConflict / ConcurrentTransition as a message with
HTTP 409.

The officer's pages are an authorised view (DESIGN.md): the holder's full name and ID
number and the full certificate number are shown.
"""

from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_POST
from django_fsm import ConcurrentTransition

from audit.exceptions import StateConflict
from audit.selectors import audit_event_list_for
from cases.forms import DateInput, Form, TransitionForm, add_service_errors
from cases.roles import Role, has_role, user_roles
from jobs import services as job_services

from .. import bundles, queries, services
from ..models import Certificate, CertificateStatus

PAGE_SIZE = 25
REVIEW_WINDOWS = (30, 90, 180, 365)

# Transitions offered on the certificate page: name -> (button label, the form's fields).
TRANSITIONS = {
    "approve": (pgettext_lazy("certificate", "审批通过"), ()),
    "issue": (pgettext_lazy("certificate", "发证"), ("on",)),
    "refuse": (pgettext_lazy("certificate", "不予发证"), ("reason",)),
    "revoke": (pgettext_lazy("certificate", "撤销证书"), ("reason",)),
}
TRANSITION_SERVICES = {
    "approve": services.certificate_approve,
    "issue": services.certificate_issue,
    "refuse": services.certificate_refuse,
    "revoke": services.certificate_revoke,
}
# Batch actions of the queue -> the job kinds that run them (issuance.jobs).
BATCH_JOBS = {"approve": "issuance.approve", "issue": "issuance.issue"}
ACTION_LABELS = {
    "certificate.open": pgettext_lazy("audit action", "生成待发证书"),
    "certificate.approve": pgettext_lazy("audit action", "审批通过"),
    "certificate.issue": pgettext_lazy("audit action", "发证"),
    "certificate.refuse": pgettext_lazy("audit action", "不予发证"),
    "certificate.revoke": pgettext_lazy("audit action", "撤销证书"),
    "certificate.render": pgettext_lazy("audit action", "生成证书PDF"),
}
STATUS_LABELS = dict(CertificateStatus.choices)


def officer_required(view):
    """Login, then the issuer_officer role (admin holds every role); 403 otherwise."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not has_role(request.user, Role.ISSUER_OFFICER):
            raise PermissionDenied(_("此页面仅限发证机关人员使用"))
        return view(request, *args, **kwargs)

    return wrapped


# Forms -------------------------------------------------------------------------------


# Module-level forms: labels are lazy, so each request sees its own language.
class QueueFilterForm(Form):
    status = forms.ChoiceField(
        label=gettext_lazy("状态"), required=False, choices=CertificateStatus.choices
    )
    number = forms.CharField(label=gettext_lazy("证书编号"), required=False, max_length=32)


class IssueForm(Form):
    on = forms.DateField(
        label=gettext_lazy("发证日期"),
        required=False,
        widget=DateInput(),
        help_text=gettext_lazy("留空为今天"),
    )


class ReviewWindowForm(Form):
    within_days = forms.TypedChoiceField(
        label=gettext_lazy("复审日期在"), required=False, coerce=int
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Built per request: `%` on a lazy string would fix the language at import.
        self.fields["within_days"].choices = [
            (days, _("%(days)d 天内（含已逾期）") % {"days": days}) for days in REVIEW_WINDOWS
        ]


def _transition_form(name: str, data=None):
    form_class = IssueForm if name == "issue" else TransitionForm
    return form_class(data, auto_id=f"id_{name}_%s")


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _selected_ids(request) -> list[int]:
    """The ticked certificates, in order, without duplicates or junk."""
    ids = request.POST.getlist("ids")
    return list(dict.fromkeys(int(v) for v in ids if v.isascii() and v.isdigit()))


def _queue_url(status: str) -> str:
    if status not in STATUS_LABELS:
        status = CertificateStatus.PENDING
    return f"{reverse('issuance:certificate-queue')}?status={status}"


# Queue -------------------------------------------------------------------------------


@officer_required
def certificate_queue(request):
    """My issuer's certificates by status (pending first), with batch actions."""
    form = QueueFilterForm(request.GET)
    form.is_valid()  # a bad status falls back to pending; a bad number to none
    status = form.cleaned_data.get("status") or CertificateStatus.PENDING
    number = form.cleaned_data.get("number", "")
    counts = queries.certificate_counts_by_status(user=request.user)
    page = _page(request, queries.certificate_list(user=request.user, status=status, number=number))
    context = {
        "form": form,
        "status": status,
        "status_label": STATUS_LABELS[status],
        "tabs": [(value, label, counts[value]) for value, label in CertificateStatus.choices],
        "page": page,
        "issue_form": IssueForm(auto_id="id_batch_%s"),
        "awaiting_pdf": queries.certificates_awaiting_pdf_count(user=request.user),
        "all_issuers": Role.ADMIN in user_roles(request.user),
    }
    return render(request, "issuance/certificate_queue.html", context)


@require_POST
@officer_required
def certificate_batch(request, name):
    """Approve or issue the ticked certificates as a background job (jobs app): all of
    them or none (the services run them in one transaction). A request the job would
    refuse at once (nothing ticked, a certificate not found, a bad date) stays on the
    queue with the message; otherwise the job's page follows it (with eager Celery it
    has already finished there) and names the certificate that stopped a batch."""
    if name not in BATCH_JOBS:
        raise Http404
    back = redirect(_queue_url(request.POST.get("status", "")))
    data = {"ids": _selected_ids(request)}
    if name == "issue":
        form = IssueForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("发证日期格式不正确"))
            return back
        on = form.cleaned_data["on"]
        data["on"] = on.isoformat() if on else None
    try:
        job = job_services.job_create(actor=request.user, kind=BATCH_JOBS[name], data=data)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return back
    return redirect(job)


def _bundle(request, build, filename: str, content_type: str) -> HttpResponse:
    """A download of the ticked certificates that are issued, mine and rendered; the
    others are skipped and counted (in a header, and as a message for the next page)."""
    ids = _selected_ids(request)
    certificates = queries.certificate_list(
        user=request.user, status=CertificateStatus.ISSUED
    ).filter(pk__in=ids)
    ready, _unrendered = bundles.with_pdf(certificates)
    skipped = len(ids) - len(ready)  # not rendered yet, not issued, or not my issuer's
    if not ready:
        messages.error(request, _("所选证书中没有已生成PDF的已发证书"))
        return redirect(_queue_url(request.POST.get("status", "")))
    if skipped:
        messages.warning(
            request,
            _("已下载 %(done)d 份；跳过 %(skipped)d 份（PDF尚未生成或不是已发证书）")
            % {"done": len(ready), "skipped": skipped},
        )
    response = HttpResponse(build(ready), content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["X-Certificates-Included"] = str(len(ready))
    response["X-Certificates-Skipped"] = str(skipped)
    return response


@require_POST
@officer_required
def certificate_zip(request):
    """The signed PDFs of the ticked certificates in one ZIP."""
    today = timezone.localdate()
    return _bundle(
        request, bundles.certificates_zip, f"certificates-{today:%Y%m%d}.zip", "application/zip"
    )


@require_POST
@officer_required
def certificate_print(request):
    """One merged PDF of the ticked certificates, for printing (not signed)."""
    today = timezone.localdate()
    return _bundle(
        request,
        bundles.certificates_print_file,
        f"certificates-print-{today:%Y%m%d}.pdf",
        "application/pdf",
    )


# One certificate ---------------------------------------------------------------------


def _history(certificate: Certificate) -> list:
    events = list(audit_event_list_for((Certificate._meta.label_lower, certificate.pk)))
    for event in events:
        event.action_text = ACTION_LABELS.get(event.action, event.action)
        event.from_label = STATUS_LABELS.get(event.from_state, event.from_state)
        event.to_label = STATUS_LABELS.get(event.to_state, event.to_state)
    return events


def _detail_page(request, pk, *, status=200, failed=None):
    """The certificate page; `failed` is a (transition name, bound form) with errors."""
    certificate = queries.certificate_get(user=request.user, pk=pk)
    if certificate is None:
        raise Http404
    available = {t.name for t in certificate.get_available_user_status_transitions(request.user)}
    transitions = []
    for name, (label, fields) in TRANSITIONS.items():
        if name not in available:
            continue
        form = failed[1] if failed and failed[0] == name else _transition_form(name)
        transitions.append(
            {
                "name": name,
                "label": label,
                "form": form,
                "fields": [form[field] for field in fields],
            }
        )
    context = {
        "certificate": certificate,
        "transitions": transitions,
        "has_pdf": bundles.has_pdf(certificate),
        "events": _history(certificate),
    }
    return render(request, "issuance/certificate_detail.html", context, status=status)


@officer_required
def certificate_detail(request, pk):
    return _detail_page(request, pk)


@require_POST
@officer_required
def certificate_transition(request, pk, name):
    if name not in TRANSITION_SERVICES:
        raise Http404
    # Unscoped on purpose: the service decides whether this officer may act (403).
    certificate = get_object_or_404(Certificate, pk=pk)
    form = _transition_form(name, request.POST)
    if not form.is_valid():
        return _detail_page(request, pk, status=400, failed=(name, form))
    kwargs = {field: form.cleaned_data[field] for field in TRANSITIONS[name][1]}
    try:
        TRANSITION_SERVICES[name](actor=request.user, certificate=certificate, **kwargs)
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _detail_page(request, pk, status=400, failed=(name, form))
    except (StateConflict, ConcurrentTransition) as exc:
        messages.error(request, getattr(exc, "message", None) or _("证书状态已变化，请刷新后重试"))
        return _detail_page(request, pk, status=409)
    messages.success(request, _("已执行：%(action)s") % {"action": TRANSITIONS[name][0]})
    return redirect("issuance:certificate-detail", pk=pk)


@officer_required
def certificate_pdf(request, pk):
    """The stored, signed PDF (404 with a message while it is being rendered)."""
    certificate = queries.certificate_get(user=request.user, pk=pk)
    if certificate is None:
        raise Http404
    return bundles.pdf_response(certificate)


# Review ------------------------------------------------------------------------------


@officer_required
def certificate_review_due(request):
    """Issued certificates whose review (复审) is due within the chosen window or past."""
    form = ReviewWindowForm(request.GET)
    form.is_valid()
    within_days = form.cleaned_data.get("within_days") or 90
    today = timezone.localdate()
    rows = queries.certificates_due_for_review(user=request.user, within_days=within_days, on=today)
    context = {
        "form": form,
        "within_days": within_days,
        "today": today,
        "page": _page(request, rows),
        "all_issuers": Role.ADMIN in user_roles(request.user),
    }
    return render(request, "issuance/certificate_review_due.html", context)
