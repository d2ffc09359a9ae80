"""Allocation as a background job (jobs app): seating a plan's eligible candidates can
take minutes for thousands of cases, so the pages and the API queue it and show its
progress. The work is scheduling.sessions_allocate, unchanged: one transaction."""

from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cases.models import EvaluationPlan
from cases.roles import Role, require_role
from jobs.registry import JobKind, Prepared

from . import scheduling
from .models import ExamSession, SessionStatus
from .selectors import cases_awaiting_seat


def _ids(value, field: str) -> list[int]:
    values = value if isinstance(value, list | tuple) else [value]
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise ValidationError({field: ["应为编号（整数）"]}) from None


def _prepare(*, actor, data) -> Prepared:
    """Coordinators only; the plan must exist and the sessions (default: the plan's
    open ones) must be its own and open, as sessions_allocate checks again under lock."""
    require_role(actor, Role.COORDINATOR)
    if data.get("plan") in (None, ""):
        raise ValidationError({"plan": ["必须指定评价计划"]})
    (plan_id,) = _ids(data["plan"], "plan")
    plan = EvaluationPlan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise ValidationError({"plan": [f"评价计划 #{plan_id} 不存在"]})
    session_ids = None
    if data.get("sessions"):
        session_ids = _ids(data["sessions"], "sessions")
        sessions = list(ExamSession.objects.filter(pk__in=session_ids))
        missing = sorted(set(session_ids) - {s.pk for s in sessions})
        if missing:
            raise ValidationError({"sessions": [f"场次不存在：{'、'.join(map(str, missing))}"]})
    else:
        sessions = list(ExamSession.objects.filter(plan=plan, status=SessionStatus.OPEN))
    problems = scheduling.allocation_problems(plan, sessions)
    if problems:
        raise ValidationError({"sessions": problems})
    return Prepared(
        params={"plan": plan.pk, "sessions": session_ids},
        total=cases_awaiting_seat(plan).count(),
    )


def _run(*, job, progress) -> dict:
    plan = EvaluationPlan.objects.get(pk=job.params["plan"])
    session_ids = job.params.get("sessions")
    sessions = None
    if session_ids:
        sessions = list(ExamSession.objects.filter(pk__in=session_ids).order_by("pk"))
    summary = scheduling.sessions_allocate(
        actor=job.created_by, plan=plan, sessions=sessions, progress=progress
    )
    return summary.as_dict()


def _back(job) -> tuple[str, str]:
    sessions = job.params.get("sessions")
    if sessions and len(sessions) == 1:
        return reverse("exams:session-detail", args=[sessions[0]]), _("返回场次")
    return reverse("exams:plan-detail", args=[job.params["plan"]]), _("返回评价计划")


def _summary(job) -> str:
    return _("自动编排完成：安排 %(allocated)s 人，未安排 %(unallocated)s 人") % {
        "allocated": len(job.result.get("allocated", [])),
        "unallocated": len(job.result.get("unallocated", [])),
    }


ALLOCATE = JobKind(
    code="exams.allocate",
    label=gettext_lazy("自动编排"),
    prepare=_prepare,
    run=_run,
    result_template="exams/_allocation_job.html",
    back=_back,
    summary=_summary,
)
