"""Results: final component scores and, per certificate of the plan, earned or not with
the reasons (issue 3 item 6; DESIGN.md "一试多证").

- Final score of a component (exams.scoring.mark_final): the single mark; the mean of
  two marks within the tolerance (round half up, one decimal); or the arbitrated mark.
- `session_finalise` / `case_scores_finalise` write, for each checked-in booking whose
  every component it sits has a final score, ComponentScore rows for the attempt
  (final, with the method; exempt components as `exempt`), the CertificateResult rows,
  and move the case examined -> scored (cases.services.case_finalise_scores). Run again
  while the session is still marking (e.g. after the supervisor returned it), they
  rewrite the rows of cases already scored. The plan, the marks and the existing rows
  are read once per session and the rows written in bulk: only the case transition
  costs queries per booking.
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
from django.db.models import Prefetch

from audit.exceptions import StateConflict
from audit.services import audit_record, audit_record_many, event_for
from cases import services as case_services
from cases.models import (
    Case,
    CaseExemption,
    CaseStatus,
    PassMark,
    PlanCertificate,
    PlanComponent,
)
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


def _plan_components(plan_ids) -> dict[int, dict[int, PlanComponent]]:
    """{plan id: {component id: PlanComponent (component selected)}}: one query."""
    by_plan: dict[int, dict[int, PlanComponent]] = {plan_id: {} for plan_id in plan_ids}
    for pc in PlanComponent.objects.filter(plan_id__in=by_plan).select_related("component"):
        by_plan[pc.plan_id][pc.component_id] = pc
    return by_plan


def _marks_by_booking(booking_ids) -> dict[int, dict[int, dict[str, Decimal]]]:
    """{booking id: {component id: {slot: score}}}: one query."""
    marks: dict[int, dict[int, dict[str, Decimal]]] = {}
    for booking_id, component_id, slot, score in Mark.objects.filter(
        booking_id__in=list(booking_ids)
    ).values_list("booking_id", "component_id", "slot", "score"):
        marks.setdefault(booking_id, {}).setdefault(component_id, {})[slot] = score
    return marks


def booking_finals(
    booking: Booking,
    *,
    plan_components: dict[int, PlanComponent] | None = None,
    marks: dict[int, dict[str, Decimal]] | None = None,
) -> BookingFinals:
    """The final score of each component `booking` sits, or why it is still pending.

    `plan_components` ({component id: PlanComponent, component selected} of the case's
    plan) and `marks` ({component id: {slot: score}} of this booking) spare the two
    reads when the caller loaded them for many bookings at once (`bookings_finals`)."""
    if plan_components is None:
        plan_id = booking.case.plan_id
        plan_components = _plan_components([plan_id])[plan_id]
    if marks is None:
        marks = _marks_by_booking([booking.pk]).get(booking.pk, {})
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
            # The labels are lazy translations, which str.join refuses.
            missing = "、".join(
                str(MarkSlot(s).label) for s in (MarkSlot.FIRST, MarkSlot.SECOND) if s not in given
            )
            result.pending.append(f"「{component.name}」尚缺{missing}")
        else:
            result.pending.append(f"「{component.name}」尚未评分")
    return result


def bookings_finals(bookings, *, plan_components=None) -> list[BookingFinals]:
    """`booking_finals` of each of `bookings` (case selected, components prefetched), in
    their order, reading the plan components (unless given, as `_plan_components`) and
    the marks once for all of them: two queries however many bookings."""
    bookings = list(bookings)
    if not bookings:
        return []
    if plan_components is None:
        plan_components = _plan_components({b.case.plan_id for b in bookings})
    marks = _marks_by_booking(b.pk for b in bookings)
    return [
        booking_finals(
            booking,
            plan_components=plan_components[booking.case.plan_id],
            marks=marks.get(booking.pk, {}),
        )
        for booking in bookings
    ]


def _checked_in(session: ExamSession):
    return (
        Booking.objects.filter(session=session, status=BookingStatus.CHECKED_IN)
        .select_related("case")
        .prefetch_related("components")
    )


def session_marking_outstanding(session: ExamSession) -> list[dict]:
    """What is still missing before every checked-in booking of `session` has its final
    scores: [{"ticket_number", "message"}] (empty when marking is complete). The review
    may refuse submit_for_review while this is not empty. Four queries."""
    return [
        {"ticket_number": finals.booking.ticket_number, "message": message}
        for finals in bookings_finals(_checked_in(session).order_by("seat_number"))
        for message in finals.pending
    ]


# Outcome per certificate -------------------------------------------------------------


@dataclass
class _PlanRules:
    """What deciding the certificates of one plan needs: each component's place in the
    plan, and the certificates with their pass marks (component selected)."""

    order: dict[int, tuple[int, int]]
    certificates: list[PlanCertificate] = field(default_factory=list)


def _plan_rules(plan_components: dict[int, dict[int, PlanComponent]]) -> dict[int, _PlanRules]:
    """{plan id: _PlanRules} for the plans of `plan_components` (as `_plan_components`):
    two queries."""
    rules = {
        plan_id: _PlanRules(order={cid: (pc.order, pc.pk) for cid, pc in components.items()})
        for plan_id, components in plan_components.items()
    }
    for certificate in PlanCertificate.objects.filter(plan_id__in=rules).prefetch_related(
        Prefetch("marks", queryset=PassMark.objects.select_related("component"))
    ):
        rules[certificate.plan_id].certificates.append(certificate)
    return rules


def case_outcome(case: Case, attempt: int | None = None) -> list[CertificateResult]:
    """Pure: for each certificate of the plan, an unsaved CertificateResult (kind,
    attempt, earned, reasons in Chinese; reasons empty when earned). Considers every
    attempt's ComponentScore rows: the best final score per component, exemptions (the
    case's snapshot and `exempt` rows) and completions."""
    attempt = case.attempts if attempt is None else attempt
    rules = _plan_rules(_plan_components([case.plan_id]))[case.plan_id]
    return _outcome(
        case,
        attempt,
        rows=list(ComponentScore.objects.filter(case=case)),
        exempt=set(case.exemptions.values_list("component_id", flat=True)),
        rules=rules,
    )


def _outcome(
    case: Case, attempt: int, *, rows, exempt: set[int], rules: _PlanRules
) -> list[CertificateResult]:
    """`case_outcome` from data already read: `rows` the case's ComponentScore rows of
    every attempt, `exempt` the component ids of its exemption snapshot."""
    best = best_final_scores(rows)
    completed: set[int] = set()
    exempt = set(exempt)
    for row in rows:
        if row.status == ScoreStatus.COMPLETED:
            completed.add(row.component_id)
        elif row.status == ScoreStatus.EXEMPT:
            exempt.add(row.component_id)
    order = rules.order
    results = []
    for certificate in rules.certificates:
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


# Finalising ----------------------------------------------------------------------------


SCORABLE_STATES = (CaseStatus.EXAMINED, CaseStatus.SCORED)
SCORE_FIELDS = ["status", "score", "method", "booking"]


def _snapshot(scores, certificates) -> dict:
    """The rows of one case and attempt as audited on `case.results` (component scores
    with their component set, certificate results), in the models' order."""
    return {
        "scores": {
            row.component.code: [
                row.status,
                None if row.score is None else str(row.score),
                row.method,
            ]
            for row in sorted(scores, key=lambda r: r.component_id)
        },
        "certificates": {
            row.kind: {"earned": row.earned, "reasons": row.reasons}
            for row in sorted(certificates, key=lambda r: r.kind)
        },
    }


def _of_attempt(rows: dict, attempt: int) -> list:
    """The rows of `attempt` from {(component id or kind, attempt): row}."""
    return [row for (_, row_attempt), row in rows.items() if row_attempt == attempt]


def _assign(row, values: dict) -> bool:
    """Set `values` on `row`; whether any of them changed."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _bookings_finalise(*, actor, bookings) -> list[BookingFinals]:
    """Write the final rows of each checked-in booking of `bookings` (case selected,
    components prefetched) whose marks are complete, in the caller's transaction (the
    caller holds the session lock): ComponentScore rows of the attempt (final, with the
    method; exempt components as `exempt`) and the CertificateResult rows. Locks the
    cases to score at once, in primary-key order; moves examined -> scored, or rewrites
    the rows of a case already scored; a case voided or otherwise moved on is left
    alone. Audited as `case.results` for each case whose rows changed. Returns the
    `booking_finals` of every booking, in order.

    The plan, the marks and the cases' existing rows are read once and the rows
    written in bulk, and the cases move examined -> scored in one batch
    (cases.services.cases_finalise_scores)."""
    bookings = list(bookings)
    plan_components = _plan_components({booking.case.plan_id for booking in bookings})
    all_finals = bookings_finals(bookings, plan_components=plan_components)
    complete = {finals.booking.case_id: finals for finals in all_finals if finals.complete}
    if not complete:
        return all_finals
    # Candidate and plan are selected for the audit's object_repr only: lock the case
    # rows alone, not the plan every session of it shares.
    cases = [
        case
        for case in Case.objects.select_for_update(of=("self",))
        .select_related("candidate", "plan")
        .prefetch_related(
            Prefetch("exemptions", queryset=CaseExemption.objects.select_related("component"))
        )
        .filter(pk__in=complete)
        .order_by("pk")
        if case.status in SCORABLE_STATES
    ]
    if not cases:
        return all_finals
    scores: dict[int, dict[tuple[int, int], ComponentScore]] = {case.pk: {} for case in cases}
    for row in ComponentScore.objects.filter(case__in=cases).select_related("component"):
        scores[row.case_id][(row.component_id, row.attempt)] = row
    certificates: dict[int, dict[tuple[str, int], CertificateResult]] = {
        case.pk: {} for case in cases
    }
    for row in CertificateResult.objects.filter(case__in=cases):
        certificates[row.case_id][(row.kind, row.attempt)] = row
    rules = _plan_rules(plan_components)

    new_scores: list[ComponentScore] = []
    changed_scores: dict[int, ComponentScore] = {}
    new_certificates: list[CertificateResult] = []
    changed_certificates: list[CertificateResult] = []
    events = []
    for case in cases:
        booking = complete[case.pk].booking
        attempt = booking.attempt
        case_scores, case_certificates = scores[case.pk], certificates[case.pk]

        before = _snapshot(
            _of_attempt(case_scores, attempt), _of_attempt(case_certificates, attempt)
        )
        components = {cid: pc.component for cid, pc in plan_components[case.plan_id].items()}
        wanted = [
            (
                components[component_id],
                {
                    "status": ScoreStatus.FINAL,
                    "score": score,
                    "method": method,
                    "booking_id": booking.pk,
                },
            )
            for component_id, (score, method) in complete[case.pk].finals.items()
        ]
        # An exempt row keeps whatever booking it has (none when created).
        wanted += [
            (
                exemption.component,
                {"status": ScoreStatus.EXEMPT, "score": None, "method": EXEMPT_METHOD},
            )
            for exemption in case.exemptions.all()
        ]
        for component, values in wanted:
            row = case_scores.get((component.pk, attempt))
            if row is None:
                row = ComponentScore(case=case, component=component, attempt=attempt, **values)
                case_scores[(component.pk, attempt)] = row
                new_scores.append(row)
            elif _assign(row, values) and row.pk is not None:  # pk None: created above
                changed_scores[row.pk] = row
        exempt = {exemption.component_id for exemption in case.exemptions.all()}
        outcome = _outcome(
            case, attempt, rows=list(case_scores.values()), exempt=exempt, rules=rules[case.plan_id]
        )
        for result in outcome:
            row = case_certificates.get((result.kind, attempt))
            if row is None:
                case_certificates[(result.kind, attempt)] = result
                new_certificates.append(result)
            elif _assign(row, {"earned": result.earned, "reasons": result.reasons}):
                changed_certificates.append(row)
        after = _snapshot(
            _of_attempt(case_scores, attempt), _of_attempt(case_certificates, attempt)
        )
        if before != after:
            events.append(
                event_for(
                    case,
                    "case.results",
                    changes={key: {"before": before[key], "after": after[key]} for key in after},
                )
            )
    ComponentScore.objects.bulk_create(new_scores)
    ComponentScore.objects.bulk_update(changed_scores.values(), SCORE_FIELDS)
    CertificateResult.objects.bulk_create(new_certificates)
    CertificateResult.objects.bulk_update(changed_certificates, ["earned", "reasons"])
    # One append for every case's `case.results`; each case's own transition event
    # follows it, so a case's history still reads results, then examined -> scored.
    audit_record_many(actor=actor, events=events)
    examined = [case for case in cases if case.status == CaseStatus.EXAMINED]
    if examined:
        case_services.cases_finalise_scores(actor=actor, cases=examined)
    return all_finals


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
    session row, then the cases it scores, at once in primary-key order."""
    require_role(actor, Role.COORDINATOR)
    session = ExamSession.objects.select_for_update().get(pk=session.pk)
    _require_session_marking(session)
    summary = FinaliseSummary()
    for finals in _bookings_finalise(
        actor=actor, bookings=_checked_in(session).order_by("case_id")
    ):
        booking = finals.booking
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
    (finals,) = _bookings_finalise(actor=actor, bookings=[booking])
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
