"""Shared reads of the cases app: one place that scopes, joins and prefetches, so the
pages stay free of N+1 queries (STYLE.md §3)."""

from datetime import date

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from audit.models import AuditEvent
from audit.selectors import audit_event_list_for
from catalog.models import Component, Occupation

from .eligibility import Eligibility, evaluate
from .models import (
    Candidate,
    Case,
    CaseExemption,
    CaseStatus,
    EvaluationPlan,
    HeldCertificate,
    WorkExperience,
)

_PLAN_JOINS = ("plan__qualification_type", "plan__occupation")


def candidate_list(*, user, search: str = "", filters: dict | None = None) -> QuerySet[Candidate]:
    """Candidates matching `search` (name, ID number or phone, partial) and `filters`:
    `education` (a value of Education), `has_held` ("yes"/"no"), `status` (a CaseStatus:
    the candidate has a case in that state). Each row carries `held_count` and its cases
    with their plans prefetched. `user` is the reader; every coordinator sees every
    candidate today, the argument is the place to scope when regions are introduced."""
    filters = filters or {}
    queryset = Candidate.objects.all()
    search = (search or "").strip()
    if search:
        queryset = queryset.filter(
            Q(name__icontains=search)
            | Q(id_number__icontains=search.upper())
            | Q(phone__icontains=search)
        )
    if filters.get("education"):
        queryset = queryset.filter(education=filters["education"])
    held = HeldCertificate.objects.filter(candidate=OuterRef("pk"))
    if filters.get("has_held") == "yes":
        queryset = queryset.filter(Exists(held))
    elif filters.get("has_held") == "no":
        queryset = queryset.filter(~Exists(held))
    if filters.get("status"):
        queryset = queryset.filter(
            Exists(Case.objects.filter(candidate=OuterRef("pk"), status=filters["status"]))
        )
    return (
        queryset.annotate(held_count=Count("held_certificates", distinct=True))
        .prefetch_related(
            Prefetch("cases", queryset=Case.objects.select_related("plan").order_by("-created_at"))
        )
        .order_by("-created_at", "-id")  # an aggregate drops Meta.ordering
    )


def candidate_get(*, pk) -> Candidate | None:
    """One candidate (None when there is none) with what its page shows: work years,
    held certificates with their types, cases with their plans."""
    return (
        Candidate.objects.prefetch_related(
            Prefetch(
                "work_experience",
                queryset=WorkExperience.objects.select_related("occupation"),
            ),
            Prefetch(
                "held_certificates",
                queryset=HeldCertificate.objects.select_related(
                    "qualification_type", "verified_by"
                ).order_by("issue_date", "pk"),
            ),
            Prefetch(
                "cases",
                queryset=Case.objects.select_related(*_PLAN_JOINS).order_by("-created_at"),
            ),
        )
        .select_related("created_by")
        .filter(pk=pk)
        .first()
    )


def plan_list(*, exam_from: date | None = None) -> QuerySet[EvaluationPlan]:
    """Plans, soonest exam first; with `exam_from`, only those examining on or after it."""
    queryset = EvaluationPlan.objects.select_related(
        "qualification_type", "occupation"
    ).prefetch_related("disabled_rules")
    if exam_from:
        queryset = queryset.filter(exam_date__gte=exam_from)
    return queryset.order_by("exam_date", "name")


def plan_previews(
    *, candidate: Candidate, plans, on: date
) -> list[tuple[EvaluationPlan, Eligibility]]:
    """What `candidate` (loaded by `candidate_get`) would get from each plan if a case were
    submitted `on`: the eligibility rules run on an unsaved case, nothing written."""
    return [(plan, evaluate(Case(candidate=candidate, plan=plan), on)) for plan in plans]


def component_names() -> dict[str, str]:
    return dict(Component.objects.values_list("code", "name"))


def occupation_names() -> dict[str, str]:
    return dict(Occupation.objects.values_list("code", "name"))


def case_list(*, user, status: str = "", plan: int | str | None = None) -> QuerySet[Case]:
    queryset = Case.objects.select_related("candidate", *_PLAN_JOINS)
    if status:
        queryset = queryset.filter(status=status)
    if plan:
        queryset = queryset.filter(plan_id=plan)
    return queryset


def case_review_queue(*, user) -> QuerySet[Case]:
    """Submitted cases, the longest waiting first."""
    return (
        Case.objects.filter(status=CaseStatus.SUBMITTED)
        .select_related("candidate", "equivalence_basis__qualification_type", *_PLAN_JOINS)
        .prefetch_related(
            Prefetch(
                "exemptions",
                queryset=CaseExemption.objects.select_related("basis__qualification_type"),
            )
        )
        .order_by("application_date", "updated_at", "pk")
    )


def case_get(*, pk) -> Case | None:
    """One case (None when there is none) with its candidate (held certificates, work
    years), plan and exemptions."""
    return (
        Case.objects.select_related(
            "candidate", "equivalence_basis__qualification_type", "created_by", *_PLAN_JOINS
        )
        .prefetch_related(
            "plan__disabled_rules",
            "candidate__work_experience__occupation",
            Prefetch(
                "candidate__held_certificates",
                queryset=HeldCertificate.objects.select_related("qualification_type"),
            ),
            Prefetch(
                "exemptions",
                queryset=CaseExemption.objects.select_related(
                    "component", "basis__qualification_type"
                ).order_by("row", "component_id"),
            ),
        )
        .filter(pk=pk)
        .first()
    )


def case_audit_events(*, case: Case) -> QuerySet[AuditEvent]:
    """The history of a case, its candidate and the candidate's held certificates."""
    pairs = [
        (Case._meta.label_lower, case.pk),
        (Candidate._meta.label_lower, case.candidate_id),
    ]
    pairs += [
        (HeldCertificate._meta.label_lower, pk)
        for pk in HeldCertificate.objects.filter(candidate_id=case.candidate_id).values_list(
            "pk", flat=True
        )
    ]
    return audit_event_list_for(*pairs)


def case_counts_by_status() -> list[tuple[str, str, int]]:
    """(status, label, count) for every CaseStatus, zeros included, in workflow order."""
    counts = dict(Case.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return [(status.value, status.label, counts.get(status.value, 0)) for status in CaseStatus]


def plan_case_counts() -> QuerySet[EvaluationPlan]:
    """Plans with `total`, `submitted_count` and `eligible_count` of their cases."""
    return EvaluationPlan.objects.select_related("qualification_type", "occupation").annotate(
        total=Count("cases"),
        submitted_count=Count("cases", filter=Q(cases__status=CaseStatus.SUBMITTED)),
        eligible_count=Count("cases", filter=Q(cases__status=CaseStatus.ELIGIBLE)),
    )
