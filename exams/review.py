"""Quality review of a session with early warnings (notice §三; Q&A 三: 建立预警信息发送、
审核、反馈机制).

marking -> in_review (`session_submit_for_review`, coordinator): every checked-in
candidate has final scores, marks lock, the early-warning rules (exams.warnings) run
and their findings become QualityWarning rows, sent to the supervisors after commit
(`warnings_send`, a Celery task). Each warning then goes sent -> confirmed or
dismissed (`warning_review`, supervisor, with a note) -> answered (`warning_answer`,
coordinator, confirmed ones only) -> closed (`warning_close`, supervisor). The
supervisor returns the session to marking with notes (`session_return_to_marking`) or,
once every warning is closed, approves it (`session_approve`), which publishes the
results: each scored case passes when it earned at least one certificate, else fails.

After a return to marking, each submission recomputes every rule: an open warning whose
rule no longer fires is closed by the system (`withdraw`), one still firing keeps its
review and takes the new figures, and a rule firing again after its warning was closed
raises a new warning only when the figures differ from those the supervisor closed
(`session_warnings_generate`).

No one reviews a session they graded (DESIGN.md "Roles"): a supervisor who entered a
mark in the session or is on its staff as grader or chief grader may take none of the
supervisor's actions on it.

Warnings are computed inside the submit transaction, not in a worker: a session in
review then always has its warnings, so approval can never race ahead of a slow or lost
task. Only the sending is deferred; a warning left `generated` is the outbox row that
`warnings_send_sweep` picks up again.
"""

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from audit.exceptions import DomainError, StateConflict
from audit.services import Event, audit_record, audit_record_many, event_for
from cases import services as case_services
from cases.models import Case, CaseStatus, PassMark, PlanComponent
from cases.roles import Role, require_role

from . import signals
from . import warnings as rules
from .models import (
    Booking,
    BookingStatus,
    CertificateResult,
    ComponentScore,
    ExamSession,
    Mark,
    MarkSlot,
    QualityWarning,
    ScoreStatus,
    SessionStaff,
    SessionStatus,
    StaffRole,
    WarningStatus,
)

# Sessions whose results count as "the plan's other sessions" for the pass-rate rule.
RESULT_STATES = (SessionStatus.IN_REVIEW, SessionStatus.APPROVED)
SETTLED_SCORES = (ScoreStatus.FINAL, ScoreStatus.EXEMPT, ScoreStatus.COMPLETED)
OPEN_WARNING_STATES = (
    WarningStatus.GENERATED,
    WarningStatus.SENT,
    WarningStatus.CONFIRMED,
    WarningStatus.ANSWERED,
    WarningStatus.DISMISSED,
)


# Locks and checks ----------------------------------------------------------------------


def _conflict(obj, name: str, states, noun: str) -> StateConflict:
    target = next((t.target for t in obj.get_all_status_transitions() if t.name == name), None)
    label = states(target).label if target else name
    return StateConflict(
        f"{noun}当前状态为「{obj.get_status_display()}」，不能变为「{label}」",
        current_state=obj.status,
        target_state=target,
    )


def _locked_session(session: ExamSession, name: str | None = None) -> ExamSession:
    """The session re-read under a row lock; with `name`, checked that the transition
    `name` may be taken from its current state."""
    locked = ExamSession.objects.select_for_update().select_related("plan").get(pk=session.pk)
    if name and not can_proceed(getattr(locked, name), check_conditions=False):
        raise _conflict(locked, name, SessionStatus, "场次")
    return locked


def _locked_warning(warning: QualityWarning, name: str) -> tuple[ExamSession, QualityWarning]:
    """Lock the warning's session, then the warning (parent before child), and check
    the warning may take transition `name`."""
    session = _locked_session(warning.session)
    locked = QualityWarning.objects.select_for_update().get(pk=warning.pk)
    if not can_proceed(getattr(locked, name), check_conditions=False):
        raise _conflict(locked, name, WarningStatus, "预警")
    return session, locked


def session_graded_by(session: ExamSession, user) -> bool:
    """True when `user` marked any script of `session` or is on its staff as a grader
    or chief grader."""
    return (
        SessionStaff.objects.filter(
            session=session, user=user, role__in=[StaffRole.GRADER, StaffRole.CHIEF_GRADER]
        ).exists()
        or Mark.objects.filter(booking__session=session, grader=user).exists()
    )


def _require_supervisor(actor, session: ExamSession) -> None:
    """Quality supervisors only, and never one who graded the session (回避)."""
    require_role(actor, Role.REVIEWER)
    if session_graded_by(session, actor):
        raise PermissionDenied(f"您参与了场次 {session.code} 的评分，不能审核该场次")


def _required_text(value: str, field: str, message: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError({field: [message]})
    return value


# Results -------------------------------------------------------------------------------


def _passed_by_attempt(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], bool]:
    """{(case_id, attempt): earned at least one certificate} from CertificateResult rows,
    for the pairs that have any."""
    found: dict[tuple[int, int], bool] = {}
    case_ids = {case_id for case_id, _ in pairs}
    for case_id, attempt, earned in CertificateResult.objects.filter(
        case_id__in=case_ids
    ).values_list("case_id", "attempt", "earned"):
        if (case_id, attempt) in pairs:
            found[(case_id, attempt)] = found.get((case_id, attempt), False) or earned
    return found


def _outcome_passed(case: Case, attempt: int) -> bool:
    """At least one certificate earned, by the results rules (exams.results)."""
    from .results import case_outcome

    return any(result.earned for result in case_outcome(case, attempt))


def case_passed(case: Case, attempt: int | None = None) -> bool:
    """Whether `case` earned at least one certificate in `attempt` (default: its latest):
    the CertificateResult rows when scoring wrote them, else exams.results.case_outcome."""
    attempt = attempt or case.attempts
    found = _passed_by_attempt({(case.pk, attempt)})
    if (case.pk, attempt) in found:
        return found[(case.pk, attempt)]
    return _outcome_passed(case, attempt)


# Warnings ------------------------------------------------------------------------------


def _starts_at(session: ExamSession) -> datetime:
    return timezone.make_aware(datetime.combine(session.date, session.start_time))


def _sat(session: ExamSession):
    """Checked-in bookings of `session` (voided and absent ones are out of the review)."""
    return (
        Booking.objects.filter(session=session, status=BookingStatus.CHECKED_IN)
        .select_related("case")
        .order_by("case_id")
    )


def _other_rates(session: ExamSession) -> list[rules.SessionRate]:
    others = list(
        ExamSession.objects.filter(plan_id=session.plan_id, status__in=RESULT_STATES).exclude(
            pk=session.pk
        )
    )
    bookings = list(
        Booking.objects.filter(session__in=others, status=BookingStatus.CHECKED_IN).values_list(
            "session_id", "case_id", "attempt"
        )
    )
    passed = _passed_by_attempt({(case_id, attempt) for _, case_id, attempt in bookings})
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for session_id, case_id, attempt in bookings:
        if (case_id, attempt) in passed:
            counts[session_id][0] += 1
            counts[session_id][1] += int(passed[(case_id, attempt)])
    return [rules.SessionRate(o.code, *counts[o.pk]) for o in others if o.pk in counts]


def session_facts(session: ExamSession) -> rules.SessionFacts:
    """Everything the warning rules look at, read from the database."""
    components = list(session.components.order_by("pk"))
    codes = {c.pk: c.code for c in components}
    marks: dict[int, set[Decimal]] = defaultdict(set)
    for component_id, mark in PassMark.objects.filter(
        certificate__plan_id=session.plan_id, component_id__in=codes, pass_mark__isnull=False
    ).values_list("component_id", "pass_mark"):
        marks[component_id].add(mark)
    bookings = list(_sat(session))
    by_attempt = {(b.case_id, b.attempt): b.pk for b in bookings}
    scores: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for case_id, attempt, component_id, score in ComponentScore.objects.filter(
        case_id__in=[b.case_id for b in bookings], status=ScoreStatus.FINAL, score__isnull=False
    ).values_list("case_id", "attempt", "component_id", "score"):
        if (case_id, attempt) in by_attempt and component_id in codes:
            scores[by_attempt[(case_id, attempt)]][codes[component_id]] = score
    results = _passed_by_attempt({(b.case_id, b.attempt) for b in bookings})
    candidates = []
    for booking in bookings:
        key = (booking.case_id, booking.attempt)
        if key in results:
            passed = results[key]
        elif booking.case.status in (CaseStatus.SCORED, CaseStatus.PASSED, CaseStatus.FAILED):
            passed = _outcome_passed(booking.case, booking.attempt)
        else:
            passed = None
        candidates.append(
            rules.CandidateFacts(
                ticket=booking.ticket_number,
                checked_in_at=booking.checked_in_at,
                scores=scores.get(booking.pk, {}),
                passed=passed,
            )
        )
    tolerance = dict(
        PlanComponent.objects.filter(plan_id=session.plan_id).values_list(
            "component_id", "tolerance"
        )
    )
    scripts: dict[tuple[int, int], dict[str, Mark]] = defaultdict(dict)
    for mark in Mark.objects.filter(
        booking__in=bookings, slot__in=[MarkSlot.FIRST, MarkSlot.SECOND]
    ).select_related("grader", "booking"):
        scripts[(mark.booking_id, mark.component_id)][mark.slot] = mark
    double_marks = [
        rules.DoubleMark(
            ticket=pair[MarkSlot.FIRST].booking.ticket_number,
            component=codes.get(component_id, str(component_id)),
            first_grader=pair[MarkSlot.FIRST].grader.get_username(),
            second_grader=pair[MarkSlot.SECOND].grader.get_username(),
            first=pair[MarkSlot.FIRST].score,
            second=pair[MarkSlot.SECOND].score,
            tolerance=tolerance.get(component_id, Decimal(5)),
        )
        for (_, component_id), pair in sorted(scripts.items())
        if MarkSlot.FIRST in pair and MarkSlot.SECOND in pair
    ]
    return rules.SessionFacts(
        code=session.code,
        starts_at=_starts_at(session),
        components=tuple(
            rules.ComponentMarks(c.code, c.name, tuple(sorted(marks[c.pk]))) for c in components
        ),
        candidates=tuple(candidates),
        double_marks=tuple(double_marks),
        other_sessions=tuple(_other_rates(session)),
    )


def _json_detail(detail: dict) -> dict:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in detail.items()}


# The audited reason of a warning the system closes because its rule stopped firing.
WITHDRAW_NOTE = "重新提交审核时该预警不再触发，系统自动关闭"


@transaction.atomic
def session_warnings_generate(*, actor, session: ExamSession) -> list[QualityWarning]:
    """Run every early-warning rule over `session` and reconcile the findings with the
    session's warnings, keyed on (rule, subject). On each submission for review:

    1. An open warning (any state but closed) whose rule/subject no longer fires is
       withdrawn: closed by the system (transition `withdraw`, `withdrawn_at` set),
       audited as `warning.withdraw` with no actor and the reason WITHDRAW_NOTE.
       Nothing is left to review about a finding that is gone.
    2. A finding with an open warning keeps that warning in whatever state the review
       left it; when the figures changed its detail and message are updated (audited
       as `warning.update`, before and after). A review already given stands, and the
       supervisor sees the figures as they now are before closing it.
    3. A finding without an open warning creates one (`generated`, audited as
       `warning.generate`), unless the latest warning of the same rule/subject closed
       by the supervisor (not withdrawn) has exactly the same detail: facts already
       reviewed are not raised again. New figures after a closed warning are a new
       warning, linked to the closed one in the audit event (`previous_warning`); the
       closed one stays as the record of the earlier review. A withdrawn warning was
       never settled, so its facts coming back are raised again.

    Idempotent: a second run with the same data writes nothing. Called inside the
    submit transaction with the session row locked (exams.review locks the session
    before any of its warnings); the warnings are re-read under row locks too. Returns
    the warnings created, changed or withdrawn."""
    findings = rules.session_warnings(session_facts(session))
    existing = list(
        QualityWarning.objects.select_for_update().filter(session=session).order_by("pk")
    )
    # At most one open warning per key (constraint one_open_warning_per_subject); of
    # the ones the supervisor closed, the latest (rows in pk order) says what was last
    # reviewed.
    open_by_key = {(w.rule, w.subject): w for w in existing if w.status != WarningStatus.CLOSED}
    reviewed_by_key = {
        (w.rule, w.subject): w
        for w in existing
        if w.status == WarningStatus.CLOSED and w.withdrawn_at is None
    }
    touched: list[QualityWarning] = []
    events: list[Event] = []
    firing: set[tuple[str, str]] = set()
    for finding in findings:
        key = (finding.rule, finding.subject)
        firing.add(key)
        detail = _json_detail(finding.detail)
        warning = open_by_key.get(key)
        if warning is not None:
            if warning.detail == detail and warning.message == finding.message:
                continue
            before = warning.detail
            warning.detail, warning.message = detail, finding.message
            warning.save(update_fields=["detail", "message", "updated_at"])
            events.append(
                event_for(
                    warning,
                    "warning.update",
                    reason=finding.message,
                    changes={"detail": {"before": before, "after": detail}},
                )
            )
        else:
            previous = reviewed_by_key.get(key)
            if previous is not None and previous.detail == detail:
                continue
            warning = QualityWarning.objects.create(
                session=session,
                rule=finding.rule,
                subject=finding.subject,
                detail=detail,
                message=finding.message,
            )
            open_by_key[key] = warning
            changes = {"detail": {"before": None, "after": detail}}
            if previous is not None:
                changes["previous_warning"] = {"before": None, "after": previous.pk}
            events.append(
                event_for(
                    warning,
                    "warning.generate",
                    to_state=warning.status,
                    reason=finding.message,
                    changes=changes,
                )
            )
        touched.append(warning)
    audit_record_many(actor=actor, events=events)
    withdrawn = []
    now = timezone.now()
    for key, warning in open_by_key.items():
        if key in firing:
            continue
        from_state = warning.status
        warning.withdraw(at=now)
        warning.save()
        withdrawn.append(
            event_for(
                warning,
                "warning.withdraw",
                from_state=from_state,
                to_state=warning.status,
                reason=WITHDRAW_NOTE,
                changes={"withdrawn_at": {"before": None, "after": now}},
            )
        )
        touched.append(warning)
    # The system closes these, not the coordinator who submitted: no actor.
    audit_record_many(actor=None, events=withdrawn)
    return touched


@transaction.atomic(durable=True)
def warnings_send(*, session_id: int) -> int:
    """generated -> sent for every warning of the session still waiting (预警信息发送:
    they appear in the supervisors' queue). System action; idempotent (only rows still
    `generated` are claimed, under row locks). Returns how many were sent."""
    warnings = list(
        QualityWarning.objects.select_for_update()
        .filter(session_id=session_id, status=WarningStatus.GENERATED)
        .order_by("pk")
    )
    events = []
    for warning in warnings:
        warning.send()
        warning.save()
        events.append(
            event_for(
                warning,
                "warning.send",
                from_state=WarningStatus.GENERATED,
                to_state=warning.status,
            )
        )
    audit_record_many(actor=None, events=events)
    return len(warnings)


def warnings_pending_sessions() -> list[int]:
    """Sessions with warnings still `generated` (for the sweep)."""
    return sorted(
        set(
            QualityWarning.objects.filter(status=WarningStatus.GENERATED).values_list(
                "session_id", flat=True
            )
        )
    )


def _dispatch_send(session_id: int) -> None:
    from .tasks import quality_warnings_send

    transaction.on_commit(lambda: quality_warnings_send.delay(session_id))


# Session transitions -------------------------------------------------------------------


def _missing_scores(bookings: list[Booking]) -> list[str]:
    """'ticket（component、...）' for each booking lacking a settled result (final,
    exempt or completed) of its attempt on a component it sat."""
    settled = set(
        ComponentScore.objects.filter(
            case_id__in=[b.case_id for b in bookings], status__in=SETTLED_SCORES
        ).values_list("case_id", "attempt", "component_id")
    )
    missing = []
    for booking in bookings:
        names = [
            c.name
            for c in booking.components.all()
            if (booking.case_id, booking.attempt, c.pk) not in settled
        ]
        if names:
            missing.append(f"{booking.ticket_number}（{'、'.join(names)}）")
    return missing


@transaction.atomic(durable=True)
def session_submit_for_review(*, actor, session: ExamSession) -> ExamSession:
    """marking -> in_review (coordinator). First writes the final scores and
    certificate results of every checked-in booking whose marks are complete
    (exams.results.session_scores_write, idempotent; cases examined -> scored); then
    refuses (DomainError `scores_incomplete`, 400, everything rolled back) while any
    checked-in candidate lacks the final result of a component they sat. From here
    marks are locked (exams.scoring refuses changes outside `marking`). The
    early-warning rules run in this transaction and their findings are reconciled with
    the session's warnings (`session_warnings_generate`: on a resubmission after a
    return to marking, warnings no longer firing are withdrawn); sending new ones is
    scheduled after commit (task `quality_warnings_send`). Locks the session, then the
    cases it finalises in primary-key order, then the session's warnings. Audited as
    `session.submit_for_review`."""
    from .results import session_scores_write

    require_role(actor, Role.COORDINATOR)
    session = _locked_session(session, "submit_for_review")
    # Write the final rows of every booking whose marks are complete (idempotent);
    # anything still pending refuses the submission and rolls these writes back.
    pending = session_scores_write(actor=actor, session=session).pending
    bookings = list(_sat(session).prefetch_related("components"))
    missing = [f"{p['ticket_number']}：{p['message']}" for p in pending] or _missing_scores(
        bookings
    )
    if missing:
        raise DomainError(
            f"以下考生尚有科目未确定最终成绩，不能提交审核：{'；'.join(missing)}",
            code="scores_incomplete",
            missing=missing,
        )
    examined = [b.case_id for b in bookings if b.case.status == CaseStatus.EXAMINED]
    if examined:
        case_services.cases_finalise_scores(actor=actor, cases=examined)
    from_state = session.status
    session.submit_for_review()
    session.save()
    audit_record(
        actor=actor,
        instance=session,
        action="session.submit_for_review",
        from_state=from_state,
        to_state=session.status,
    )
    session_warnings_generate(actor=actor, session=session)
    if session.warnings.filter(status=WarningStatus.GENERATED).exists():
        _dispatch_send(session.pk)
    return session


@transaction.atomic(durable=True)
def session_return_to_marking(*, actor, session: ExamSession, notes: str) -> ExamSession:
    """in_review -> marking (supervisor who did not grade it; notes required): marks
    unlock for correction. The warnings stay as they are; on the next submission every
    rule runs again (`session_warnings_generate`): open warnings no longer firing are
    withdrawn, open ones still firing take the new figures, and closed ones come back
    as new warnings only with different figures. Locks the session row. Audited as
    `session.return_to_marking` with the notes as reason."""
    require_role(actor, Role.REVIEWER)
    notes = _required_text(notes, "notes", "请填写退回意见")
    session = _locked_session(session, "return_to_marking")
    _require_supervisor(actor, session)
    from_state = session.status
    session.return_to_marking(notes=notes)
    session.save()
    audit_record(
        actor=actor,
        instance=session,
        action="session.return_to_marking",
        from_state=from_state,
        to_state=session.status,
        reason=notes,
    )
    return session


@transaction.atomic(durable=True)
def session_approve(*, actor, session: ExamSession, notes: str = "") -> ExamSession:
    """in_review -> approved (supervisor who did not grade it), only when every warning
    of the session is closed (StateConflict otherwise). Publishes the results in the
    same transaction: each checked-in case that is `scored` passes when it earned at
    least one certificate of its latest attempt (CertificateResult rows, else
    exams.results.case_outcome) and fails otherwise (cases.services.
    cases_publish_results, result date today); voided and absent cases are left as
    they are. Locks the session, then the cases in one query in primary-key order.
    Audited per case (`case.pass` / `case.fail`) and as `session.approve` with the
    tickets passed and failed. After commit sends exams.signals.session_approved with
    the passed cases (issuance opens their certificates)."""
    require_role(actor, Role.REVIEWER)
    session = _locked_session(session, "approve")
    _require_supervisor(actor, session)
    still_open = list(
        session.warnings.filter(status__in=OPEN_WARNING_STATES).values_list("pk", flat=True)
    )
    if still_open:
        raise StateConflict(
            f"场次 {session.code} 尚有 {len(still_open)} 条预警未关闭，不能审核通过",
            current_state=session.status,
            open_warnings=still_open,
        )
    today = timezone.localdate()
    published: dict[str, list[str]] = {"passed": [], "failed": []}
    bookings = [
        b
        for b in _sat(session)
        if b.case.status == CaseStatus.SCORED and b.case.attempts == b.attempt
    ]
    # case_passed for every booking at once: the CertificateResult rows in one query.
    found = _passed_by_attempt({(b.case_id, b.attempt) for b in bookings})
    outcomes: dict[int, bool] = {}
    for booking in bookings:
        key = (booking.case_id, booking.attempt)
        passed = found[key] if key in found else _outcome_passed(booking.case, booking.attempt)
        outcomes[booking.case_id] = passed
        published["passed" if passed else "failed"].append(booking.ticket_number)
    case_services.cases_publish_results(actor=actor, passed=outcomes, on=today)
    passed_ids = [b.case_id for b in bookings if outcomes[b.case_id]]
    from_state = session.status
    session.approve(notes=(notes or "").strip())
    session.save()
    audit_record(
        actor=actor,
        instance=session,
        action="session.approve",
        from_state=from_state,
        to_state=session.status,
        reason=session.review_notes,
        changes={"published": {"before": None, "after": published}},
    )
    # Issuance opens the certificates the passed cases earned (exams.signals).
    transaction.on_commit(
        lambda: signals.session_approved.send(
            sender=ExamSession, session_id=session.pk, passed_case_ids=passed_ids
        )
    )
    return session


# Warning transitions -------------------------------------------------------------------


def _warning_event(actor, warning: QualityWarning, name: str, from_state: str, reason: str):
    audit_record(
        actor=actor,
        instance=warning,
        action=f"warning.{name}",
        from_state=from_state,
        to_state=warning.status,
        reason=reason,
    )


@transaction.atomic(durable=True)
def warning_review(*, actor, warning: QualityWarning, confirmed: bool, note: str) -> QualityWarning:
    """sent -> confirmed or dismissed (预警审核), by a supervisor who did not grade the
    session, with a note (required). Locks the session, then the warning. Audited as
    `warning.confirm` / `warning.dismiss` with the note as reason."""
    require_role(actor, Role.REVIEWER)
    note = _required_text(note, "note", "请填写审核意见")
    name = "confirm" if confirmed else "dismiss"
    session, warning = _locked_warning(warning, name)
    _require_supervisor(actor, session)
    from_state = warning.status
    getattr(warning, name)(note=note)
    warning.reviewed_by = actor
    warning.save()
    _warning_event(actor, warning, name, from_state, note)
    return warning


@transaction.atomic(durable=True)
def warning_answer(*, actor, warning: QualityWarning, answer: str) -> QualityWarning:
    """confirmed -> answered (预警反馈): the coordinator's account of what was found and
    done (required). Locks the session, then the warning. Audited as `warning.answer`."""
    require_role(actor, Role.COORDINATOR)
    answer = _required_text(answer, "answer", "请填写反馈意见")
    _, warning = _locked_warning(warning, "answer_with")
    from_state = warning.status
    warning.answer_with(answer=answer)
    warning.answered_by = actor
    warning.save()
    _warning_event(actor, warning, "answer", from_state, answer)
    return warning


@transaction.atomic(durable=True)
def warning_close(*, actor, warning: QualityWarning) -> QualityWarning:
    """answered or dismissed -> closed, by a supervisor who did not grade the session:
    the supervisor who raised the question is the one who accepts the answer. Locks the
    session, then the warning. Audited as `warning.close`."""
    require_role(actor, Role.REVIEWER)
    session, warning = _locked_warning(warning, "close")
    _require_supervisor(actor, session)
    from_state = warning.status
    warning.close()
    warning.save()
    _warning_event(actor, warning, "close", from_state, "")
    return warning
