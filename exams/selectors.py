"""Shared reads of the exams stage. Each helper function states what it prefetches."""

from decimal import Decimal

from django.db.models import Exists, OuterRef, QuerySet

from cases.models import Case, CaseStatus, EvaluationPlan, PlanComponent

from .models import Booking, BookingStatus, CertificateResult, ComponentScore, ScoreStatus

# Bookings that still hold the candidate's time: a seat waiting or an exam being sat.
HOLDING = [BookingStatus.BOOKED, BookingStatus.CHECKED_IN]


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


def best_final_scores(rows) -> dict[int, Decimal]:
    """{component id: best final score} over ComponentScore `rows` of every attempt
    (a retake keeps the best result per component)."""
    best: dict[int, Decimal] = {}
    for row in rows:
        if row.status != ScoreStatus.FINAL or row.score is None:
            continue
        if row.component_id not in best or row.score > best[row.component_id]:
            best[row.component_id] = row.score
    return best


def _components_passed_for_all_certificates(case: Case) -> set[int]:
    """Components whose best final score so far reaches the pass mark of every
    certificate of the plan that requires them."""
    best = best_final_scores(ComponentScore.objects.filter(case=case))
    marks: dict[int, list] = {}
    for certificate in case.plan.certificates.prefetch_related("marks"):
        for mark in certificate.marks.all():
            marks.setdefault(mark.component_id, []).append(mark.pass_mark)
    return {
        component_id
        for component_id, score in best.items()
        if all(m is not None and score >= m for m in marks.get(component_id, [None]))
    }


# Quality review (exams.review) ---------------------------------------------------------


def review_session_list(*, user, status: str | None = None):
    """Sessions a user may look at in the quality review, with plan and room selected.

    Quality supervisors see sessions in marking, review or approved, less those they
    graded (回避); coordinators see every session; everyone else none. `status`
    narrows the list; the review queue is `status="in_review"`."""
    from django.db.models import Exists, OuterRef

    from cases.roles import Role, has_role

    from .models import ExamSession, Mark, SessionStaff, SessionStatus, StaffRole

    qs = ExamSession.objects.select_related("plan", "room__venue").order_by(
        "date", "start_time", "code"
    )
    if status:
        qs = qs.filter(status=status)
    if has_role(user, Role.COORDINATOR):
        return qs
    if not has_role(user, Role.REVIEWER):
        return qs.none()
    graded = Exists(
        SessionStaff.objects.filter(
            session=OuterRef("pk"),
            user=user,
            role__in=[StaffRole.GRADER, StaffRole.CHIEF_GRADER],
        )
    ) | Exists(Mark.objects.filter(booking__session=OuterRef("pk"), grader=user))
    return qs.filter(
        status__in=[SessionStatus.MARKING, SessionStatus.IN_REVIEW, SessionStatus.APPROVED]
    ).exclude(graded)


def warning_list(*, user, session_id: int | None = None):
    """Early warnings of the sessions `user` may see in the review (as
    `review_session_list`), with their session selected."""
    from .models import QualityWarning

    sessions = review_session_list(user=user)
    qs = QualityWarning.objects.filter(session__in=sessions).select_related(
        "session", "reviewed_by", "answered_by"
    )
    if session_id is not None:
        qs = qs.filter(session_id=session_id)
    return qs.order_by("session_id", "created_at", "pk")


def session_score_distribution(*, session, width: int = 5) -> list[dict]:
    """Per exam component of `session`: a histogram of the final scores of its
    checked-in candidates in buckets of `width` points ([0, width), ..., the last one
    closed at the maximum score), with the pass mark each certificate of the plan sets
    on that component, the count and the mean. For the supervisor's chart."""
    from decimal import Decimal

    from cases.models import PassMark

    from .models import BookingStatus

    plan_components = {
        pc.component_id: pc for pc in PlanComponent.objects.filter(plan_id=session.plan_id)
    }
    marks: dict[int, list[dict]] = {}
    for pm in PassMark.objects.filter(
        certificate__plan_id=session.plan_id, pass_mark__isnull=False
    ).select_related("certificate"):
        marks.setdefault(pm.component_id, []).append(
            {
                "certificate": pm.certificate.kind,
                "label": pm.certificate.get_kind_display(),
                "mark": str(pm.pass_mark),
            }
        )
    sat = set(
        session.bookings.filter(status=BookingStatus.CHECKED_IN).values_list("case_id", "attempt")
    )
    scores: dict[int, list[Decimal]] = {}
    for case_id, attempt, component_id, score in ComponentScore.objects.filter(
        case_id__in={case_id for case_id, _ in sat}, status=ScoreStatus.FINAL, score__isnull=False
    ).values_list("case_id", "attempt", "component_id", "score"):
        if (case_id, attempt) in sat:
            scores.setdefault(component_id, []).append(score)
    result = []
    for component in session.components.order_by("pk"):
        pc = plan_components.get(component.pk)
        maximum = pc.max_score if pc else component.max_score
        values = scores.get(component.pk, [])
        edges = list(range(0, maximum, width))
        buckets = [{"from": low, "to": min(low + width, maximum), "count": 0} for low in edges]
        for value in values:
            index = min(int(value // width), len(buckets) - 1)
            buckets[index]["count"] += 1
        mean = (sum(values) / len(values)).quantize(Decimal("0.1")) if values else None
        result.append(
            {
                "component": component.code,
                "name": component.name,
                "max_score": maximum,
                "width": width,
                "count": len(values),
                "mean": str(mean) if mean is not None else None,
                "pass_marks": sorted(marks.get(component.pk, []), key=lambda m: m["certificate"]),
                "buckets": buckets,
            }
        )
    return result


# Sessions and bookings (exams.sessions, exams.scheduling) -------------------------------


def session_list(*, user):
    """Exam sessions `user` may read, with plan and room selected and components
    prefetched: coordinators every session; graders the sessions they are staff of;
    quality supervisors the sessions of their review (`review_session_list`)."""
    from django.db.models import Q

    from cases.roles import Role, has_role

    from .models import ExamSession, SessionStaff

    qs = (
        ExamSession.objects.select_related("plan", "room__venue")
        .prefetch_related("components")
        .order_by("date", "start_time", "code")
    )
    if has_role(user, Role.COORDINATOR):
        return qs
    scope = Q(pk__in=[])
    if has_role(user, Role.GRADER):
        scope |= Q(pk__in=SessionStaff.objects.filter(user=user).values("session_id"))
    if has_role(user, Role.REVIEWER):
        scope |= Q(pk__in=review_session_list(user=user).values("pk"))
    return qs.filter(scope)


def booking_list(*, user, session_id: int | None = None):
    """Bookings (the roster) for coordinators, with case, candidate and session
    selected and components prefetched; nobody else reads the roster here."""
    from cases.roles import Role, has_role

    from .models import Booking

    if not has_role(user, Role.COORDINATOR):
        return Booking.objects.none()
    qs = (
        Booking.objects.select_related("case__candidate", "session")
        .prefetch_related("components")
        .order_by("session_id", "seat_number", "pk")
    )
    if session_id is not None:
        qs = qs.filter(session_id=session_id)
    return qs


def marking_assignments(*, user) -> list[dict]:
    """The sessions and components `user` marks (grader or chief grader), one dict per
    (session, component): {"session", "code", "date", "status", "component",
    "component_name", "roles"}. A chief grader without a component is listed for every
    component of the session. Two queries."""
    from .models import SessionStaff, StaffRole

    rows: dict[tuple[int, str], dict] = {}
    staff = (
        SessionStaff.objects.filter(user=user, role__in=[StaffRole.GRADER, StaffRole.CHIEF_GRADER])
        .select_related("session", "component")
        .prefetch_related("session__components")
        .order_by("session__date", "session__start_time", "session__code")
    )
    for assignment in staff:
        session = assignment.session
        components = (
            [assignment.component]
            if assignment.component is not None
            else list(session.components.all())
        )
        for component in components:
            row = rows.setdefault(
                (session.pk, component.code),
                {
                    "session": session.pk,
                    "code": session.code,
                    "date": session.date,
                    "status": session.status,
                    "component": component.code,
                    "component_name": component.name,
                    "roles": [],
                },
            )
            if assignment.role not in row["roles"]:
                row["roles"].append(assignment.role)
    return list(rows.values())


def marking_sheet(*, user, session_id: int, component: str) -> list[dict] | None:
    """`user`'s marking sheet for one session and component, or None when they are not
    assigned to it (the API answers 404: a grader sees only their assignments).

    Double-blind: each row carries only the user's own mark, never the other slot's.
    One row per checked-in booking sitting the component, by seat: ticket_number,
    seat_number, slot (the user's own, else the one they would take next, else None),
    score (own, or None), and for a chief grader needs_arbitration. No names: marking
    is anonymous."""
    from cases.models import MarkingMode, PlanComponent

    from .models import Booking, BookingStatus, ExamSession, Mark, MarkSlot, StaffRole
    from .scoring import needs_arbitration, staff_roles

    session = ExamSession.objects.filter(pk=session_id).first()
    if session is None or not session.components.filter(code=component).exists():
        return None
    pc = PlanComponent.objects.select_related("component").get(
        plan_id=session.plan_id, component__code=component
    )
    roles = staff_roles(session, user, pc.component)
    if not roles:
        return None
    bookings = list(
        Booking.objects.filter(
            session=session, status=BookingStatus.CHECKED_IN, components=pc.component
        ).order_by("seat_number")
    )
    marks: dict[int, dict[str, Mark]] = {}
    for mark in Mark.objects.filter(booking__in=bookings, component=pc.component):
        marks.setdefault(mark.booking_id, {})[mark.slot] = mark
    rows = []
    for booking in bookings:
        given = marks.get(booking.pk, {})
        own = next((m for m in given.values() if m.grader_id == user.pk), None)
        slot = own.slot if own else None
        if slot is None and pc.marking_mode == MarkingMode.SINGLE and MarkSlot.SINGLE not in given:
            slot = MarkSlot.SINGLE
        elif slot is None and StaffRole.GRADER in roles:
            slot = next((s for s in (MarkSlot.FIRST, MarkSlot.SECOND) if s not in given), None)
        arbitrate = StaffRole.CHIEF_GRADER in roles and needs_arbitration(
            pc, {s: m.score for s, m in given.items()}
        )
        if slot is None and arbitrate and MarkSlot.ARBITRATION not in given:
            slot = MarkSlot.ARBITRATION
        row = {
            "booking": booking.pk,
            "ticket_number": booking.ticket_number,
            "seat_number": booking.seat_number,
            "slot": slot,
            "score": own.score if own else None,
        }
        if StaffRole.CHIEF_GRADER in roles:
            row["needs_arbitration"] = arbitrate
        rows.append(row)
    return rows


def case_results(case) -> dict:
    """The results of `case` for display: its component scores and certificate results
    over all attempts (ordered by attempt)."""
    from .models import CertificateResult, ComponentScore

    return {
        "components": list(
            ComponentScore.objects.filter(case=case)
            .select_related("component")
            .order_by("attempt", "component_id")
        ),
        "certificates": list(
            CertificateResult.objects.filter(case=case).order_by("attempt", "kind")
        ),
    }


def cases_awaiting_seat(plan: EvaluationPlan) -> QuerySet[Case]:
    """Eligible cases of `plan` with no seat held for their next sitting. A retake's
    earlier booking stays checked in, so only bookings of a later attempt count (one
    Exists over the same booking: a plain exclude across the relation would match the
    two conditions on different bookings)."""
    holding = Booking.objects.filter(
        case=OuterRef("pk"), status__in=HOLDING, attempt__gt=OuterRef("attempts")
    )
    return Case.objects.filter(plan=plan, status=CaseStatus.ELIGIBLE).exclude(Exists(holding))


def case_results_readable(*, user, case: Case) -> bool:
    """Whether `user` may read the case's component scores and certificate results:
    coordinators always; quality supervisors once a session of the case is in review
    or approved, and only where they did not grade it (while marking runs, a mean
    would reveal the other grader's blind mark); issuing officers once the case passed."""
    from cases.roles import Role, has_role

    from .models import SessionStatus

    if has_role(user, Role.COORDINATOR):
        return True
    if has_role(user, Role.REVIEWER):
        in_scope = review_session_list(user=user).filter(
            status__in=[SessionStatus.IN_REVIEW, SessionStatus.APPROVED]
        )
        return Booking.objects.filter(case=case, session__in=in_scope).exists()
    if has_role(user, Role.ISSUER_OFFICER):
        return case.status in {CaseStatus.PASSED, CaseStatus.COMPLETED}
    return False


def certificates_earned(case_ids) -> dict[int, set[str]]:
    """{case_id: {certificate kind earned}} in each case's latest attempt, from the
    CertificateResult rows that scoring wrote (issuance opens one certificate per kind)."""
    latest = dict(Case.objects.filter(pk__in=case_ids).values_list("pk", "attempts"))
    earned: dict[int, set[str]] = {case_id: set() for case_id in latest}
    rows = CertificateResult.objects.filter(case_id__in=latest, earned=True).values_list(
        "case_id", "attempt", "kind"
    )
    for case_id, attempt, kind in rows:
        if attempt == latest[case_id]:
            earned[case_id].add(kind)
    return earned
