"""Shared reads of the exams stage. Each helper function states what it prefetches."""

from cases.models import Case, PlanComponent

from .models import ComponentScore, ScoreStatus


def case_components_outstanding(case: Case) -> list[PlanComponent]:
    """The plan components `case` still has to sit, in plan order: all of them, less
    those exempt (snapshotted at submit), less those completed or passed for every
    certificate that needs them in an earlier attempt (a retake sits only what it
    failed: DESIGN.md). Components of kind `completion` (training) are not sat in a
    session but recorded; they are included here, and the caller filters by kind."""
    exempt = set(case.exemptions.values_list("component_id", flat=True))
    settled = set(
        ComponentScore.objects.filter(
            case=case, status__in=[ScoreStatus.COMPLETED, ScoreStatus.EXEMPT]
        ).values_list("component_id", flat=True)
    )
    passed = _components_passed_for_all_certificates(case)
    return [
        pc
        for pc in PlanComponent.objects.filter(plan=case.plan).select_related("component")
        if pc.component_id not in exempt | settled | passed
    ]


def _components_passed_for_all_certificates(case: Case) -> set[int]:
    """Components whose best final score so far reaches the pass mark of every
    certificate of the plan that requires them."""
    best: dict[int, object] = {}
    for score in ComponentScore.objects.filter(case=case, status=ScoreStatus.FINAL):
        if score.score is not None and (
            score.component_id not in best or score.score > best[score.component_id]
        ):
            best[score.component_id] = score.score
    marks: dict[int, list] = {}
    for certificate in case.plan.certificates.prefetch_related("marks"):
        for mark in certificate.marks.all():
            marks.setdefault(mark.component_id, []).append(mark.pass_mark)
    return {
        component_id
        for component_id, score in best.items()
        if all(m is not None and score >= m for m in marks.get(component_id, [None]))
    }
