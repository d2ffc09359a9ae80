"""Registration and eligibility review: every write to candidates, held certificates
and cases goes through here, in one transaction with its audit event."""

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import can_proceed

from audit.exceptions import StateConflict
from audit.masking import mask_ids_in
from audit.services import (
    Event,
    audit_record,
    audit_record_bulk,
    audit_record_many,
    diff,
    event_for,
    snapshot,
)
from catalog.models import Component, Occupation, QualificationType, RecognitionRule
from catalog.recognition import catalog_snapshot

from .eligibility import evaluate
from .exceptions import EligibilityError
from .models import (
    Candidate,
    Case,
    CaseExemption,
    CaseStatus,
    EvaluationPlan,
    HeldCertificate,
    Verification,
    WorkExperience,
)
from .photos import photo_discard, photo_store
from .plans import registration_problem
from .roles import Role, require_role
from .validators import parse_id_number

CANDIDATE_FIELDS = ["id_number", "name", "sex", "birth_date", "phone", "education", "photo"]
HELD_FIELDS = [
    "qualification_type",
    "number",
    "issuer_name",
    "issue_date",
    "expiry_date",
    "review_due_date",
    "revoked_on",
    "verification",
    "verification_note",
]
CASE_FIELDS = ["candidate", "plan", "status"]


# Candidates ---------------------------------------------------------------------------


def _identity(id_number: str, sex: str | None, birth_date: date | None) -> tuple[str, date, str]:
    """Parse the ID and check what was entered against what it encodes."""
    try:
        number, birth, derived_sex = parse_id_number(id_number)
    except ValidationError as exc:
        raise ValidationError({"id_number": exc.messages}) from None
    errors = {}
    if birth_date and birth_date != birth:
        errors["birth_date"] = [f"出生日期与身份证号码不符（身份证为 {birth}）"]
    if sex and sex != derived_sex:
        errors["sex"] = [f"性别与身份证号码不符（身份证为{'男' if derived_sex == 'M' else '女'}）"]
    if errors:
        raise ValidationError(errors)
    return number, birth, derived_sex


def _set_work_experience(candidate: Candidate, work_years: dict[str, object]) -> dict:
    """Replace the candidate's years per occupation code; return {code: years} as recorded."""
    occupations = {o.code: o for o in Occupation.objects.filter(code__in=list(work_years))}
    unknown = sorted(set(work_years) - set(occupations))
    if unknown:
        raise ValidationError({"work_years": [f"未知的职业编码：{', '.join(unknown)}"]})
    candidate.work_experience.exclude(occupation__code__in=list(work_years)).delete()
    for code, years in work_years.items():
        row = WorkExperience(candidate=candidate, occupation=occupations[code], years=years)
        try:
            row.full_clean(exclude=["candidate"], validate_unique=False)
        except ValidationError as exc:
            raise ValidationError({"work_years": [f"{code}：{m}" for m in exc.messages]}) from None
        WorkExperience.objects.update_or_create(
            candidate=candidate, occupation=occupations[code], defaults={"years": years}
        )
    return {code: str(years) for code, years in sorted(work_years.items())}


def candidate_create(*, actor, photo=None, **fields) -> Candidate:
    """Register a candidate (fields: id_number, name, phone, education, and optionally
    sex, birth_date, work_years). Birth date and sex come from the ID number; when given
    they must agree with it. The photo is stored first, outside the transaction, and
    removed again if registration fails. Audited as `candidate.create`. Not idempotent:
    a second call with the same ID number is refused."""
    require_role(actor, Role.COORDINATOR)
    stored = photo_store(photo) if photo else ""
    try:
        return _candidate_create(actor=actor, photo_name=stored, **fields)
    except BaseException:
        photo_discard(stored)
        raise


@transaction.atomic(durable=True)
def _candidate_create(
    *,
    actor,
    id_number: str,
    name: str,
    phone: str,
    education: str,
    sex: str | None = None,
    birth_date: date | None = None,
    photo_name: str = "",
    work_years: dict[str, object] | None = None,
) -> Candidate:
    number, birth, derived_sex = _identity(id_number, sex, birth_date)
    candidate = Candidate(
        id_number=number,
        name=(name or "").strip(),
        sex=derived_sex,
        birth_date=birth,
        phone=(phone or "").strip(),
        education=education,
        photo=photo_name,
        created_by=actor,
    )
    candidate.full_clean(exclude=["photo"], validate_unique=False)
    if Candidate.objects.filter(id_number=number).exists():
        raise ValidationError({"id_number": ["该身份证号码已登记"]})
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError:  # registered concurrently
        raise ValidationError({"id_number": ["该身份证号码已登记"]}) from None
    changes = {
        k: {"before": None, "after": v} for k, v in snapshot(candidate, CANDIDATE_FIELDS).items()
    }
    if work_years:
        changes["work_years"] = {
            "before": None,
            "after": _set_work_experience(candidate, work_years),
        }
    audit_record(actor=actor, instance=candidate, action="candidate.create", changes=changes)
    return candidate


def candidate_update(*, actor, candidate: Candidate, photo=None, **fields) -> Candidate:
    """Change a candidate's fields; audited with before/after of each changed field.
    A new photo is stored first and removed if the update fails; the replaced one is
    deleted once the update has committed."""
    require_role(actor, Role.COORDINATOR)
    stored = photo_store(photo) if photo else ""
    try:
        return _candidate_update(actor=actor, candidate=candidate, photo_name=stored, **fields)
    except BaseException:
        photo_discard(stored)
        raise


# A changed ID number would no longer match certificates that embed it (MEM: T + ID),
# nor what review decided; cases past these states keep the number they were judged on.
ID_CHANGE_ALLOWED = [
    CaseStatus.DRAFT,
    CaseStatus.RETURNED,
    CaseStatus.WITHDRAWN,
    CaseStatus.REJECTED,
]


@transaction.atomic(durable=True)
def _candidate_update(
    *, actor, candidate: Candidate, photo_name: str = "", work_years=None, **fields
) -> Candidate:
    candidate = Candidate.objects.select_for_update().get(pk=candidate.pk)
    before = snapshot(candidate, CANDIDATE_FIELDS)
    unknown = set(fields) - (set(CANDIDATE_FIELDS) - {"photo"})
    if unknown:
        raise ValidationError({name: ["不可修改的字段"] for name in sorted(unknown)})
    if any(k in fields for k in ("id_number", "sex", "birth_date")):
        number, birth, sex = _identity(
            fields.get("id_number", candidate.id_number),
            fields.get("sex"),
            fields.get("birth_date"),
        )
        if number != candidate.id_number:
            _check_id_change(candidate, number)
        fields.update(id_number=number, birth_date=birth, sex=sex)
    for name, value in fields.items():
        setattr(candidate, name, value.strip() if isinstance(value, str) else value)
    replaced = ""
    if photo_name:
        replaced, candidate.photo = candidate.photo.name, photo_name
    candidate.full_clean(exclude=["photo"], validate_unique=False)
    candidate.save()
    changes = diff(before, snapshot(candidate, CANDIDATE_FIELDS))
    if work_years is not None:
        old = {
            w.occupation.code: str(w.years)
            for w in candidate.work_experience.select_related("occupation")
        }
        new = _set_work_experience(candidate, work_years)
        if old != new:
            changes["work_years"] = {"before": old, "after": new}
    if changes:
        audit_record(actor=actor, instance=candidate, action="candidate.update", changes=changes)
    if replaced:
        transaction.on_commit(lambda: photo_discard(replaced))
    return candidate


def _check_id_change(candidate: Candidate, number: str) -> None:
    if Candidate.objects.filter(id_number=number).exists():
        raise ValidationError({"id_number": ["该身份证号码已登记"]})
    if candidate.cases.exclude(status__in=ID_CHANGE_ALLOWED).exists():
        raise ValidationError(
            {"id_number": ["该考生有已提交或已审核通过的报名，不能修改身份证号码"]}
        )
    if candidate.held_certificates.filter(qualification_type__number_is_holder_id=True).exists():
        raise ValidationError(
            {"id_number": ["该考生登记了编号含身份证号码的证书，请先核对并更正证书后再修改"]}
        )


def candidate_reveal_id_number(*, actor, candidate: Candidate) -> str:
    """The full ID number, for an authorised view; every display is audited."""
    require_role(actor, Role.COORDINATOR, Role.ISSUER_OFFICER)
    with transaction.atomic():
        audit_record(actor=actor, instance=candidate, action="candidate.reveal_id_number")
    return candidate.id_number


# Held certificates --------------------------------------------------------------------


def held_certificate_problems(
    candidate: Candidate, qtype: QualificationType, number: str
) -> list[str]:
    """Why `number` is not a valid number of `qtype` for `candidate` (empty when it is)."""
    if not qtype.number_matches(number):
        return [
            f"证书编号 {mask_ids_in(number)} 不符合{qtype.name}的编号格式：{qtype.number_format}"
        ]
    if qtype.number_is_holder_id and number[1:] != candidate.id_number:
        return [f"{qtype.name}的编号应为 T + 持证人身份证号码"]
    return []


def _resolve_type(value) -> QualificationType:
    if isinstance(value, QualificationType):
        return value
    try:
        return QualificationType.objects.get(code=value)
    except QualificationType.DoesNotExist:
        raise ValidationError({"qualification_type": [f"未知的证书类型代码：{value}"]}) from None


@transaction.atomic(durable=True)
def held_certificate_create(
    *,
    actor,
    candidate: Candidate,
    qualification_type,
    number: str,
    issuer_name: str,
    issue_date: date,
    expiry_date: date | None = None,
    review_due_date: date | None = None,
    revoked_on: date | None = None,
    verification: str = Verification.UNVERIFIED,
    verification_note: str = "",
) -> HeldCertificate:
    """Record a certificate the candidate holds. The number must match its type's format;
    the expiry defaults to the type's validity from the issue date. An expired or revoked
    certificate may be recorded (it is a fact), but earns nothing at submit."""
    require_role(actor, Role.COORDINATOR)
    qtype = _resolve_type(qualification_type)
    number = (number or "").strip().upper()
    problems = held_certificate_problems(candidate, qtype, number)
    if problems:
        raise ValidationError({"number": problems})
    if expiry_date is None and issue_date:
        expiry_date = qtype.expiry_for(issue_date)
    held = HeldCertificate(
        candidate=candidate,
        qualification_type=qtype,
        number=number,
        issuer_name=(issuer_name or "").strip(),
        issue_date=issue_date,
        expiry_date=expiry_date,
        review_due_date=review_due_date,
        revoked_on=revoked_on,
        verification=verification,
        verification_note=verification_note,
    )
    if verification != Verification.UNVERIFIED:
        held.verified_by, held.verified_at = actor, timezone.now()
    held.full_clean(validate_unique=False)
    taken = ValidationError({"number": [f"证书编号 {mask_ids_in(number)} 已登记"]})
    if HeldCertificate.objects.filter(qualification_type=qtype, number=number).exists():
        raise taken
    try:
        with transaction.atomic():
            held.save()
    except IntegrityError:  # recorded concurrently
        raise taken from None
    changes = {k: {"before": None, "after": v} for k, v in snapshot(held, HELD_FIELDS).items()}
    audit_record(actor=actor, instance=held, action="held_certificate.create", changes=changes)
    return held


@transaction.atomic(durable=True)
def held_certificate_verify(
    *, actor, held: HeldCertificate, verification: str, note: str = ""
) -> HeldCertificate:
    """Record the outcome of checking a held certificate. A coordinator's own
    verification and a rejection need a note saying what was checked."""
    require_role(actor, Role.COORDINATOR)
    if verification not in Verification.values or verification == Verification.UNVERIFIED:
        raise ValidationError({"verification": ["请选择核验结果"]})
    if verification in {Verification.COORDINATOR, Verification.REJECTED} and not note.strip():
        raise ValidationError({"note": ["人工核验或核验未通过时须填写说明"]})
    held = HeldCertificate.objects.select_for_update().get(pk=held.pk)
    before = snapshot(held, HELD_FIELDS)
    held.verification, held.verification_note = verification, note.strip()
    held.verified_by, held.verified_at = actor, timezone.now()
    held.save()
    audit_record(
        actor=actor,
        instance=held,
        action="held_certificate.verify",
        reason=note.strip(),
        changes=diff(before, snapshot(held, HELD_FIELDS)),
    )
    return held


@transaction.atomic
def held_certificates_verify_from_registry(
    *, actor, matches: list[tuple[HeldCertificate, str]], note: str
) -> list[HeldCertificate]:
    """Record what another department's certificate list (issuance.exchange) says about
    held certificates: each match is (held certificate, Verification.REGISTRY when the
    list shows it issued, or Verification.REJECTED when it shows it revoked/cancelled).
    `note` names the list (source and file) and is kept as the verification note.

    Plain `atomic`, not durable: the import calls it inside its own all-or-nothing
    transaction. Locks the held certificates in primary-key order; one
    `held_certificate.verify` event per certificate that changed. Idempotent: a
    certificate already in the stated verification is left alone (no event). Returns
    the certificates that changed."""
    require_role(actor, Role.COORDINATOR)
    wanted = {held.pk: verification for held, verification in matches}
    allowed = {Verification.REGISTRY, Verification.REJECTED}
    if not set(wanted.values()) <= allowed:
        raise ValidationError({"verification": ["证书库核验结果只能为已核验或核验未通过"]})
    note = note.strip()
    if not note:
        raise ValidationError({"note": ["证书库核验须注明来源"]})
    now = timezone.now()
    changed, events = [], []
    for held in HeldCertificate.objects.select_for_update().filter(pk__in=wanted).order_by("pk"):
        verification = wanted[held.pk]
        if held.verification == verification:
            continue
        text = (
            f"证书库显示该证书已吊销/注销。{note}"
            if verification == Verification.REJECTED
            else note
        )
        before = snapshot(held, HELD_FIELDS)
        held.verification, held.verification_note = verification, text
        held.verified_by, held.verified_at = actor, now
        held.save(
            update_fields=[
                "verification",
                "verification_note",
                "verified_by",
                "verified_at",
                "updated_at",
            ]
        )
        events.append(
            event_for(
                held,
                "held_certificate.verify",
                reason=text,
                changes=diff(before, snapshot(held, HELD_FIELDS)),
            )
        )
        changed.append(held)
    audit_record_many(actor=actor, events=events)
    return changed


# Cases --------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def case_create(*, actor, candidate: Candidate, plan: EvaluationPlan) -> Case:
    """Open a draft application of `candidate` to `plan`, while the plan takes
    registrations (open, within its window)."""
    require_role(actor, Role.COORDINATOR)
    problem = registration_problem(plan)
    if problem:
        raise ValidationError({"plan": [problem]})
    if (
        Case.objects.filter(candidate=candidate, plan=plan)
        .exclude(status__in=[CaseStatus.WITHDRAWN, CaseStatus.REJECTED])
        .exists()
    ):
        raise ValidationError({"plan": ["该考生已报名此评价计划"]})
    try:
        with transaction.atomic():
            case = Case.objects.create(candidate=candidate, plan=plan, created_by=actor)
    except IntegrityError:  # opened concurrently (one_open_case_per_candidate_and_plan)
        raise ValidationError({"plan": ["该考生已报名此评价计划"]}) from None
    audit_record(
        actor=actor,
        instance=case,
        action="case.create",
        to_state=case.status,
        changes={k: {"before": None, "after": v} for k, v in snapshot(case, CASE_FIELDS).items()},
    )
    return case


def _locked_case(case: Case, actor, name: str, roles=(Role.COORDINATOR,)) -> Case:
    """Re-read the case under a row lock and check the actor may take `name` from here."""
    require_role(actor, *roles)
    locked = (
        # Only the case row: locking the joined plan and type rows would serialise
        # every case of a type and invert the lock order of issuance (case, audit).
        Case.objects.select_for_update(of=("self",))
        .select_related("candidate", "plan__qualification_type", "plan__occupation")
        .get(pk=case.pk)
    )
    if not can_proceed(getattr(locked, name), check_conditions=False):
        raise _conflict(locked, name, "案件")
    return locked


def _conflict(case: Case, name: str, noun: str) -> StateConflict:
    target = next((t.target for t in case.get_all_status_transitions() if t.name == name), None)
    target_label = CaseStatus(target).label if target else name
    return StateConflict(
        f"{noun}当前状态为「{case.get_status_display()}」，不能变为「{target_label}」",
        current_state=case.status,
        target_state=target,
    )


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["请填写理由"]})
    return reason


def _finish(case: Case, actor, name: str, from_state: str, reason: str = "", changes=None) -> Case:
    case.save()
    audit_record(
        actor=actor,
        instance=case,
        action=f"case.{name}",
        from_state=from_state,
        to_state=case.status,
        reason=reason,
        changes=changes or {},
    )
    return case


@transaction.atomic(durable=True)
def case_submit(*, actor, case: Case, on: date | None = None) -> Case:
    """draft/returned -> submitted. Checks identity, age on the exam date (18 to statutory
    retirement age), photo, the plan's education and work-years rules and level
    eligibility through equivalence; refuses with every problem listed, writing nothing.
    Snapshots the exemptions (rule row and basis certificate) and the equivalence.
    Locks the case row."""
    case = _locked_case(case, actor, "submit")
    on = on or timezone.localdate()
    result = evaluate(case, on)
    if not result.ok:
        raise EligibilityError(result.problems)
    from_state = case.status
    case.exemptions.all().delete()
    rules = {r.row: r for r in RecognitionRule.objects.filter(row__in=result.recognition.rows)}
    components = {c.code: c for c in Component.objects.all()}
    exemptions = _exemptions(case, result, rules, components)
    CaseExemption.objects.bulk_create(exemptions)
    _snapshot_recognition(case, result)
    case.submit(application_date=on)
    return _finish(case, actor, "submit", from_state, changes=_submit_changes(case, exemptions))


def _exemptions(case: Case, result, rules: dict, components: dict) -> list[CaseExemption]:
    """The exemption rows `result` (an eligibility evaluation) earns `case`: one per
    component, from the first matching rule row."""
    seen = set()
    exemptions = []
    for match in result.recognition.matches:
        for code in match.exempt:
            if code in seen:
                continue
            seen.add(code)
            exemptions.append(
                CaseExemption(
                    case=case,
                    component=components[code],
                    rule=rules[match.row],
                    row=match.row,
                    basis_id=match.ref,
                    source=match.source,
                )
            )
    return exemptions


def _snapshot_recognition(case: Case, result) -> None:
    """Record on `case` the equivalence and the certificates that earned nothing."""
    equivalence = next(
        (e for e in result.recognition.equivalences if e.occupation == case.plan.occupation.code),
        None,
    )
    case.equivalent_level = equivalence.level if equivalence else None
    case.equivalence_basis_id = equivalence.ref if equivalence else None
    case.equivalence_source = equivalence.source if equivalence else ""
    case.not_counted = [
        {"held_certificate": n.ref, "type": n.held_code, "reason": n.reason}
        for n in result.not_counted
    ]


def _submit_changes(case: Case, exemptions: list[CaseExemption]) -> dict:
    return {
        "exempt": {
            "before": None,
            "after": [
                {"component": e.component.code, "row": e.row, "basis": e.basis_id}
                for e in exemptions
            ],
        },
        "equivalent_level": {"before": None, "after": case.equivalent_level},
        "not_counted": {"before": None, "after": case.not_counted},
    }


@transaction.atomic(durable=True)
def case_return_for_correction(*, actor, case: Case, reason: str) -> Case:
    """submitted -> returned, with the reason the candidate must correct."""
    case = _locked_case(case, actor, "return_for_correction")  # 403 and 409 before 400
    reason = _require_reason(reason)
    from_state = case.status
    case.return_for_correction(reason=reason)
    return _finish(case, actor, "return_for_correction", from_state, reason)


@transaction.atomic(durable=True)
def case_reject(*, actor, case: Case, reason: str) -> Case:
    """submitted -> rejected (end), with the reason."""
    case = _locked_case(case, actor, "reject")  # 403 and 409 before 400
    reason = _require_reason(reason)
    from_state = case.status
    case.reject(reason=reason)
    return _finish(case, actor, "reject", from_state, reason)


def approval_problems(case: Case) -> list[str]:
    """Why the held certificates the case relies on do not support approval: not
    verified, or revoked by the application date (recorded after submit). Relied on:
    the basis of each exemption, and the equivalence basis where the plan's level
    depends on it (below 5). Reads `case.exemptions` and `case.equivalence_basis`, so
    a list of cases should prefetch `exemptions__basis__qualification_type`."""
    relied = {e.basis_id: e.basis for e in case.exemptions.all()}
    if case.equivalence_basis_id and case.plan.level < 5:
        relied[case.equivalence_basis_id] = case.equivalence_basis
    problems = []
    for held in sorted(relied.values(), key=lambda h: h.pk):
        label = f"证书 {held.qualification_type.code} {held.masked_number}"
        if not held.is_verified:
            problems.append(f"{label} 尚未核验（{held.get_verification_display()}）")
        if held.revoked_on and case.application_date and held.revoked_on <= case.application_date:
            problems.append(f"{label} 已于 {held.revoked_on} 被吊销或注销")
    return problems


@transaction.atomic(durable=True)
def case_approve(*, actor, case: Case) -> Case:
    """submitted -> eligible. Every held certificate granting an exemption or the
    equivalence must be verified (in the registry, or by a coordinator with a note)."""
    case = _locked_case(case, actor, "approve")
    problems = approval_problems(case)
    if problems:
        raise EligibilityError(problems)
    from_state = case.status
    case.approve()
    return _finish(case, actor, "approve", from_state)


@transaction.atomic(durable=True)
def case_withdraw(*, actor, case: Case, reason: str = "") -> Case:
    """draft/submitted/returned/eligible -> withdrawn (end)."""
    case = _locked_case(case, actor, "withdraw")
    from_state = case.status
    case.withdraw(reason=(reason or "").strip())
    return _finish(case, actor, "withdraw", from_state, (reason or "").strip())


# Exam stage ---------------------------------------------------------------------------
# Called by exams services inside their own transaction (a booking and its case move
# together), so these use plain atomic; each locks the case row and audits.


@transaction.atomic
def case_schedule(*, actor, case: Case, detail: dict | None = None) -> Case:
    """eligible -> scheduled (a seat was booked; `detail` names it for the audit)."""
    case = _locked_case(case, actor, "schedule")
    from_state = case.status
    case.schedule()
    return _finish(
        case, actor, "schedule", from_state, changes={"booking": {"before": None, "after": detail}}
    )


@transaction.atomic
def case_unschedule(*, actor, case: Case, reason: str) -> Case:
    """scheduled -> eligible (the booking was cancelled before the exam)."""
    case = _locked_case(case, actor, "unschedule")
    reason = _require_reason(reason)
    from_state = case.status
    case.unschedule()
    return _finish(case, actor, "unschedule", from_state, reason)


@transaction.atomic
def case_check_in(*, actor, case: Case) -> Case:
    """scheduled -> examined, at the check-in desk."""
    case = _locked_case(case, actor, "check_in")
    from_state = case.status
    case.check_in()
    return _finish(case, actor, "check_in", from_state)


@transaction.atomic
def case_mark_absent(*, actor, case: Case) -> Case:
    """scheduled -> absent, when the session closes without a check-in."""
    case = _locked_case(case, actor, "mark_absent")
    from_state = case.status
    case.mark_absent()
    return _finish(case, actor, "mark_absent", from_state)


@transaction.atomic
def case_void(*, actor, case: Case, reason: str) -> Case:
    """examined/scored -> void (end): misconduct recorded with evidence."""
    case = _locked_case(case, actor, "void")
    reason = _require_reason(reason)
    from_state = case.status
    case.void(reason=reason)
    return _finish(case, actor, "void", from_state, reason)


@transaction.atomic
def case_finalise_scores(*, actor, case: Case) -> Case:
    """examined -> scored: every required component has its final result (checked by
    the exams scoring service that calls this)."""
    case = _locked_case(case, actor, "finalise_scores", roles=(Role.GRADER, Role.COORDINATOR))
    from_state = case.status
    case.finalise_scores()
    return _finish(case, actor, "finalise_scores", from_state)


@transaction.atomic
def case_publish_result(*, actor, case: Case, passed: bool, on: date) -> Case:
    """scored -> passed / failed, when quality review approves the session."""
    name = "pass_" if passed else "fail"
    case = _locked_case(case, actor, name, roles=(Role.REVIEWER,))
    from_state = case.status
    getattr(case, name)(on=on)
    return _finish(case, actor, "pass" if passed else "fail", from_state)


@transaction.atomic
def case_complete(*, actor, case: Case) -> Case:
    """passed -> completed, when the last owed certificate is issued (issuance)."""
    case = _locked_case(case, actor, "complete", roles=(Role.ISSUER_OFFICER,))
    from_state = case.status
    case.complete()
    return _finish(case, actor, "complete", from_state)


@transaction.atomic(durable=True)
def case_retake(*, actor, case: Case, on: date | None = None) -> Case:
    """failed/absent -> eligible, within the plan's retake window (from the result
    date, or the exam date for an absence) and retake count; only components not yet
    passed are sat again (exams.scheduling works them out)."""
    case = _locked_case(case, actor, "retake")
    on = on or timezone.localdate()
    plan = case.plan
    since = case.result_date or plan.exam_date
    if (on - since).days > plan.retake_window_days:
        raise ValidationError(
            {"case": [f"补考期限已过（自 {since} 起 {plan.retake_window_days} 天内）"]}
        )
    if case.attempts > plan.retake_limit:
        raise ValidationError({"case": [f"补考次数已达上限（{plan.retake_limit} 次）"]})
    from_state = case.status
    case.retake()
    return _finish(case, actor, "retake", from_state)


# Batches ------------------------------------------------------------------------------
# Batch paths for batch actions (bulk registration, the review queue, exams' allocation,
# check-in lists and session approval, issuance batches). Each takes the same checks
# and transitions as its single service, locks its cases in one query ordered by
# primary key (never one lock round trip per case), and writes one audit event per
# changed object with a single audit_record_bulk call (the rows audit_record_many
# writes, without a model instance per event).


@dataclass
class Registration:
    """One candidate for `candidates_register`: `candidate_create`'s fields, an optional
    photo upload and work years, and the certificates held (each a dict of
    `held_certificate_create`'s keyword arguments, without actor and candidate)."""

    id_number: str
    name: str
    phone: str
    education: str
    photo: Any = None
    work_years: dict[str, object] = field(default_factory=dict)
    held: list[dict] = field(default_factory=list)


def _batch_error(errors: list[str]) -> ValidationError:
    return ValidationError({"registrations": errors})


def candidates_register(*, actor, registrations: list[Registration]) -> list[Candidate]:
    """Register many candidates with their work years and held certificates, or none:
    every registration is checked by the rules of `candidate_create` and
    `held_certificate_create` (ID number, field rules, work years, certificate number
    format and holder, duplicates within the batch and in the database, found with a
    few IN queries), and any problem refuses the whole batch with a ValidationError on
    `registrations` listing each one as "第 n 名：…". Photos are stored first, outside
    the transaction, and removed again if the batch fails. Inserts in bulk in one
    durable transaction; audited like the single services (`candidate.create` with the
    work years, `held_certificate.create`). Not idempotent: a second call with the same
    ID numbers is refused. Returns the candidates in the order given."""
    require_role(actor, Role.COORDINATOR)
    stored: list[str] = []
    try:
        errors = []
        for index, registration in enumerate(registrations, start=1):
            try:
                stored.append(photo_store(registration.photo) if registration.photo else "")
            except ValidationError as exc:
                stored.append("")
                errors += [f"第 {index} 名：{m}" for m in exc.messages]
        if errors:
            raise _batch_error(errors)
        return _candidates_register(actor=actor, registrations=registrations, photos=stored)
    except BaseException:
        for name in stored:
            photo_discard(name)
        raise


def _held_for(
    actor, candidate: Candidate, fields: dict, qtypes: dict[str, QualificationType], now
) -> HeldCertificate:
    """A held certificate built and checked as `held_certificate_create` does, without
    the queries: the type comes from `qtypes` and foreign keys are not re-validated."""
    fields = dict(fields)
    value = fields.pop("qualification_type")
    code = value.code if isinstance(value, QualificationType) else value
    qtype = qtypes.get(code)
    if qtype is None:
        raise ValidationError({"qualification_type": [f"未知的证书类型代码：{code}"]})
    number = (fields.pop("number", "") or "").strip().upper()
    problems = held_certificate_problems(candidate, qtype, number)
    if problems:
        raise ValidationError({"number": problems})
    issue_date = fields.get("issue_date")
    if fields.get("expiry_date") is None and issue_date:
        fields["expiry_date"] = qtype.expiry_for(issue_date)
    fields["issuer_name"] = (fields.get("issuer_name") or "").strip()
    held = HeldCertificate(candidate=candidate, qualification_type=qtype, number=number, **fields)
    if held.verification != Verification.UNVERIFIED:
        held.verified_by, held.verified_at = actor, now
    held.full_clean(
        exclude=["candidate", "qualification_type", "verified_by"], validate_unique=False
    )
    return held


@transaction.atomic(durable=True)
def _candidates_register(
    *, actor, registrations: list[Registration], photos: list[str]
) -> list[Candidate]:
    codes = {
        h["qualification_type"].code
        if isinstance(h["qualification_type"], QualificationType)
        else h["qualification_type"]
        for r in registrations
        for h in r.held
    }
    qtypes = {q.code: q for q in QualificationType.objects.filter(code__in=codes)}
    wanted = {code for r in registrations for code in r.work_years}
    occupations = {o.code: o for o in Occupation.objects.filter(code__in=wanted)}
    now = timezone.now()
    errors: list[str] = []
    candidates: list[Candidate] = []
    work: list[WorkExperience] = []
    held: list[list[HeldCertificate]] = []
    first_row: dict[str, int] = {}
    numbers: dict[tuple[int, str], int] = {}
    for index, (registration, photo) in enumerate(zip(registrations, photos, strict=True), 1):
        problems: list[str] = []
        # Fields the ID number decides are not checked again when it is invalid.
        exclude = ["photo", "created_by"]
        try:
            number, birth, sex = _identity(registration.id_number, None, None)
        except ValidationError as exc:
            problems += exc.messages
            number, birth, sex = registration.id_number, None, ""
            exclude += ["id_number", "birth_date", "sex"]
        candidate = Candidate(
            id_number=number,
            name=(registration.name or "").strip(),
            sex=sex,
            birth_date=birth,
            phone=(registration.phone or "").strip(),
            education=registration.education,
            photo=photo,
            created_by=actor,
        )
        try:
            # The actor is a fetched user: re-validating the foreign key is a query per row.
            candidate.full_clean(exclude=exclude, validate_unique=False)
        except ValidationError as exc:
            problems += exc.messages
        if first_row.setdefault(number, index) != index:
            problems.append(f"身份证号码与第 {first_row[number]} 名重复")
        unknown = sorted(set(registration.work_years) - set(occupations))
        if unknown:
            problems.append(f"未知的职业编码：{', '.join(unknown)}")
        for code, years in registration.work_years.items():
            if code not in occupations:
                continue
            row = WorkExperience(candidate=candidate, occupation=occupations[code], years=years)
            try:
                # Not the constraints: years >= 0 is the field's own MinValueValidator,
                # and Django checks a CheckConstraint with a query per row.
                row.full_clean(
                    exclude=["candidate", "occupation"],
                    validate_unique=False,
                    validate_constraints=False,
                )
            except ValidationError as exc:
                problems += [f"{code}：{m}" for m in exc.messages]
            work.append(row)
        certificates = []
        for fields in registration.held:
            try:
                certificate = _held_for(actor, candidate, fields, qtypes, now)
            except ValidationError as exc:
                problems += exc.messages
                continue
            key = (certificate.qualification_type_id, certificate.number)
            if numbers.setdefault(key, index) != index:
                problems.append(
                    f"证书编号 {mask_ids_in(certificate.number)} 与第 {numbers[key]} 名重复"
                )
            certificates.append(certificate)
        errors += [f"第 {index} 名：{m}" for m in problems]
        candidates.append(candidate)
        held.append(certificates)
    for number in Candidate.objects.filter(id_number__in=list(first_row)).values_list(
        "id_number", flat=True
    ):
        errors.append(f"第 {first_row[number]} 名：该身份证号码已登记")
    taken = HeldCertificate.objects.filter(number__in=[n for _, n in numbers]).values_list(
        "qualification_type_id", "number"
    )
    for key in taken:
        if key in numbers:
            errors.append(f"第 {numbers[key]} 名：证书编号 {mask_ids_in(key[1])} 已登记")
    if errors:
        raise _batch_error(errors)
    try:
        with transaction.atomic():
            Candidate.objects.bulk_create(candidates)
            # Children were built with the unsaved candidates; bulk_create now takes
            # each one's new pk.
            WorkExperience.objects.bulk_create(work)
            HeldCertificate.objects.bulk_create([h for rows in held for h in rows])
    except IntegrityError:  # registered concurrently
        raise _batch_error(["身份证号码或证书编号刚被其他操作登记，请重新提交"]) from None
    events: list[Event] = []
    for registration, candidate, certificates in zip(registrations, candidates, held, strict=True):
        # The same changes candidate_create and held_certificate_create record.
        changes = {
            k: {"before": None, "after": v}
            for k, v in snapshot(candidate, CANDIDATE_FIELDS).items()
        }
        if registration.work_years:
            changes["work_years"] = {
                "before": None,
                "after": {code: str(y) for code, y in sorted(registration.work_years.items())},
            }
        events.append(event_for(candidate, "candidate.create", changes=changes))
        events += [
            event_for(
                h,
                "held_certificate.create",
                changes={
                    k: {"before": None, "after": v} for k, v in snapshot(h, HELD_FIELDS).items()
                },
            )
            for h in certificates
        ]
    audit_record_bulk(actor=actor, events=events)
    return candidates


@transaction.atomic(durable=True)
def cases_create(*, actor, plan: EvaluationPlan, candidates: list[Candidate]) -> list[Case]:
    """Open a draft application to `plan` for each of `candidates` (as `case_create`),
    all or none: a candidate already holding a live application of the plan, or given
    twice, refuses the batch (ValidationError on `plan`). Audited as `case.create` per
    case. Returns the cases in the order given."""
    require_role(actor, Role.COORDINATOR)
    problem = registration_problem(plan)
    if problem:
        raise ValidationError({"plan": [problem]})
    ids = [c.pk for c in candidates]
    repeated = sorted(pk for pk, n in Counter(ids).items() if n > 1)
    live = sorted(
        Case.objects.filter(candidate_id__in=ids, plan=plan)
        .exclude(status__in=[CaseStatus.WITHDRAWN, CaseStatus.REJECTED])
        .values_list("candidate_id", flat=True)
    )
    if live or repeated:
        names = {c.pk: c.name for c in candidates}
        raise ValidationError(
            {
                "plan": [f"考生 {names[pk]} 已报名此评价计划" for pk in live]
                + [f"考生 {names[pk]} 在本批中重复" for pk in repeated]
            }
        )
    cases = [Case(candidate=c, plan=plan, created_by=actor) for c in candidates]
    try:
        with transaction.atomic():
            Case.objects.bulk_create(cases)
    except IntegrityError:  # opened concurrently (one_open_case_per_candidate_and_plan)
        raise ValidationError({"plan": ["有考生刚被其他操作报名此评价计划，请重新提交"]}) from None
    audit_record_bulk(
        actor=actor,
        events=[
            event_for(
                case,
                "case.create",
                to_state=case.status,
                changes={
                    k: {"before": None, "after": v} for k, v in snapshot(case, CASE_FIELDS).items()
                },
            )
            for case in cases
        ],
    )
    return cases


def _locked_cases(cases, actor, name: str, roles=(Role.COORDINATOR,), prefetch=()) -> list[Case]:
    """Lock every case of `cases` (cases or ids) in one query, in primary-key order, and
    check each may take transition `name` (StateConflict naming the first that may not).
    The batch counterpart of `_locked_case`."""
    require_role(actor, *roles)
    ids = {c if isinstance(c, int) else c.pk for c in cases}
    locked = list(
        Case.objects.select_for_update(of=("self",))
        .select_related("candidate", "plan__qualification_type", "plan__occupation")
        .prefetch_related(*prefetch)
        .filter(pk__in=ids)
        .order_by("pk")
    )
    for case in locked:
        if not can_proceed(getattr(case, name), check_conditions=False):
            raise _conflict(case, name, f"案件 #{case.pk} ")
    if len(locked) != len(ids):
        missing = sorted(ids - {case.pk for case in locked})
        raise ValidationError({"cases": [f"案件 #{pk} 不存在" for pk in missing]})
    return locked


BULK_UPDATE_BATCH = 500
# What each transition (and the submit snapshot) writes besides the status.
TRANSITION_FIELDS = {
    "submit": [
        "application_date",
        "status_reason",
        "equivalent_level",
        "equivalence_basis",
        "equivalence_source",
        "not_counted",
    ],
    "return_for_correction": ["status_reason"],
    "reject": ["status_reason"],
    "withdraw": ["status_reason"],
    "check_in": ["attempts"],
    "mark_absent": ["attempts"],
    "pass_": ["result_date"],
    "fail": ["result_date"],
}


# Above this many distinct sets of values, _save_many sends one parametrised UPDATE per
# row in a single executemany instead of one ORM update per set.
SAVE_MANY_GROUPS = 20


def _save_many(cases: list[Case], name: str) -> None:
    """Write the transition `name` just taken on `cases`: what `save()` does row by row.
    Cases are grouped by the values written and each group is one
    `UPDATE ... WHERE id IN (...)` per BULK_UPDATE_BATCH (most transitions write the
    same values to every case: one statement); when the values differ from case to
    case (submit's snapshot), one `UPDATE ... WHERE id = %s` goes to the database for
    all rows at once (executemany: pipelined on PostgreSQL). Not `bulk_update`: its CASE
    per field and row costs more to build and to run than the rows themselves. The
    optimistic state check (ConcurrentTransitionMixin) is moot here: the rows are
    locked, so each still holds the state read under the lock."""
    now = timezone.now()
    fields = [
        Case._meta.get_field(f) for f in ["status", "updated_at", *TRANSITION_FIELDS.get(name, [])]
    ]
    groups: dict[tuple, tuple[tuple, list[int]]] = {}
    for case in cases:
        case.updated_at = now
        values = tuple(getattr(case, f.attname) for f in fields)
        key = tuple(
            json.dumps(v, sort_keys=True, default=str) if isinstance(v, list | dict) else v
            for v in values
        )
        groups.setdefault(key, (values, []))[1].append(case.pk)
    if len(groups) > SAVE_MANY_GROUPS:
        connection = transaction.get_connection()
        quote = connection.ops.quote_name
        # Only the model's own quoted table and column names are interpolated; every
        # value is a parameter.
        sql = "UPDATE {} SET {} WHERE {} = %s".format(  # noqa: S608
            quote(Case._meta.db_table),
            ", ".join(f"{quote(f.column)} = %s" for f in fields),
            quote(Case._meta.pk.column),
        )
        rows = [
            [f.get_db_prep_save(getattr(case, f.attname), connection) for f in fields] + [case.pk]
            for case in cases
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)
    else:
        for values, pks in groups.values():
            for start in range(0, len(pks), BULK_UPDATE_BATCH):
                Case.objects.filter(pk__in=pks[start : start + BULK_UPDATE_BATCH]).update(
                    **{f.attname: v for f, v in zip(fields, values, strict=True)}
                )
    for case in cases:
        case._update_initial_state()  # as save() does: the next save checks from here


def _move_many(
    cases: list[Case],
    actor,
    name: str,
    *,
    action: str | None = None,
    args=None,
    reason: str = "",
    changes=None,
) -> list[Case]:
    """Take transition `name` on each locked case (with `args(case)` as keyword
    arguments), save them all and audit each as `case.<action or name>`, one event per
    case, `changes(case)` as the event's changes."""
    events = []
    for case in cases:
        from_state = case.status
        getattr(case, name)(**(args(case) if args else {}))
        events.append(
            event_for(
                case,
                f"case.{action or name}",
                from_state=from_state,
                to_state=case.status,
                reason=reason,
                changes=changes(case) if changes else {},
            )
        )
    _save_many(cases, name)
    audit_record_bulk(actor=actor, events=events)
    return cases


@dataclass
class SubmitOutcome:
    """What `cases_submit` did: the cases submitted, and for each case refused, the
    eligibility problems (Chinese) that kept it where it was."""

    submitted: list[Case] = field(default_factory=list)
    refused: dict[int, list[str]] = field(default_factory=dict)


@transaction.atomic(durable=True)
def cases_submit(*, actor, cases, on: date | None = None) -> SubmitOutcome:
    """Submit many cases at once (the review queue's batch action): each case is checked
    and snapshotted exactly as by `case_submit`; a case with eligibility problems stays
    as it is and is listed in `refused` with them (a problem of that case, not of the
    batch), the others are submitted. A case in a state that cannot be submitted
    refuses the whole batch (StateConflict). Locks the cases in one query in
    primary-key order; one `case.submit` event per case submitted."""
    on = on or timezone.localdate()
    locked = _locked_cases(
        cases,
        actor,
        "submit",
        prefetch=[
            "candidate__work_experience",
            "candidate__held_certificates__qualification_type",
            "plan__disabled_rules",
        ],
    )
    outcome = SubmitOutcome()
    results = {}
    # The catalog is read once for the batch, not three queries per case.
    with catalog_snapshot():
        for case in locked:
            result = evaluate(case, on)
            if result.ok:
                results[case.pk] = result
            else:
                outcome.refused[case.pk] = result.problems
    ready = [case for case in locked if case.pk in results]
    CaseExemption.objects.filter(case__in=ready).delete()
    rows = {r for result in results.values() for r in result.recognition.rows}
    rules = {r.row: r for r in RecognitionRule.objects.filter(row__in=rows)}
    components = {c.code: c for c in Component.objects.all()}
    exempt: dict[int, list[CaseExemption]] = {}
    for case in ready:
        exempt[case.pk] = _exemptions(case, results[case.pk], rules, components)
        _snapshot_recognition(case, results[case.pk])
    CaseExemption.objects.bulk_create([e for rows in exempt.values() for e in rows])
    outcome.submitted = _move_many(
        ready,
        actor,
        "submit",
        args=lambda case: {"application_date": on},
        changes=lambda case: _submit_changes(case, exempt[case.pk]),
    )
    return outcome


@dataclass
class ApproveOutcome:
    """What `cases_approve` did: the cases approved, and for each case refused, why the
    certificates it relies on do not support approval (Chinese)."""

    approved: list[Case] = field(default_factory=list)
    refused: dict[int, list[str]] = field(default_factory=dict)


@transaction.atomic(durable=True)
def cases_approve(*, actor, cases) -> ApproveOutcome:
    """Approve many submitted cases at once: each as by `case_approve`; a case whose
    relied-on certificates are unverified or revoked stays submitted and is listed in
    `refused` with `approval_problems`. A case not submitted refuses the whole batch
    (StateConflict). Locks the cases in one query in primary-key order; one
    `case.approve` event per case approved."""
    locked = _locked_cases(
        cases,
        actor,
        "approve",
        prefetch=["exemptions__basis__qualification_type", "equivalence_basis__qualification_type"],
    )
    outcome = ApproveOutcome()
    ready = []
    for case in locked:
        problems = approval_problems(case)
        if problems:
            outcome.refused[case.pk] = problems
        else:
            ready.append(case)
    outcome.approved = _move_many(ready, actor, "approve")
    return outcome


def _reasoned(actor, reasons: dict[int, str], name: str, required: bool) -> list[Case]:
    """Take transition `name` (withdraw, return_for_correction, reject) on each case id
    of `reasons` with its own reason, audited as `case.<name>` with it."""
    reasons = {pk: (text or "").strip() for pk, text in reasons.items()}
    locked = _locked_cases(reasons, actor, name)  # 403 and 409 before 400
    if required:
        missing = sorted(pk for pk, text in reasons.items() if not text)
        if missing:
            raise ValidationError({"reason": [f"案件 #{pk} 请填写理由" for pk in missing]})
    events = []
    for case in locked:
        from_state = case.status
        getattr(case, name)(reason=reasons[case.pk])
        events.append(
            event_for(
                case,
                f"case.{name}",
                from_state=from_state,
                to_state=case.status,
                reason=reasons[case.pk],
            )
        )
    _save_many(locked, name)
    audit_record_bulk(actor=actor, events=events)
    return locked


@transaction.atomic(durable=True)
def cases_withdraw(*, actor, reasons: dict[int, str]) -> list[Case]:
    """Withdraw many cases, each with its own reason (may be empty), as `case_withdraw`;
    all or none. Locks the cases in one query in primary-key order."""
    return _reasoned(actor, reasons, "withdraw", required=False)


@transaction.atomic(durable=True)
def cases_return_for_correction(*, actor, reasons: dict[int, str]) -> list[Case]:
    """Return many submitted cases for correction, each with its reason (required), as
    `case_return_for_correction`; all or none. Locks the cases in one query."""
    return _reasoned(actor, reasons, "return_for_correction", required=True)


@transaction.atomic(durable=True)
def cases_reject(*, actor, reasons: dict[int, str]) -> list[Case]:
    """Reject many submitted cases, each with its reason (required), as `case_reject`;
    all or none. Locks the cases in one query."""
    return _reasoned(actor, reasons, "reject", required=True)


@transaction.atomic
def cases_schedule(*, actor, details: dict[int, dict]) -> list[Case]:
    """eligible -> scheduled for each case id of `details` (its booking, for the audit),
    as `case_schedule` does one. Called by exams.scheduling inside its transaction."""
    return _move_many(
        _locked_cases(details, actor, "schedule"),
        actor,
        "schedule",
        changes=lambda case: {"booking": {"before": None, "after": details[case.pk]}},
    )


@transaction.atomic
def cases_check_in(*, actor, cases) -> list[Case]:
    """scheduled -> examined for each case, as `case_check_in` does one."""
    return _move_many(_locked_cases(cases, actor, "check_in"), actor, "check_in")


@transaction.atomic
def cases_finalise_scores(*, actor, cases) -> list[Case]:
    """examined -> scored for each case, as `case_finalise_scores` does one (called by
    exams scoring, which has checked every final result)."""
    return _move_many(
        _locked_cases(cases, actor, "finalise_scores", roles=(Role.GRADER, Role.COORDINATOR)),
        actor,
        "finalise_scores",
    )


@transaction.atomic
def cases_publish_results(*, actor, passed: dict[int, bool], on: date) -> list[Case]:
    """scored -> passed / failed for each case id of `passed` (True: passed), as
    `case_publish_result` does one, result date `on`. Called by exams.review inside the
    session's approval."""
    require_role(actor, Role.REVIEWER)
    locked = list(
        Case.objects.select_for_update(of=("self",))
        .select_related("candidate", "plan")
        .filter(pk__in=list(passed))
        .order_by("pk")
    )
    missing = sorted(set(passed) - {case.pk for case in locked})
    if missing:  # as _locked_cases refuses: a result is never silently not published
        raise ValidationError({"cases": [f"案件 #{pk} 不存在" for pk in missing]})
    done = []
    for result in (True, False):
        name = "pass_" if result else "fail"
        group = [case for case in locked if passed[case.pk] is result]
        for case in group:
            if not can_proceed(getattr(case, name), check_conditions=False):
                raise _conflict(case, name, f"案件 #{case.pk} ")
        done += _move_many(
            group, actor, name, action="pass" if result else "fail", args=lambda c: {"on": on}
        )
    return sorted(done, key=lambda case: case.pk)


@transaction.atomic
def cases_complete(*, actor, cases) -> list[Case]:
    """passed -> completed for each case, as `case_complete` does one (issuance, when
    the last certificate a case owes is issued)."""
    return _move_many(
        _locked_cases(cases, actor, "complete", roles=(Role.ISSUER_OFFICER,)), actor, "complete"
    )
