"""Helpers for the issuance tests: issuers with officers, and cases driven to `passed`
through the real exams services. Append your helpers; do not rewrite others'."""

from datetime import date, datetime, timedelta

from django.utils import timezone

from catalog.models import Department, Occupation
from exams import results, review
from exams.models import Booking
from exams.scoring import MarkEntry, marks_enter
from issuance.models import (
    FilingStatus,
    InstitutionScope,
    Issuer,
    IssuerKind,
    IssuerOfficer,
    NumberSeries,
)
from tests.cases.factories import PlanFactory, UserFactory, coordinator
from tests.exams.factories import eligible_case, marking_session

# (theory, practical) on a MEM-WELD-FC plan (80/80 qualification, 60/60 skill):
BOTH = (90, 95)  # earns both certificates
SKILL_ONLY = (72, 65)  # earns the skill-level certificate only
NEITHER = (55, 40)  # fails


def department(code="mem-14", dept="mem", province="14", name="山西省应急管理厅", **kwargs):
    issuer = Issuer.objects.create(
        kind=IssuerKind.DEPARTMENT,
        code=code,
        name=name,
        province=province,
        department=Department.objects.get(code=dept),
        seal_text=name,
        **kwargs,
    )
    if dept == "mohurd":
        NumberSeries.objects.create(issuer=issuer, type_code="MOHURD-ELEC", category="01")
        NumberSeries.objects.create(issuer=issuer, type_code="MOHURD-WELD", category="02")
    if dept == "samr":
        NumberSeries.objects.create(issuer=issuer, type_code="SAMR-WELD", prefix="TS", width=6)
    return issuer


def institution(
    code="inst-s1234",
    province="14",
    name="山西省技能人才评价中心",
    institution_code="1234",
    scopes=(("6-18-02-04", (5, 4, 3)), ("6-31-01-03", (5, 4, 3))),
    **kwargs,
):
    fields = {
        "institution_type": "S",
        "site_sequence": "000001",
        "filing_status": FilingStatus.FILED,
        "filing_valid_from": date(2025, 1, 1),
        "filing_valid_to": date(2030, 12, 31),
        **kwargs,
    }
    issuer = Issuer.objects.create(
        kind=IssuerKind.INSTITUTION,
        code=code,
        name=name,
        province=province,
        institution_code=institution_code,
        seal_text=name,
        **fields,
    )
    for occupation, levels in scopes:
        for level in levels:
            InstitutionScope.objects.create(
                issuer=issuer, occupation=Occupation.objects.get(code=occupation), level=level
            )
    return issuer


def officer(issuer, username=None):
    user = UserFactory(username=username or f"officer-{issuer.code}", roles=["issuer_officer"])
    IssuerOfficer.objects.create(user=user, issuer=issuer)
    return user


def passed_cases(scores=(BOTH, SKILL_ONLY, NEITHER), plan=None):
    """Cases of `plan` (default a MEM-WELD-FC level-5 plan in Shanxi) sat, marked with
    `scores` and approved by a quality supervisor: the scored ones are passed or failed.
    Returns the cases in the order of `scores`."""
    coord = coordinator("issuance-coord")
    grader = UserFactory(username="issuance-grader", roles=["grader"])
    supervisor = UserFactory(username="issuance-reviewer", roles=["reviewer"])
    plan = plan or PlanFactory()
    cases = [eligible_case(coord, plan) for _ in scores]
    for case in cases:  # safety training done: the qualification needs it
        results.training_complete(actor=coord, case=case)
    session, bookings = marking_session(
        coord,
        plan,
        cases,
        staff=[(grader, "grader", "theory"), (grader, "grader", "practical")],
    )
    ordered = [bookings[case.pk] for case in cases]
    # Everyone in before the start: the late check-in warning stays quiet.
    Booking.objects.filter(session=session, checked_in_at__isnull=False).update(
        checked_in_at=timezone.make_aware(datetime.combine(session.date, session.start_time))
        - timedelta(minutes=10)
    )
    for index, code in enumerate(("theory", "practical")):
        entries = [
            MarkEntry(b.ticket_number, s[index]) for b, s in zip(ordered, scores, strict=True)
        ]
        marks_enter(actor=grader, session=session, component=code, entries=entries)
    session = review.session_submit_for_review(actor=coord, session=session)
    review.warnings_send(session_id=session.pk)
    for warning in session.warnings.all():
        review.warning_review(actor=supervisor, warning=warning, confirmed=False, note="已核实")
        review.warning_close(actor=supervisor, warning=warning)
    review.session_approve(actor=supervisor, session=session)
    for case in cases:
        case.refresh_from_db()
    return cases
