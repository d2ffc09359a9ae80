"""Batch approval and issuance as background jobs (jobs app). A batch of hundreds of
certificates holds its locks for seconds and then queues hundreds of PDFs, so the
officer's queue and the API queue it and show its progress, then how many of its PDFs
the workers have rendered. The work is services.certificates_approve / _issue,
unchanged: one transaction, all or nothing."""

from datetime import date

from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cases.roles import Role, require_role
from jobs.registry import JobKind, Prepared

from . import queries, services
from .models import Certificate


def _ids(data) -> list[int]:
    raw = data.get("ids")
    if not raw:
        raise ValidationError({"ids": ["请先勾选证书"]})
    if not isinstance(raw, list | tuple):
        raw = [raw]
    try:
        ids = list(dict.fromkeys(int(v) for v in raw))
    except (TypeError, ValueError):
        raise ValidationError({"ids": ["证书编号应为整数"]}) from None
    return ids


def _visible(actor, ids: list[int]) -> None:
    """Another issuer's certificate is not found (issuance.queries scopes reads)."""
    found = set(
        queries.certificate_list(user=actor).filter(pk__in=ids).values_list("pk", flat=True)
    )
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise ValidationError({"ids": [f"证书不存在：{'、'.join(f'#{pk}' for pk in missing)}"]})


def _prepare_approve(*, actor, data) -> Prepared:
    require_role(actor, Role.ISSUER_OFFICER)
    ids = _ids(data)
    _visible(actor, ids)
    return Prepared(params={"ids": ids}, total=len(ids))


def _prepare_issue(*, actor, data) -> Prepared:
    require_role(actor, Role.ISSUER_OFFICER)
    ids = _ids(data)
    on = data.get("on") or None
    if on is not None:
        try:
            on = date.fromisoformat(str(on)).isoformat()
        except ValueError:
            raise ValidationError({"on": ["发证日期格式不正确，应为 YYYY-MM-DD"]}) from None
    _visible(actor, ids)
    return Prepared(params={"ids": ids, "on": on}, total=len(ids))


def _certificates(job) -> list[Certificate]:
    return list(Certificate.objects.filter(pk__in=job.params["ids"]))


def _run_approve(*, job, progress) -> dict:
    done = services.certificates_approve(
        actor=job.created_by, certificates=_certificates(job), progress=progress
    )
    return {"count": len(done), "ids": [c.pk for c in done]}


def _run_issue(*, job, progress) -> dict:
    on = job.params.get("on")
    done = services.certificates_issue(
        actor=job.created_by,
        certificates=_certificates(job),
        on=date.fromisoformat(on) if on else None,
        progress=progress,
    )
    return {"count": len(done), "ids": [c.pk for c in done]}


def _back(status: str):
    def back(job) -> tuple[str, str]:
        return f"{reverse('issuance:certificate-queue')}?status={status}", _("返回证书队列")

    return back


def _pdfs(job) -> dict:
    """The batch's PDFs the workers have stored so far (rendered after the commit)."""
    ids = job.result.get("ids", [])
    rendered = Certificate.objects.filter(pk__in=ids).exclude(pdf_sha256="").count()
    return {
        "done": rendered,
        "total": len(ids),
        "finished": rendered >= len(ids),
        "message": _("已生成 %(done)d / %(total)d 份PDF") % {"done": rendered, "total": len(ids)},
    }


APPROVE = JobKind(
    code="issuance.approve",
    label=gettext_lazy("批量审批证书"),
    prepare=_prepare_approve,
    run=_run_approve,
    result_template="issuance/_batch_job.html",
    back=_back("approved"),
    summary=lambda job: _("已批量审批 %(count)d 份证书") % {"count": job.result["count"]},
)
ISSUE = JobKind(
    code="issuance.issue",
    label=gettext_lazy("批量发证"),
    prepare=_prepare_issue,
    run=_run_issue,
    result_template="issuance/_batch_job.html",
    back=_back("issued"),
    summary=lambda job: _("已批量发证 %(count)d 份证书") % {"count": job.result["count"]},
    follow_up=_pdfs,
)
