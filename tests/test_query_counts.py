"""No N+1 queries (issue 5 item 4): every list page and API list costs the same number
of queries for 50 rows as for 500, and that number is pinned here per endpoint.

Each scenario drives one row through the real services first and then adds the volume
with bulk_create, copying that row's shape (states, exemptions, scores, certificates),
so the bulk rows hold states the services could have produced; a service call per row
would take minutes. Pages paginate at 25 rows: here their PAGE_SIZE is raised to 500 so
a page shows every row and an N+1 costs 450 extra queries instead of hiding inside the
same 25 rows. API lists are asked for `?page_size=500` (config.pagination's maximum).
Every endpoint is requested once before it is counted, so per-process caches are warm.

The verification lookup's index is checked with EXPLAIN at the end (PostgreSQL only).
"""

import itertools
import re
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from stdnum.cn import ric

from audit.services import audit_record_many, event_for
from cases import services as case_services
from cases.models import (
    Candidate,
    Case,
    CaseExemption,
    CaseStatus,
    EvaluationPlan,
    HeldCertificate,
    ImportJob,
    ImportJobStatus,
    PassMark,
    PlanCertificate,
    PlanComponent,
    PlanStatus,
    Verification,
    WorkExperience,
)
from cases.selectors import case_audit_events
from catalog.models import Component, RecognitionRule
from exams import results, review, scoring
from exams.models import (
    Booking,
    BookingStatus,
    CertificateResult,
    ComponentScore,
    ExamSession,
    Mark,
    QualityWarning,
    Room,
    SessionStaff,
    SessionStatus,
    StaffRole,
    Venue,
    WarningRule,
    WarningStatus,
)
from exams.scheduling import booking_create
from exams.sessions import session_assign_staff
from issuance import services as issuance_services
from issuance.models import Certificate, CertificateStatus
from issuance.verification import certificate_by_code, certificate_lookup
from jobs import services as job_services
from jobs.models import Job
from tests.cases.factories import PlanFactory, UserFactory, coordinator, hold, register
from tests.exams.factories import APPLIED, eligible_case, exam_session, marking_session
from tests.issuance.factories import BOTH, department, institution, officer, passed_cases

pytestmark = pytest.mark.django_db

FEW, MANY = 50, 500

# Queries per request, the same for FEW and MANY rows (measured on SQLite and PostgreSQL).
# Each includes the session, the user and the user's groups (roles) of the request.
QUERIES = {
    # cases
    "candidate list page": 6,
    "candidate API": 8,
    "held certificate API": 5,
    "case list page": 6,
    "review queue page": 6,
    "case API": 6,
    "plan list page": 5,
    "plan API": 11,
    "dashboard": 6,
    "import page": 4,
    "import API": 5,
    "case audit page": 10,
    "case audit API": 7,
    # exams
    "venue page": 5,
    "venue API": 5,
    "room API": 5,
    "session list page": 7,
    "plan page": 10,
    "session API": 7,
    "grader's session API": 7,
    "grading page": 5,
    "marking assignments API": 5,
    "quality queue page": 5,
    "review session API": 5,
    "session page": 11,
    "booking API": 7,
    "score grid page": 8,
    "marking sheet API": 9,
    "results page": 11,
    "session page in marking": 10,
    "check-in desk": 7,
    "distribution API": 9,
    "quality review page": 12,
    "session warnings API": 5,
    "warning API": 5,
    # issuance
    "certificate queue page": 9,
    "review due page": 7,
    "certificate API": 7,
    "due for review API": 7,
    # jobs
    "job list page": 5,
    "job API": 5,
}


@pytest.fixture(autouse=True)
def _pages_show_every_row(monkeypatch):
    import cases.views
    import exams.views
    import issuance.views.officer
    import jobs.views

    for module in (cases.views, exams.views, issuance.views.officer, jobs.views):
        monkeypatch.setattr(module, "PAGE_SIZE", MANY)


@dataclass(frozen=True)
class Endpoint:
    """A list to count. `url` is formatted with the scenario's attributes; `user` names
    the scenario attribute that reads it; `rows` is a regex counting a page's rows
    (None for JSON: the results, or the list itself); `shown` is how many rows a list
    of fixed length shows (None: every row of the scenario)."""

    url: str
    user: str = "coord"
    rows: str | None = None
    shown: int | None = None


CANDIDATE_LINK = r'href="/candidates/\d+/"'
TICKET_ROW = r'<tr data-ticket="'
SESSION_ROW = r'<tr data-session="'
CERTIFICATE_ROW = r'<tr data-certificate="'


def id_number(n: int) -> str:
    """A valid resident ID number, one per `n` (its birth date), male."""
    birth = date(1960, 1, 1) + timedelta(days=n)
    first17 = f"140105{birth:%Y%m%d}001"
    return first17 + ric.calc_check_digit(first17 + "0")


class Scenario:
    """Rows of one kind: `setup` makes the first through the services, `add` copies its
    shape `k` more times in bulk. `rows` is how many there are."""

    endpoints: dict[str, Endpoint] = {}

    def __init__(self):
        self.serial = itertools.count(1)
        self.coord = coordinator()
        self.rows = 0

    def setup(self) -> None:
        raise NotImplementedError

    def add(self, k: int) -> None:
        raise NotImplementedError

    def grow(self, total: int) -> None:
        self.add(total - self.rows)
        self.rows = total

    # Bulk helpers shared by the scenarios.

    def candidates(self, k: int, prefix: str = "批量考生") -> list[Candidate]:
        rows = []
        for _ in range(k):
            n = next(self.serial)
            rows.append(
                Candidate(
                    id_number=id_number(n),
                    name=f"{prefix}{n}",
                    sex="M",
                    birth_date=date(1960, 1, 1) + timedelta(days=n),
                    phone="13800138000",
                    education="senior",
                    created_by=self.coord,
                )
            )
        return Candidate.objects.bulk_create(rows)

    def cases(self, plan, candidates, status, **fields) -> list[Case]:
        return Case.objects.bulk_create(
            Case(
                candidate=candidate,
                plan=plan,
                status=status,
                application_date=APPLIED,
                created_by=self.coord,
                **fields,
            )
            for candidate in candidates
        )

    def sessions(self, plan, room, k, components, **fields) -> list[ExamSession]:
        sessions = ExamSession.objects.bulk_create(
            ExamSession(
                plan=plan,
                room=room,
                code=f"Q{(n := next(self.serial)):07d}",
                # One session a day: the room is never double-booked.
                date=date(2027, 1, 1) + timedelta(days=n),
                start_time=time(9, 0),
                end_time=time(11, 0),
                capacity=30,
                **fields,
            )
            for _ in range(k)
        )
        through = ExamSession.components.through
        through.objects.bulk_create(
            through(examsession_id=s.pk, component_id=c.pk) for s in sessions for c in components
        )
        return sessions

    def bookings(self, session, cases, components, **fields) -> list[Booking]:
        last = Booking.objects.filter(session=session).order_by("-seat_number")[0].seat_number
        bookings = Booking.objects.bulk_create(
            Booking(
                session=session,
                case=case,
                seat_number=(seat := last + offset),
                ticket_number=f"{session.plan_id:03d}{session.code}{seat:03d}",
                **fields,
            )
            for offset, case in enumerate(cases, start=1)
        )
        through = Booking.components.through
        through.objects.bulk_create(
            through(booking_id=b.pk, component_id=c.pk) for b in bookings for c in components
        )
        return bookings


# Registration and eligibility review (cases) -----------------------------------------


class Registration(Scenario):
    """Candidates with work years and a held certificate (every other one verified),
    each with a submitted case exempt from what the certificate earns."""

    endpoints = {
        "candidate list page": Endpoint("/candidates/", rows=CANDIDATE_LINK),
        "candidate API": Endpoint("/api/v1/candidates/?page_size=500"),
        "held certificate API": Endpoint("/api/v1/held-certificates/?page_size=500"),
        "case list page": Endpoint("/cases/", rows=CANDIDATE_LINK),
        "review queue page": Endpoint("/cases/review/", rows=CANDIDATE_LINK),
        "case API": Endpoint("/api/v1/cases/?page_size=500"),
    }

    def setup(self):
        self.plan = PlanFactory()
        candidate = register(self.coord, name="模板考生", work_years={self.plan.occupation.code: 3})
        self.held = hold(self.coord, candidate, "SAMR-WELD")
        case = case_services.case_create(actor=self.coord, candidate=candidate, plan=self.plan)
        case = case_services.case_submit(actor=self.coord, case=case, on=APPLIED)
        self.exemptions = list(case.exemptions.all())
        assert self.exemptions  # SAMR-WELD exempts from MEM-WELD-FC's training and theory
        self.rows = 1

    def add(self, k):
        candidates = self.candidates(k)
        WorkExperience.objects.bulk_create(
            WorkExperience(candidate=c, occupation=self.plan.occupation, years=Decimal(3))
            for c in candidates
        )
        now = timezone.now()
        held = HeldCertificate.objects.bulk_create(
            HeldCertificate(
                candidate=c,
                qualification_type=self.held.qualification_type,
                number=f"TS{90000000 + c.pk:08d}",
                issuer_name=self.held.issuer_name,
                issue_date=self.held.issue_date,
                expiry_date=self.held.expiry_date,
                review_due_date=self.held.review_due_date,
                verification=Verification.REGISTRY if i % 2 else Verification.UNVERIFIED,
                verified_by=self.coord if i % 2 else None,
                verified_at=now if i % 2 else None,
            )
            for i, c in enumerate(candidates)
        )
        cases = self.cases(self.plan, candidates, CaseStatus.SUBMITTED)
        CaseExemption.objects.bulk_create(
            CaseExemption(
                case=case,
                component_id=e.component_id,
                rule_id=e.rule_id,
                row=e.row,
                basis=basis,
                source=e.source,
            )
            for case, basis in zip(cases, held, strict=True)
            for e in self.exemptions
        )


class Plans(Scenario):
    """Open plans with the components, certificates and pass marks of a plan made by
    cases.plans."""

    endpoints = {
        "plan list page": Endpoint("/exams/plans/", rows=r'href="/exams/plans/\d+/"'),
        "plan API": Endpoint("/api/v1/plans/?page_size=500"),
        "dashboard": Endpoint("/", rows=r'<td><a href="/cases/\?plan=\d+">'),
    }

    def setup(self):
        row = RecognitionRule.objects.filter(target__code="MEM-WELD-FC").order_by("row")[0].row
        # One attachment row switched off, so the plans' disabled rules are read too.
        self.template = PlanFactory(disabled_rows=[row])
        self.rows = 1

    def add(self, k):
        t = self.template
        components = list(t.components.all())
        plans = EvaluationPlan.objects.bulk_create(
            EvaluationPlan(
                name=f"批量计划{next(self.serial)}",
                qualification_type_id=t.qualification_type_id,
                occupation_id=t.occupation_id,
                level=t.level,
                province=t.province,
                exam_date=t.exam_date,
                require_photo=t.require_photo,
                status=PlanStatus.OPEN,
            )
            for _ in range(k)
        )
        PlanComponent.objects.bulk_create(
            PlanComponent(
                plan=plan,
                component_id=pc.component_id,
                max_score=pc.max_score,
                marking_mode=pc.marking_mode,
                tolerance=pc.tolerance,
                order=pc.order,
            )
            for plan in plans
            for pc in components
        )
        template_certificates = list(t.certificates.prefetch_related("marks"))
        certificates = PlanCertificate.objects.bulk_create(
            PlanCertificate(
                plan=plan, kind=c.kind, theory_before_practical=c.theory_before_practical
            )
            for plan in plans
            for c in template_certificates
        )
        marks = {c.kind: list(c.marks.all()) for c in template_certificates}
        PassMark.objects.bulk_create(
            PassMark(certificate=c, component_id=m.component_id, pass_mark=m.pass_mark)
            for c in certificates
            for m in marks[c.kind]
        )
        through = EvaluationPlan.disabled_rules.through
        rules = list(t.disabled_rules.values_list("pk", flat=True))
        through.objects.bulk_create(
            through(evaluationplan_id=plan.pk, recognitionrule_id=rule)
            for plan in plans
            for rule in rules
        )


class Imports(Scenario):
    """Finished candidate imports (cases.imports)."""

    endpoints = {
        # The import page lists the 20 most recent jobs.
        "import page": Endpoint("/candidates/import/", rows=r'href="/imports/\d+/"', shown=20),
        "import API": Endpoint("/api/v1/candidate-imports/?page_size=500"),
    }

    def setup(self):
        pass

    def add(self, k):
        now = timezone.now()
        ImportJob.objects.bulk_create(
            ImportJob(
                file=f"imports/2026/06/batch-{(n := next(self.serial))}.xlsx",
                original_name=f"第{n}批考生.xlsx",
                uploaded_by=self.coord,
                status=ImportJobStatus.SUCCEEDED,
                total_rows=10,
                processed_rows=10,
                created_count=10,
                started_at=now,
                finished_at=now,
            )
            for _ in range(k)
        )


class CaseHistory(Scenario):
    """The audit trail of one case: its candidate's edits pile up."""

    endpoints = {
        "case audit page": Endpoint(
            "/cases/{case.pk}/audit/", rows=r'<td class="mono" title="[0-9a-f]{64}">'
        ),
        "case audit API": Endpoint("/api/v1/cases/{case.pk}/audit/"),
    }

    def setup(self):
        plan = PlanFactory()
        candidate = register(self.coord)
        self.case = case_services.case_create(actor=self.coord, candidate=candidate, plan=plan)
        self.rows = case_audit_events(case=self.case).count()

    def add(self, k):
        candidate = self.case.candidate
        audit_record_many(
            actor=self.coord,
            events=[
                event_for(
                    candidate,
                    "candidate.update",
                    changes={"phone": {"before": "13800138000", "after": "13900139000"}},
                )
                for _ in range(k)
            ],
        )


# Exams ----------------------------------------------------------------------------------


def sat_and_submitted(coord, plan, case, grader) -> ExamSession:
    """A session of `plan` where `case` sat theory and practical, marked by `grader`
    and submitted for the quality review."""
    session, bookings = marking_session(
        coord, plan, [case], staff=[(grader, "grader", "theory"), (grader, "grader", "practical")]
    )
    for component, score in (("theory", 85), ("practical", 78)):
        scoring.mark_enter(
            actor=grader, booking=bookings[case.pk], component=component, score=score
        )
    return review.session_submit_for_review(actor=coord, session=session)


class Venues(Scenario):
    """Venues of one room each."""

    endpoints = {
        "venue page": Endpoint("/exams/venues/", rows=r'<section class="card" data-venue="'),
        "venue API": Endpoint("/api/v1/venues/?page_size=500"),
        "room API": Endpoint("/api/v1/rooms/?page_size=500"),
    }

    def setup(self):
        pass

    def add(self, k):
        venues = Venue.objects.bulk_create(
            Venue(name=f"批量考点{next(self.serial)}", address="太原市") for _ in range(k)
        )
        Room.objects.bulk_create(Room(venue=v, name="第1考场", capacity=30) for v in venues)


class Sessions(Scenario):
    """Planned theory sessions of one plan, each with the grader on its staff (as the
    theory grader, or as chief grader of every component)."""

    endpoints = {
        "session list page": Endpoint("/exams/sessions/", rows=SESSION_ROW),
        "plan page": Endpoint("/exams/plans/{plan.pk}/", rows=SESSION_ROW),
        "session API": Endpoint("/api/v1/sessions/?page_size=500"),
        "grader's session API": Endpoint("/api/v1/sessions/?page_size=500", user="grader"),
        "grading page": Endpoint("/exams/grading/", user="grader", rows=SESSION_ROW),
        "marking assignments API": Endpoint("/api/v1/marking/assignments/", user="grader"),
    }

    def setup(self):
        self.grader = UserFactory(username="grader", roles=["grader"])
        self.plan = PlanFactory()
        template = exam_session(self.coord, self.plan, components=("theory",))
        session_assign_staff(
            actor=self.coord, session=template, user=self.grader, role="grader", component="theory"
        )
        self.room = template.room
        self.theory = Component.objects.get(code="theory")
        self.rows = 1

    def add(self, k):
        sessions = self.sessions(self.plan, self.room, k, [self.theory])
        SessionStaff.objects.bulk_create(
            SessionStaff(
                session=s,
                user=self.grader,
                role=StaffRole.GRADER if i % 2 else StaffRole.CHIEF_GRADER,
                component=self.theory if i % 2 else None,
            )
            for i, s in enumerate(sessions)
        )


class ReviewQueue(Scenario):
    """Sessions in the quality review, each with an open warning."""

    endpoints = {
        "quality queue page": Endpoint("/exams/review/", user="reviewer", rows=SESSION_ROW),
        "review session API": Endpoint("/api/v1/review/sessions/?page_size=500", user="reviewer"),
    }

    def setup(self):
        self.reviewer = UserFactory(username="reviewer", roles=["reviewer"])
        self.plan = PlanFactory()
        grader = UserFactory(username="grader", roles=["grader"])
        case = eligible_case(self.coord, self.plan)
        self.template = sat_and_submitted(self.coord, self.plan, case, grader)
        self.theory = Component.objects.get(code="theory")
        self.rows = 1

    def add(self, k):
        sessions = self.sessions(
            self.plan, self.template.room, k, [self.theory], status=SessionStatus.IN_REVIEW
        )
        QualityWarning.objects.bulk_create(
            QualityWarning(
                session=s,
                rule=WarningRule.PASS_RATE,
                detail={"rate": "1.00"},
                message="通过率 100%，高于预警上限",
                status=WarningStatus.SENT,
            )
            for s in sessions
        )


class Roster(Scenario):
    """One open session whose roster fills up: scheduled cases with their seats."""

    endpoints = {
        "session page": Endpoint("/exams/sessions/{session.pk}/", rows=TICKET_ROW),
        "booking API": Endpoint("/api/v1/bookings/?session={session.pk}&page_size=500"),
    }

    def setup(self):
        self.plan = PlanFactory()
        self.session = exam_session(self.coord, self.plan, capacity=MANY + 10)
        booking_create(
            actor=self.coord, session=self.session, case=eligible_case(self.coord, self.plan)
        )
        self.components = list(Component.objects.filter(code__in=["theory", "practical"]))
        self.rows = 1

    def add(self, k):
        cases = self.cases(self.plan, self.candidates(k), CaseStatus.SCHEDULED)
        self.bookings(self.session, cases, self.components)


class Marking(Scenario):
    """One session in marking whose candidates are all checked in, marked by the
    grader and finalised (cases scored): the copies take the first one's marks, scores
    and certificate results."""

    endpoints = {
        "score grid page": Endpoint(
            "/exams/grading/{session.pk}/theory/", user="grader", rows=TICKET_ROW
        ),
        "marking sheet API": Endpoint(
            "/api/v1/marking/sheet/?session={session.pk}&component=theory", user="grader"
        ),
        "results page": Endpoint("/exams/sessions/{session.pk}/results/", rows=TICKET_ROW),
        "session page in marking": Endpoint("/exams/sessions/{session.pk}/", rows=TICKET_ROW),
        # The desk lists the ten latest check-ins.
        "check-in desk": Endpoint(
            "/exams/sessions/{session.pk}/check-in/", rows=r"<tr><td>\d\d:\d\d:\d\d</td>", shown=10
        ),
        # One histogram per component, whatever the number of candidates.
        "distribution API": Endpoint("/api/v1/review/sessions/{session.pk}/distribution/", shown=2),
    }

    def setup(self):
        self.grader = UserFactory(username="grader", roles=["grader"])
        plan = PlanFactory()
        case = eligible_case(self.coord, plan)
        self.session, bookings = marking_session(
            self.coord,
            plan,
            [case],
            staff=[(self.grader, "grader", "theory"), (self.grader, "grader", "practical")],
            capacity=MANY + 10,
        )
        self.template = bookings[case.pk]
        for component, score in (("theory", 85), ("practical", 78)):
            scoring.mark_enter(
                actor=self.grader, booking=self.template, component=component, score=score
            )
        results.session_finalise(actor=self.coord, session=self.session)
        case.refresh_from_db()
        assert case.status == CaseStatus.SCORED
        self.case = case
        self.rows = 1

    def add(self, k):
        t = self.template
        marks, scores = list(t.marks.all()), list(self.case.component_scores.all())
        earned = list(self.case.certificate_results.all())
        cases = self.cases(self.session.plan, self.candidates(k), CaseStatus.SCORED, attempts=1)
        bookings = self.bookings(
            self.session,
            cases,
            list(t.components.all()),
            status=BookingStatus.CHECKED_IN,
            checked_in_at=t.checked_in_at,
        )
        Mark.objects.bulk_create(
            Mark(
                booking=b,
                component_id=m.component_id,
                slot=m.slot,
                grader_id=m.grader_id,
                score=m.score,
            )
            for b in bookings
            for m in marks
        )
        ComponentScore.objects.bulk_create(
            ComponentScore(
                case=b.case,
                component_id=s.component_id,
                attempt=s.attempt,
                status=s.status,
                score=s.score,
                method=s.method,
                booking=b if s.booking_id else None,
            )
            for b in bookings
            for s in scores
        )
        CertificateResult.objects.bulk_create(
            CertificateResult(
                case=b.case, kind=r.kind, attempt=r.attempt, earned=r.earned, reasons=r.reasons
            )
            for b in bookings
            for r in earned
        )


class Warnings(Scenario):
    """One session in review with a growing list of early warnings: sent, confirmed by
    the supervisor, and answered by the coordinator."""

    endpoints = {
        "quality review page": Endpoint(
            "/exams/review/{session.pk}/", user="reviewer", rows=r'<tr id="warning-\d+"'
        ),
        "session warnings API": Endpoint(
            "/api/v1/review/sessions/{session.pk}/warnings/", user="reviewer"
        ),
        "warning API": Endpoint(
            "/api/v1/review/warnings/?session={session.pk}&page_size=500", user="reviewer"
        ),
    }

    def setup(self):
        self.reviewer = UserFactory(username="reviewer", roles=["reviewer"])
        grader = UserFactory(username="grader", roles=["grader"])
        plan = PlanFactory()
        case = eligible_case(self.coord, plan)
        self.session = sat_and_submitted(self.coord, plan, case, grader)
        self.rows = self.session.warnings.count()

    def add(self, k):
        rows = []
        for i in range(k):
            status = (WarningStatus.SENT, WarningStatus.CONFIRMED, WarningStatus.ANSWERED)[i % 3]
            rows.append(
                QualityWarning(
                    session=self.session,
                    rule=WarningRule.IDENTICAL_SCORES,
                    subject=f"第{next(self.serial)}组",
                    detail={"tickets": []},
                    message="多名考生各科成绩完全相同",
                    status=status,
                    review_note="" if status == WarningStatus.SENT else "需核实",
                    reviewed_by=None if status == WarningStatus.SENT else self.reviewer,
                    answer="已核实，系同一培训班" if status == WarningStatus.ANSWERED else "",
                    answered_by=self.coord if status == WarningStatus.ANSWERED else None,
                )
            )
        QualityWarning.objects.bulk_create(rows)


# Issuance -------------------------------------------------------------------------------


class Certificates(Scenario):
    """Issued MEM qualification certificates of one department, every one due for its
    review within 30 days: the first issued by the services, the others copies."""

    endpoints = {
        "certificate queue page": Endpoint(
            "/certificates/?status=issued", user="officer", rows=CERTIFICATE_ROW
        ),
        "review due page": Endpoint(
            "/certificates/review-due/", user="officer", rows=CERTIFICATE_ROW
        ),
        "certificate API": Endpoint("/api/v1/certificates/?page_size=500", user="officer"),
        "due for review API": Endpoint(
            "/api/v1/certificates/due-for-review/?page_size=500", user="officer"
        ),
    }

    def setup(self):
        issuer = department()
        institution()
        self.officer = officer(issuer)
        (case,) = passed_cases((BOTH,))
        opened = issuance_services.certificates_open(case_ids=[case.pk])
        template = next(c for c in opened if c.issuer_id == issuer.pk)
        qtype = template.qualification_type
        # Issued so that its first review (复审) falls 30 days from today.
        on = (
            timezone.localdate()
            + timedelta(days=30)
            - relativedelta(years=qtype.review_interval_years)
        )
        template = issuance_services.certificate_approve(actor=self.officer, certificate=template)
        self.template = issuance_services.certificate_issue(
            actor=self.officer, certificate=template, on=on
        )
        self.plan = case.plan
        self.case_status = Case.objects.get(pk=case.pk).status
        self.rows = 1

    def add(self, k):
        t = self.template
        candidates = self.candidates(k)
        cases = self.cases(
            self.plan, candidates, self.case_status, attempts=1, result_date=t.issued_on
        )
        Certificate.objects.bulk_create(
            Certificate(
                case=case,
                kind=t.kind,
                issuer_id=t.issuer_id,
                qualification_type_id=t.qualification_type_id,
                occupation_id=t.occupation_id,
                level=t.level,
                holder_name=case.candidate.name,
                holder_id_number=case.candidate.id_number,
                status=CertificateStatus.ISSUED,
                number="T" + case.candidate.id_number,
                verification_code=f"bulk-{case.pk:012d}",
                issued_on=t.issued_on,
                valid_until=t.valid_until,
                review_due=t.review_due,
                approved_by=t.approved_by,
                approved_at=t.approved_at,
                issued_by=t.issued_by,
                issued_at=t.issued_at,
            )
            for case in cases
        )


class Jobs(Scenario):
    """Background jobs (allocation), as their submitter lists them."""

    endpoints = {
        "job list page": Endpoint("/jobs/", rows=r'<td><a href="/jobs/\d+/">#'),
        "job API": Endpoint("/api/v1/jobs/?page_size=500"),
    }

    def setup(self):
        plan = PlanFactory()
        exam_session(self.coord, plan, code="J1")
        eligible_case(self.coord, plan)
        job = job_services.job_create(
            actor=self.coord, kind="exams.allocate", data={"plan": plan.pk}
        )
        job_services.job_run(job_id=job.pk)
        self.template = Job.objects.get(pk=job.pk)
        self.rows = 1

    def add(self, k):
        t = self.template
        Job.objects.bulk_create(
            Job(
                kind=t.kind,
                params=t.params,
                created_by=t.created_by,
                status=t.status,
                total=t.total,
                attempts=t.attempts,
                started_at=t.started_at,
                finished_at=t.finished_at,
                result=t.result,
            )
            for _ in range(k)
        )


SCENARIOS = [
    Registration,
    Plans,
    Imports,
    CaseHistory,
    Venues,
    Sessions,
    ReviewQueue,
    Roster,
    Marking,
    Warnings,
    Certificates,
    Jobs,
]


def _login(client, scenario, endpoint: Endpoint) -> str:
    """Log the endpoint's reader in (outside the count) and return its URL."""
    client.force_login(getattr(scenario, endpoint.user))
    return endpoint.url.format(**vars(scenario))


def _shown(response, endpoint: Endpoint) -> int:
    if endpoint.rows is not None:
        return len(re.findall(endpoint.rows, response.content.decode()))
    body = response.json()
    return len(body["results"]) if isinstance(body, dict) else len(body)


@pytest.mark.parametrize("scenario_class", SCENARIOS, ids=lambda c: c.__name__)
def test_list_queries_do_not_grow_with_rows(scenario_class, client, django_assert_max_num_queries):
    scenario = scenario_class()
    scenario.setup()
    counts: dict[int, dict[str, int]] = {}
    for size in (FEW, MANY):
        scenario.grow(size)
        counts[size] = {}
        for name, endpoint in scenario.endpoints.items():
            url = _login(client, scenario, endpoint)
            if size == FEW:
                client.get(url)  # warm the per-process caches
            with django_assert_max_num_queries(QUERIES[name]) as queries:
                response = client.get(url)
            assert (name, response.status_code) == (name, 200)
            counts[size][name] = len(queries)
            expected = endpoint.shown if endpoint.shown is not None else size
            assert (name, _shown(response, endpoint)) == (name, expected)
    assert counts[MANY] == counts[FEW]
    assert counts[MANY] == {name: QUERIES[name] for name in scenario.endpoints}


# The verification lookup on PostgreSQL ------------------------------------------------


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_verification_lookups_read_an_index_not_the_table(on_postgresql):
    """With thousands of issued certificates (and fresh statistics), the public look-ups
    by number + holder name and by the QR code find the row through an index: the
    number index (Meta.indexes `certificate_number`) and the unique verification code.
    The SQL explained is the one the look-ups themselves run."""
    scenario = Certificates()
    scenario.setup()
    scenario.grow(3000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE issuance_certificate")
    target = Certificate.objects.filter(status=CertificateStatus.ISSUED).order_by("pk")[1500]

    with CaptureQueriesContext(connection) as by_number:
        found = certificate_lookup(number=target.number, name=target.holder_name)
    with CaptureQueriesContext(connection) as by_code:
        found_by_code = certificate_by_code(target.verification_code)
    assert (found, found_by_code) == (target, target)

    number_plan = _plan(by_number[-1]["sql"])
    assert "Seq Scan on issuance_certificate" not in number_plan, number_plan
    assert "using certificate_number on issuance_certificate" in number_plan, number_plan
    code_plan = _plan(by_code[-1]["sql"])
    assert "Seq Scan on issuance_certificate" not in code_plan, code_plan
    assert re.search(r"using issuance_certificate_verification_code\w* on", code_plan), code_plan
