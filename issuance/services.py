"""Issuance services: open the certificates a passed case earned, approve, refuse, issue,
revoke (issue 4; DESIGN.md "Issuance in parallel").

Locks: the case row first, then its certificate rows, in primary-key order (STYLE.md
§2: parent before child). Issuing takes a serial from the issuer's SerialCounter row in
the same transaction, so a rolled-back issue leaves no gap. The PDF is rendered by a
Celery task dispatched on commit (issuance.tasks), never under a lock.

The case completes exactly once, when no certificate it owes is still pending or
approved and at least one is issued: the last issuer (or refuser) does it while holding
the case lock, so two officers finishing at the same time queue on that lock and the
second sees the case already completed.
"""

import logging
import secrets
from collections.abc import Callable, Iterable
from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_fsm import can_proceed

from audit.exceptions import StateConflict
from audit.services import audit_record, audit_record_bulk, event_for
from cases import services as case_services
from cases.models import Case, CaseStatus, CertificateKind
from cases.roles import Role, has_role, require_role
from exams.selectors import certificates_earned

from .models import (
    Certificate,
    CertificateStatus,
    Issuer,
    IssuerKind,
    PlanIssuers,
    is_issuer_officer,
)
from .numbering import Numbering, certificate_number

# progress(done, total): reported by batch services as they go (see jobs.services).
Progress = Callable[[int, int], None]

logger = logging.getLogger(__name__)

OPEN_STATES = (CertificateStatus.PENDING, CertificateStatus.APPROVED)


# Issuers -----------------------------------------------------------------------------


def issuer_for_user(user) -> Issuer | None:
    """The issuer an issuer_officer acts for (None for anyone else)."""
    if not has_role(user, Role.ISSUER_OFFICER):
        return None
    officer = getattr(user, "issuer_officer", None)
    return officer.issuer if officer else None


def plan_issuer(plan, kind: str) -> Issuer | None:
    """Who issues `kind` for `plan`: the plan's PlanIssuers row, else the department of the
    qualification type in the plan's province (qualification), or the filed institution of
    that province whose scope covers the plan's occupation and level (skill)."""
    chosen = PlanIssuers.objects.filter(plan=plan).select_related(
        "qualification_issuer", "skill_issuer"
    )
    chosen = chosen.first()
    if chosen is not None:
        return (
            chosen.qualification_issuer
            if kind == CertificateKind.QUALIFICATION
            else (chosen.skill_issuer)
        )
    if kind == CertificateKind.QUALIFICATION:
        return (
            Issuer.objects.filter(
                kind=IssuerKind.DEPARTMENT,
                department_id=plan.qualification_type.department_id,
                province=plan.province,
            )
            .order_by("code")
            .first()
        )
    return (
        Issuer.objects.filter(
            kind=IssuerKind.INSTITUTION,
            province=plan.province,
            scopes__occupation_id=plan.occupation_id,
            scopes__level=plan.level,
        )
        .order_by("code")
        .first()
    )


# Opening -----------------------------------------------------------------------------


@transaction.atomic
def certificates_open(*, case_ids: Iterable[int], actor=None) -> list[Certificate]:
    """Create the pending certificates of passed cases: one per certificate kind the case
    earned in its latest attempt (exams.selectors.certificates_earned), with a snapshot
    of the holder's name and ID number. Idempotent: a (case, kind) that already has a
    certificate is skipped (the unique constraint backs it). Locks the cases. A kind
    without an issuer is skipped (logged), to be opened by the sweep once an issuer is
    configured. Returns the certificates created."""
    # Locking the cases serialises two openers of the same case (the sweep and the
    # approval hook): the second sees the first's certificates in `have`.
    cases = list(
        Case.objects.select_for_update(of=("self",))
        .filter(pk__in=list(case_ids), status=CaseStatus.PASSED)
        .select_related("candidate", "plan__qualification_type", "plan__occupation")
        .order_by("pk")
    )
    earned = certificates_earned([case.pk for case in cases])
    have = set(Certificate.objects.filter(case__in=cases).values_list("case_id", "kind"))
    issuers: dict[tuple[int, str], Issuer | None] = {}
    new: list[Certificate] = []
    unassigned: set[tuple[int, str]] = set()
    for case in cases:
        plan = case.plan
        for kind in sorted(earned.get(case.pk, ())):
            if (case.pk, kind) in have:
                continue
            if (plan.pk, kind) not in issuers:
                issuers[(plan.pk, kind)] = plan_issuer(plan, kind)
            issuer = issuers[(plan.pk, kind)]
            if issuer is None:
                unassigned.add((plan.pk, kind))
                continue
            skill = kind == CertificateKind.SKILL
            new.append(
                Certificate(
                    case=case,
                    kind=kind,
                    issuer=issuer,
                    qualification_type=None if skill else plan.qualification_type,
                    # The object, not the id: each event's text names it (type_label).
                    occupation=plan.occupation,
                    level=plan.level if skill else None,
                    holder_name=case.candidate.name,
                    holder_id_number=case.candidate.id_number,
                )
            )
    opened = Certificate.objects.bulk_create(new)
    audit_record_bulk(
        actor=actor,
        events=[
            event_for(c, "certificate.open", to_state=c.status, reason="考核合格，生成待发证书")
            for c in opened
        ],
    )
    for plan_id, kind in sorted(unassigned):
        logger.warning(
            "plan %s has no issuer for %s certificates; left to the sweep", plan_id, kind
        )
    return opened


def passed_cases_without_certificates(limit: int = 1000) -> list[int]:
    """Passed cases missing a certificate of a kind they earned (the sweep's outbox):
    none opened yet, or one kind skipped for want of an issuer."""
    candidates = list(
        Case.objects.filter(status=CaseStatus.PASSED)
        .annotate(opened=Count("certificates"))
        .order_by("pk")
        .values_list("pk", "opened")
    )
    short = [pk for pk, opened in candidates if opened < 2]
    earned = certificates_earned(short)
    opened = dict(candidates)
    return [pk for pk in short if len(earned[pk]) > opened[pk]][:limit]


# Transitions -------------------------------------------------------------------------


def _locked(certificate: Certificate, actor, name: str) -> Certificate:
    """Lock the case, then the certificate; check role, issuer scope and state."""
    require_role(actor, Role.ISSUER_OFFICER)
    Case.objects.select_for_update().filter(pk=certificate.case_id).values_list("pk").get()
    locked = (
        Certificate.objects.select_for_update(of=("self",))
        .select_related("issuer", "qualification_type__department", "occupation", "case")
        .get(pk=certificate.pk)
    )
    _check(locked, actor, name)
    return locked


def _check(certificate: Certificate, actor, name: str) -> None:
    """Scope before state: another issuer's officer learns nothing about the
    certificate. PermissionDenied or StateConflict."""
    if not is_issuer_officer(certificate, actor):
        raise PermissionDenied("只能办理本机构的证书")
    if not can_proceed(getattr(certificate, name)):
        target = next(
            (t.target for t in certificate.get_all_status_transitions() if t.name == name), None
        )
        label = CertificateStatus(target).label if target else name
        raise StateConflict(
            f"证书当前状态为「{certificate.get_status_display()}」，不能变为「{label}」",
            current_state=certificate.status,
            target_state=target,
        )


def _audit(actor, certificate: Certificate, name: str, from_state: str, reason="", changes=None):
    audit_record(
        actor=actor,
        instance=certificate,
        action=f"certificate.{name}",
        from_state=from_state,
        to_state=certificate.status,
        reason=reason,
        changes=changes or {},
    )


def _required(value: str, field: str, message: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError({field: [message]})
    return value


def _complete_case_if_settled(actor, case_id: int) -> bool:
    """Complete the (already locked) case when none of its certificates is still open
    and at least one was issued. True when this call completed it."""
    rows = list(Certificate.objects.filter(case_id=case_id).values_list("kind", "status"))
    states = {status for _, status in rows}
    if states & set(OPEN_STATES) or CertificateStatus.ISSUED not in states:
        return False
    # A certificate earned but not opened yet (no issuer then) is still owed.
    if not certificates_earned([case_id])[case_id] <= {kind for kind, _ in rows}:
        return False
    case = Case.objects.get(pk=case_id)
    if case.status != CaseStatus.PASSED:
        return False
    case_services.case_complete(actor=actor, case=case)
    return True


def _approve(actor, certificate: Certificate) -> Certificate:
    certificate = _locked(certificate, actor, "approve")
    from_state = certificate.status
    certificate.approve(by=actor, at=timezone.now())
    certificate.save()
    _audit(actor, certificate, "approve", from_state)
    return certificate


@transaction.atomic(durable=True)
def certificate_approve(*, actor, certificate: Certificate) -> Certificate:
    """pending -> approved by an officer of the certificate's issuer (403 otherwise,
    409 from another state). Locks case then certificate."""
    return _approve(actor, certificate)


def _issue_fields(
    certificate: Certificate,
    on: date,
    numbering: Numbering | None = None,
    valid_holders: dict | None = None,
) -> dict:
    """What issuing `certificate` on `on` sets besides who and when: the number (takes
    a serial: inside the issuing transaction only), a random verification code, the
    validity and review dates. ValidationError when the issuer's filing does not cover
    it or no number can be made. A batch passes its `numbering` and `valid_holders`
    (`_valid_holders`)."""
    problem = certificate.issuer.filing_problem(on, certificate.occupation_id, certificate.level)
    if problem:
        raise ValidationError({"issuer": [problem]})
    if certificate.kind == CertificateKind.SKILL:
        valid_until, review_due = None, None  # 职业技能等级证书 has no fixed expiry
    else:
        qtype = certificate.qualification_type
        valid_until, review_due = qtype.expiry_for(on), qtype.review_due_for(on)
    number = certificate_number(certificate, on, numbering)
    _refuse_second_valid(certificate, number, on, valid_holders)
    return {
        "number": number,
        # 96 random bits, URL-safe: the QR link cannot be guessed (issue 4: ≥ 64 bits).
        "verification_code": secrets.token_urlsafe(12),
        "valid_until": valid_until,
        "review_due": review_due,
    }


def _issue(actor, certificate: Certificate, on: date) -> Certificate:
    certificate = _locked(certificate, actor, "issue")
    from_state = certificate.status
    certificate.issue(by=actor, at=timezone.now(), issued_on=on, **_issue_fields(certificate, on))
    certificate.save()
    _audit(
        actor,
        certificate,
        "issue",
        from_state,
        changes={"number": {"before": None, "after": certificate.masked_number}},
    )
    _complete_case_if_settled(actor, certificate.case_id)
    return certificate


def _refuse_second_valid(
    certificate: Certificate, number: str, on: date, valid_holders: dict | None = None
) -> None:
    """A MEM number is "T" + the holder's ID: a re-issue after revocation or expiry
    repeats it, but a second certificate of the type while one is still valid would
    make the number ambiguous (the holder needs a review, not a new certificate).
    `valid_holders` (a batch's `_valid_holders`) answers for the numbers it covers
    without a query."""
    if certificate.kind != CertificateKind.QUALIFICATION:
        return
    key = (certificate.qualification_type_id, number)
    if valid_holders is not None:
        if key not in valid_holders:
            return  # a fresh serial number: the batch checks those at once (_refuse_taken)
        current = valid_holders[key]
    else:
        current = (
            Certificate.objects.filter(
                qualification_type_id=certificate.qualification_type_id,
                number=number,
                status=CertificateStatus.ISSUED,
            )
            .exclude(pk=certificate.pk)
            .filter(Q(valid_until__isnull=True) | Q(valid_until__gte=on))
            .first()
        )
    if current is not None and current.pk != certificate.pk:
        raise _second_valid_error(current)


def _second_valid_error(current: Certificate) -> ValidationError:
    return ValidationError(
        {
            "number": [
                f"持证人已持有有效的同类证书（编号 {current.masked_number}，"
                f"有效期至 {current.valid_until}）"
            ]
        }
    )


def _refuse_taken(issued: list[Certificate], on: date, valid_holders: dict) -> None:
    """After a batch has numbered `issued`: `_refuse_second_valid` for the serial numbers
    it took (those `valid_holders` does not cover), in one query. A serial is new, so
    only a certificate outside the batch can hold one; the first certificate of the
    batch (in serial order) whose number is held is named."""
    keys = {
        (c.qualification_type_id, c.number)
        for c in issued
        if c.kind == CertificateKind.QUALIFICATION
        and (c.qualification_type_id, c.number) not in valid_holders
    }
    if not keys:
        return
    held = {}
    for row in (
        Certificate.objects.filter(
            qualification_type_id__in={k[0] for k in keys},
            number__in={k[1] for k in keys},
            status=CertificateStatus.ISSUED,
        )
        .exclude(pk__in=[c.pk for c in issued])
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gte=on))
        .order_by("-created_at", "-id")
    ):
        held.setdefault((row.qualification_type_id, row.number), row)
    for certificate in issued:
        current = held.get((certificate.qualification_type_id, certificate.number))
        if current is not None and certificate.kind == CertificateKind.QUALIFICATION:
            raise _named(certificate, _second_valid_error(current))


def _holder_number(certificate: Certificate) -> str | None:
    """The number `certificate` will get when its type's number is the holder's ID (MEM),
    known before a serial is taken; None otherwise."""
    qtype = certificate.qualification_type
    if certificate.kind != CertificateKind.QUALIFICATION or not qtype.number_is_holder_id:
        return None
    return "T" + certificate.holder_id_number.upper()


def _valid_holders(certificates: list[Certificate], on: date) -> dict:
    """For a batch: the issued certificate still valid on `on` (or None) for each
    (type, number) known in advance (holder-ID numbers), in one query, as
    `_refuse_second_valid` would find it (the newest first). The batch records each
    certificate it issues here, so a second one of the same holder in the batch is
    refused as it would be one by one."""
    keys = {
        (c.qualification_type_id, number)
        for c in certificates
        if (number := _holder_number(c)) is not None
    }
    found: dict[tuple[int, str], Certificate | None] = dict.fromkeys(keys)
    if not keys:
        return found
    rows = (
        Certificate.objects.filter(
            qualification_type_id__in={k[0] for k in keys},
            number__in={k[1] for k in keys},
            status=CertificateStatus.ISSUED,
        )
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gte=on))
        .order_by("-created_at", "-id")
    )
    for row in rows:
        key = (row.qualification_type_id, row.number)
        if key in found and found[key] is None:
            found[key] = row
    return found


RENDER_BATCH = 50


def _dispatch_render(certificate_ids: list[int]) -> None:
    """One task per certificate when issued one by one; batches of RENDER_BATCH as one
    WeasyPrint document each when issued in batch (several times faster per PDF)."""
    from .tasks import certificate_render, certificates_render

    if len(certificate_ids) == 1:
        certificate_render.delay(certificate_ids[0])
        return
    for start in range(0, len(certificate_ids), RENDER_BATCH):
        certificates_render.delay(certificate_ids[start : start + RENDER_BATCH])


@transaction.atomic(durable=True)
def certificate_issue(*, actor, certificate: Certificate, on: date | None = None) -> Certificate:
    """approved -> issued: checks the institution's filing (status, dates, scope) on the
    issue date, assigns the number (gap-free serial) and a random verification code,
    the validity and review dates from the type, and completes the case when this was
    the last open certificate. Issuing again is a 409 and takes no number. Renders the
    PDF after commit (issuance.tasks.certificate_render)."""
    certificate = _issue(actor, certificate, on or timezone.localdate())
    transaction.on_commit(lambda: _dispatch_render([certificate.pk]))
    return certificate


@transaction.atomic(durable=True)
def certificate_refuse(*, actor, certificate: Certificate, reason: str) -> Certificate:
    """pending/approved -> refused with a reason. May complete the case when the other
    certificate was issued (the refused one is no longer owed)."""
    reason = _required(reason, "reason", "请填写不予发证的理由")
    certificate = _locked(certificate, actor, "refuse")
    from_state = certificate.status
    certificate.refuse(reason=reason)
    certificate.save()
    _audit(actor, certificate, "refuse", from_state, reason=reason)
    _complete_case_if_settled(actor, certificate.case_id)
    return certificate


@transaction.atomic(durable=True)
def certificate_revoke(
    *, actor, certificate: Certificate, reason: str, on: date | None = None
) -> Certificate:
    """issued -> revoked with a reason; the public verification shows it at once. The
    case's other certificate is not touched."""
    reason = _required(reason, "reason", "请填写撤销理由")
    certificate = _locked(certificate, actor, "revoke")
    from_state = certificate.status
    certificate.revoke(reason=reason, on=on or timezone.localdate())
    certificate.save()
    _audit(actor, certificate, "revoke", from_state, reason=reason)
    return certificate


def _named(certificate: Certificate, exc: Exception) -> Exception:
    """`exc` again, naming the certificate so the officer sees which one stopped the
    batch; not the holder of another issuer's certificate."""
    who = "" if isinstance(exc, PermissionDenied) else f"（{certificate.masked_name}）"
    return type(exc)(f"证书 #{certificate.pk}{who}：{_message(exc)}")


def _locked_batch(actor, certificates, name: str) -> list[Certificate]:
    """Lock every case of the batch, then every certificate, each in one query in
    primary-key order, and check each certificate as `_locked` does (scope, then
    state); returns them in (case, pk) order, the order serials are taken in.

    Every case is locked before the first audit event: taking them one by one after
    the first certificate's event (chain head lock) would invert the lock order of a
    single transition on the next case, and deadlock."""
    require_role(actor, Role.ISSUER_OFFICER)
    ids = {c.pk for c in certificates}
    list(
        Case.objects.select_for_update()
        .filter(pk__in={c.case_id for c in certificates})
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    locked = list(
        Certificate.objects.select_for_update(of=("self",))
        .select_related("issuer", "qualification_type__department", "occupation", "case")
        .prefetch_related("issuer__scopes")
        .filter(pk__in=ids)
        .order_by("case_id", "pk")
    )
    if len(locked) != len(ids):
        missing = sorted(ids - {c.pk for c in locked})
        raise ValidationError({"certificates": [f"证书 #{pk} 不存在" for pk in missing]})
    for certificate in locked:
        try:
            _check(certificate, actor, name)
        except (StateConflict, PermissionDenied) as exc:
            raise _named(certificate, exc) from exc
    return locked


def _complete_cases_if_settled(actor, case_ids: set[int]) -> list[int]:
    """`_complete_case_if_settled` for many (already locked) cases in a few queries;
    returns the ids of the cases this call completed."""
    rows: dict[int, list[tuple[str, str]]] = {}
    for case_id, kind, status in Certificate.objects.filter(case_id__in=case_ids).values_list(
        "case_id", "kind", "status"
    ):
        rows.setdefault(case_id, []).append((kind, status))
    settled = []
    for case_id, certificates in rows.items():
        states = {status for _, status in certificates}
        if not states & set(OPEN_STATES) and CertificateStatus.ISSUED in states:
            settled.append(case_id)
    earned = certificates_earned(settled)
    # A certificate earned but not opened yet (no issuer then) is still owed.
    owed_nothing = [pk for pk in settled if earned[pk] <= {kind for kind, _ in rows[pk]}]
    passed = list(
        Case.objects.filter(pk__in=owed_nothing, status=CaseStatus.PASSED).values_list(
            "pk", flat=True
        )
    )
    if passed:
        case_services.cases_complete(actor=actor, cases=passed)
    return passed


def _message(exc) -> str:
    if isinstance(exc, ValidationError):
        return "；".join(exc.messages)
    return str(exc)


@transaction.atomic(durable=True)
def certificates_approve(
    *, actor, certificates: list[Certificate], progress: Progress | None = None
) -> list[Certificate]:
    """Approve several certificates in one transaction, all or none, each as
    `certificate_approve` does one: the first that may not be approved (another
    issuer's: 403; wrong state: 409) is named and stops the batch. Locks the cases,
    then the certificates, each in one query; one `certificate.approve` event each.
    `progress(done, total)` is called after each certificate (jobs.services reports it
    to the pages while the transaction is still open)."""
    locked = _locked_batch(actor, certificates, "approve")
    now = timezone.now()
    events = []
    for done, certificate in enumerate(locked, 1):
        from_state = certificate.status
        certificate.approve(by=actor, at=now)
        events.append(
            event_for(
                certificate,
                "certificate.approve",
                from_state=from_state,
                to_state=certificate.status,
            )
        )
        if progress is not None:
            progress(done, len(locked))
    # Every certificate takes the same values: one UPDATE, not a save() each (the rows
    # are locked, so the optimistic state check of save() has nothing to catch).
    Certificate.objects.filter(pk__in=[c.pk for c in locked]).update(
        status=CertificateStatus.APPROVED, approved_by=actor, approved_at=now
    )
    for certificate in locked:
        certificate._update_initial_state()
    audit_record_bulk(actor=actor, events=events)
    return locked


@transaction.atomic(durable=True)
def certificates_issue(
    *,
    actor,
    certificates: list[Certificate],
    on: date | None = None,
    progress: Progress | None = None,
) -> list[Certificate]:
    """Issue several approved certificates in one transaction, all or none, each as
    `certificate_issue` does one (filing checked, number and verification code
    assigned, serials in case order); the first that cannot be issued is named and
    stops the batch. Locks the cases, then the certificates, each in one query; one
    `certificate.issue` event each; completes the cases left owing nothing
    (cases.services.cases_complete). Renders the PDFs after commit, in batches.
    `progress(done, total)` is called after each certificate."""
    on = on or timezone.localdate()
    locked = _locked_batch(actor, certificates, "issue")
    now = timezone.now()
    events = []
    valid_holders = _valid_holders(locked, on)
    with Numbering() as numbering:
        for done, certificate in enumerate(locked, 1):
            from_state = certificate.status
            try:
                fields = _issue_fields(certificate, on, numbering, valid_holders)
            except ValidationError as exc:
                raise _named(certificate, exc) from exc
            certificate.issue(by=actor, at=now, issued_on=on, **fields)
            certificate.save()
            key = (certificate.qualification_type_id, certificate.number)
            if key in valid_holders and valid_holders[key] is None:
                valid_holders[key] = certificate  # issued now: valid from `on`
            events.append(
                event_for(
                    certificate,
                    "certificate.issue",
                    from_state=from_state,
                    to_state=certificate.status,
                    changes={"number": {"before": None, "after": certificate.masked_number}},
                )
            )
            if progress is not None:
                progress(done, len(locked))
    _refuse_taken(locked, on, valid_holders)
    audit_record_bulk(actor=actor, events=events)
    _complete_cases_if_settled(actor, {c.case_id for c in locked})
    transaction.on_commit(lambda: _dispatch_render([c.pk for c in locked]))
    return locked
