"""Results: final component scores and, per certificate of the plan, earned or not with
the reasons (issue 3 item 6; DESIGN.md "一试多证").

- Final score of a component (exams.scoring.mark_final): the single mark; the mean of
  two marks within the tolerance (round half up, one decimal); or the arbitrated mark.
- `session_finalise` / `case_scores_finalise` write, for each checked-in booking whose
  every component it sits has a final score, ComponentScore rows for the attempt
  (final, with the method; exempt components as `exempt`), the CertificateResult rows,
  and move the case examined -> scored (cases.services.case_finalise_scores). Run again
  while the session is still marking (e.g. after the supervisor returned it), they
  rewrite the rows of cases already scored.
- Completion components (training) are not marked: `training_complete` records them as
  `completed`; a missing completion is not met.
- `case_outcome(case)` (pure) decides each certificate of the plan from the best final
  score per component over all attempts (a retake carries over what was passed before):
  a component is met when exempt (DESIGN.md: exempt counts as met, for every
  certificate of the plan), completed, or its best score reaches the certificate's pass
  mark; with `theory_before_practical` the practical does not count unless theory is
  met. Publishing pass/fail (cases.services.case_publish_result) is the quality
  review's, at approval; it may call `case_outcome` or read the CertificateResult rows.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.exceptions import StateConflict
from audit.services import audit_record
from cases import services as case_services
from cases.models import Case, CaseStatus, PlanComponent
from cases.roles import Role, require_role
from catalog.models import Component

from .models import (
    Booking,
    BookingStatus,
    CertificateResult,
    ComponentScore,
    ExamSession,
    Mark,
    MarkSlot,
    ScoreStatus,
    SessionStatus,
)
from .scoring import mark_final, needs_arbitration
from .selectors import best_final_scores

EXEMPT_METHOD = "exempt"
COMPLETION_METHOD = "completion"
TRAINING_STATES = (CaseStatus.ELIGIBLE, CaseStatus.SCHEDULED, CaseStatus.EXAMINED)


def _fmt(value: Decimal) -> str:
    """75.0 -> "75", 75.5 -> "75.5"."""
    return f"{value.normalize():f}"


# Final scores per booking ------------------------------------------------------------


@dataclass
class BookingFinals:
    booking: Booking
    finals: dict[int, tuple[Decimal, str]] = field(default_factory=dict)  # component_id
    pending: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.pending


def booking_finals(booking: Booking) -> BookingFinals:
    """The final score of each component `booking` sits, or why it is still pending."""
    plan_components = {
        pc.component_id: pc
        for pc in PlanComponent.objects.filter(plan_id=booking.case.plan_id).select_related(
            "component"
        )
    }
    marks: dict[int, dict[str, Decimal]] = {}
    for mark in Mark.objects.filter(booking=booking):
        marks.setdefault(mark.component_id, {})[mark.slot] = mark.score
    result = BookingFinals(booking)
    for component in booking.components.all():
        pc = plan_components[component.pk]
        given = marks.get(component.pk, {})
        final = mark_final(pc, given)
        if final is not None:
            result.finals[component.pk] = final
        elif needs_arbitration(pc, given):
            result.pending.append(f"「{component.name}」一评、二评分差超过允许误差，待主考评员仲裁")
        elif pc.marking_mode == "double":
            missing = "、".join(
                MarkSlot(s).label for s in (MarkSlot.FIRST, MarkSlot.SECOND) if s not in given
            )
            result.pending.append(f"「{component.name}」尚缺{missing}")
        else:
            result.pending.append(f"「{component.name}」尚未评分")
    return result


def session_marking_outstanding(session: ExamSession) -> list[dict]:
    """What is still missing before every checked-in booking of `session` has its final
    scores: [{"ticket_number", "message"}] (empty when marking is complete). The review
    may refuse submit_for_review while this is not empty."""
    missing = []
    bookings = (
        Booking.objects.filter(session=session, status=BookingStatus.CHECKED_IN)
        .select_related("case")
        .prefetch_related("components")
        .order_by("seat_number")
    )
    for booking in bookings:
        missing += [
            {"ticket_number": booking.ticket_number, "message": message}
            for message in booking_finals(booking).pending
        ]
    return missing


# Outcome per certificate -------------------------------------------------------------


def case_outcome(case: Case, attempt: int | None = None) -> list[CertificateResult]:
    """Pure: for each certificate of the plan, an unsaved CertificateResult (kind,
    attempt, earned, reasons in Chinese; reasons empty when earned). Considers every
    attempt's ComponentScore rows: the best final score per component, exemptions (the
    case's snapshot and `exempt` rows) and completions."""
    attempt = case.attempts if attempt is None else attempt
    rows = list(ComponentScore.objects.filter(case=case))
    best = best_final_scores(rows)
    completed: set[int] = set()
    exempt = set(case.exemptions.values_list("component_id", flat=True))
    for row in rows:
        if row.status == ScoreStatus.COMPLETED:
            completed.add(row.component_id)
        elif row.status == ScoreStatus.EXEMPT:
            exempt.add(row.component_id)
    order = {
        pc.component_id: (pc.order, pc.pk)
        for pc in PlanComponent.objects.filter(plan_id=case.plan_id)
    }
    results = []
    for certificate in case.plan.certificates.prefetch_related("marks__component"):
        marks = sorted(certificate.marks.all(), key=lambda m: order.get(m.component_id, (99, 0)))
        met: dict[str, bool] = {}
        reasons: list[str] = []
        for pass_mark in marks:
            component = pass_mark.component
            if component.pk in exempt:
                met[component.code] = True
            elif pass_mark.pass_mark is None:
                met[component.code] = component.pk in completed
                if not met[component.code]:
                    reasons.append(f"未完成{component.name}")
            else:
                score = best.get(component.pk)
                met[component.code] = score is not None and score >= pass_mark.pass_mark
                if score is None:
                    reasons.append(f"{component.name}无成绩")
                elif not met[component.code]:
                    floor = _fmt(pass_mark.pass_mark)
                    reasons.append(f"{component.name} {_fmt(score)} 分，低于合格线 {floor} 分")
        # Theory before practical (e.g. MEM-ELEC-LV): a practical pass does not count
        # until theory is passed (or exempt).
        if (
            certificate.theory_before_practical
            and met.get("theory") is False
            and met.get("practical") is True
        ):
            met["practical"] = False
            practical = best.get(
                next(m.component_id for m in marks if m.component.code == "practical")
            )
            reasons.append(
                f"理论考试未合格，实操考试 {_fmt(practical)} 分不予计入（须理论合格后方可计实操）"
                if practical is not None
                else "理论考试未合格，实操考试不予计入（须理论合格后方可计实操）"
            )
        results.append(
            CertificateResult(
                case=case,
                kind=certificate.kind,
                attempt=attempt,
                earned=bool(met) and all(met.values()),
                reasons=reasons,
            )
        )
    return results


@transaction.atomic
def certificate_results(case: Case, attempt: int | None = None) -> list[CertificateResult]:
    """Write `case_outcome(case, attempt)` as the attempt's CertificateResult rows
    (upsert on case, kind, attempt; idempotent). Plain atomic: called inside the
    finalising transaction."""
    written = []
    for outcome in case_outcome(case, attempt):
        row, _ = CertificateResult.objects.update_or_create(
            case=case,
            kind=outcome.kind,
            attempt=outcome.attempt,
            defaults={"earned": outcome.earned, "reasons": outcome.reasons},
        )
        written.append(row)
    return written


# Finalising ----------------------------------------------------------------------------


def _snapshot(case: Case, attempt: int) -> dict:
    return {
        "scores": {
            row.component.code: [
                row.status,
                None if row.score is None else str(row.score),
                row.method,
            ]
            for row in ComponentScore.objects.filter(case=case, attempt=attempt).select_related(
                "component"
            )
        },
        "certificates": {
            row.kind: {"earned": row.earned, "reasons": row.reasons}
            for row in CertificateResult.objects.filter(case=case, attempt=attempt)
        },
    }


@transaction.atomic
def _finalise_booking(*, actor, booking: Booking) -> BookingFinals:
    """Write the final rows of one checked-in booking when complete (caller holds the
    session lock). Locks the case row; moves examined -> scored, or rewrites the rows
    of a case already scored. Audited as `case.results` when anything changed."""
    finals = booking_finals(booking)
    if not finals.complete:
        return finals
    case = Case.objects.select_for_update().get(pk=booking.case_id)
    if case.status not in (CaseStatus.EXAMINED, CaseStatus.SCORED):
        return finals  # voided or otherwise moved on: nothing to score
    attempt = booking.attempt
    before = _snapshot(case, attempt)
    for component_id, (score, method) in finals.finals.items():
        ComponentScore.objects.update_or_create(
            case=case,
            component_id=component_id,
            attempt=attempt,
            defaults={
                "status": ScoreStatus.FINAL,
                "score": score,
                "method": method,
                "booking": booking,
            },
        )
    for component_id in case.exemptions.values_list("component_id", flat=True):
        ComponentScore.objects.update_or_create(
            case=case,
            component_id=component_id,
            attempt=attempt,
            defaults={"status": ScoreStatus.EXEMPT, "score": None, "method": EXEMPT_METHOD},
        )
    certificate_results(case, attempt)
    after = _snapshot(case, attempt)
    if before != after:
        audit_record(
            actor=actor,
            instance=case,
            action="case.results",
            changes={key: {"before": before[key], "after": after[key]} for key in after},
        )
    if case.status == CaseStatus.EXAMINED:
        case_services.case_finalise_scores(actor=actor, case=case)
    return finals


@dataclass
class FinaliseSummary:
    finalised: list[str] = field(default_factory=list)  # ticket numbers
    pending: list[dict] = field(default_factory=list)  # {"ticket_number", "message"}


def _require_session_marking(session: ExamSession) -> None:
    if session.status != SessionStatus.MARKING:
        raise StateConflict(
            f"场次 {session.code} 当前状态为「{session.get_status_display()}」，"
            "只有评分中的场次才能确定成绩",
            current_state=session.status,
        )


@transaction.atomic
def session_scores_write(*, actor, session: ExamSession) -> FinaliseSummary:
    """The body of `session_finalise`, plain atomic so another service may run it in
    its own transaction (e.g. the review, just before submit_for_review). Locks the
    session row, then each case in primary-key order."""
    require_role(actor, Role.COORDINATOR)
    session = ExamSession.objects.select_for_update().get(pk=session.pk)
    _require_session_marking(session)
    summary = FinaliseSummary()
    bookings = (
        Booking.objects.filter(session=session, status=BookingStatus.CHECKED_IN)
        .select_related("case")
        .prefetch_related("components")
        .order_by("case_id")
    )
    for booking in bookings:
        finals = _finalise_booking(actor=actor, booking=booking)
        if finals.complete:
            summary.finalised.append(booking.ticket_number)
        else:
            summary.pending += [
                {"ticket_number": booking.ticket_number, "message": m} for m in finals.pending
            ]
    return summary


@transaction.atomic(durable=True)
def session_finalise(*, actor, session: ExamSession) -> FinaliseSummary:
    """Finalise every checked-in booking of a marking session whose marks are complete
    (others are listed as pending with the reason). Coordinators only. Idempotent:
    running it again rewrites the same rows and audits only changes."""
    return session_scores_write(actor=actor, session=session)


@transaction.atomic(durable=True)
def case_scores_finalise(*, actor, case: Case) -> Case:
    """Finalise one case from its checked-in booking of the latest attempt (its session
    must be marking). Refuses with the missing marks when incomplete. Coordinators
    only. Locks the session, then the case."""
    require_role(actor, Role.COORDINATOR)
    booking = (
        Booking.objects.filter(case=case, status=BookingStatus.CHECKED_IN)
        .order_by("-attempt", "-pk")
        .first()
    )
    if booking is None:
        raise StateConflict(f"案件 #{case.pk} 没有已签到的考位，不能确定成绩")
    session = ExamSession.objects.select_for_update().get(pk=booking.session_id)
    _require_session_marking(session)
    booking = (
        Booking.objects.select_related("case").prefetch_related("components").get(pk=booking.pk)
    )
    finals = _finalise_booking(actor=actor, booking=booking)
    if not finals.complete:
        raise ValidationError({"case": finals.pending})
    return Case.objects.get(pk=case.pk)


@transaction.atomic(durable=True)
def training_complete(
    *, actor, case: Case, component: str = "training", note: str = ""
) -> ComponentScore:
    """Record that the case completed a completion component of its plan (safety
    training, 安全培训): a ComponentScore with status completed. Coordinators only; the
    case must be eligible, scheduled or examined; an exempt component needs no record.
    Idempotent: a second call returns the existing record. Locks the case row; audited
    as `case.training_complete`."""
    require_role(actor, Role.COORDINATOR)
    case = Case.objects.select_for_update().select_related("plan").get(pk=case.pk)
    if case.status not in TRAINING_STATES:
        labels = "、".join(str(CaseStatus(s).label) for s in TRAINING_STATES)
        raise StateConflict(
            f"案件当前状态为「{case.get_status_display()}」，不能登记培训完成（须为{labels}）",
            current_state=case.status,
        )
    pc = (
        PlanComponent.objects.filter(plan=case.plan, component__code=component)
        .select_related("component")
        .first()
    )
    if pc is None or pc.component.kind != Component.Kind.COMPLETION:
        raise ValidationError({"component": [f"「{component}」不是本评价计划须完成的培训科目"]})
    exemption = case.exemptions.filter(component=pc.component).first()
    if exemption is not None:
        raise ValidationError(
            {
                "component": [
                    f"考生免于「{pc.component.name}」（互认序号 {exemption.row}），无须登记"
                ]
            }
        )
    existing = ComponentScore.objects.filter(
        case=case, component=pc.component, status=ScoreStatus.COMPLETED
    ).first()
    if existing is not None:
        return existing
    row = ComponentScore.objects.create(
        case=case,
        component=pc.component,
        attempt=max(case.attempts, 1),
        status=ScoreStatus.COMPLETED,
        method=COMPLETION_METHOD,
    )
    audit_record(
        actor=actor,
        instance=case,
        action="case.training_complete",
        reason=(note or "").strip(),
        changes={"completed": {"before": None, "after": pc.component.code}},
    )
    return row
