"""Pages of the exam stage, per role: coordinators (plans, venues, sessions, roster,
allocation, tickets, check-in desk, misconduct, results), graders (my sessions, score
grid, import) and quality supervisors (review queue, warnings, distribution, approve or
return).

Each view does only: authentication, role check, a form, ONE service (or selector)
call, render or redirect. Service errors are shown where they belong: ValidationError
on the form, StateConflict / ConcurrentTransition as a message with HTTP 409, a wrong
role as 403.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django_fsm import ConcurrentTransition

from audit.exceptions import DomainError, StateConflict
from audit.masking import mask_ids_in
from cases import plans
from cases.models import Case, EvaluationPlan, PassMark, PlanComponent
from cases.roles import Role, has_role
from jobs import services as job_services

from . import attendance, charts, results, review, scheduling, scoring, selectors, sessions, tickets
from .forms import (
    PLAN_TRANSITIONS,
    SESSION_TRANSITIONS,
    BookingForm,
    CheckInForm,
    MisconductForm,
    ReasonForm,
    ReviewNotesForm,
    RoomForm,
    ScoreImportForm,
    SessionFilterForm,
    SessionForm,
    StaffForm,
    VenueForm,
    WarningAnswerForm,
    WarningReviewForm,
    add_service_errors,
    grid_entries,
)
from .models import (
    Booking,
    BookingStatus,
    CertificateResult,
    ComponentScore,
    ExamSession,
    Mark,
    QualityWarning,
    SessionStaff,
    SessionStatus,
    StaffRole,
    Venue,
    WarningStatus,
)

PAGE_SIZE = 25
PLAN_SERVICES = {
    "open": plans.plan_open,
    "close": plans.plan_close,
    "archive": plans.plan_archive,
}
SESSION_SERVICES = {
    "open": sessions.session_open,
    "freeze_roster": sessions.session_freeze_roster,
    "start": sessions.session_start,
    "close": sessions.session_close,
}
# Sessions whose marks and results the coordinator follows on the results page.
RESULT_STATES = (SessionStatus.MARKING, SessionStatus.IN_REVIEW, SessionStatus.APPROVED)
ROLE_DENIED = {
    Role.COORDINATOR: "此页面仅限考务人员使用",
    Role.GRADER: "此页面仅限考评员使用",
    Role.REVIEWER: "此页面仅限质量督导员使用",
}


def role_required(role: str):
    """Login, then `role` (admin holds every role); 403 otherwise."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, role):
                raise PermissionDenied(_(ROLE_DENIED[role]))
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


coordinator_required = role_required(Role.COORDINATOR)
grader_required = role_required(Role.GRADER)
reviewer_required = role_required(Role.REVIEWER)


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _conflict(request, exc) -> None:
    messages.error(request, getattr(exc, "message", None) or _("状态已变化，请刷新后重试"))


def _service_messages(request, exc: ValidationError) -> None:
    """A ValidationError with no form to hold it, as error messages."""
    for message_list in exc.message_dict.values() if hasattr(exc, "error_dict") else [exc.messages]:
        for message in message_list:
            messages.error(request, message)


def _available(obj, names) -> list[dict]:
    """The state buttons `obj` may take now, in the order of `names`."""
    available = {t.name for t in obj.get_available_status_transitions()}
    return [
        {"name": name, "label": label, "css": css}
        for name, (label, css) in names.items()
        if name in available
    ]


# Evaluation plans ----------------------------------------------------------------------


@coordinator_required
def plan_list(request):
    queryset = (
        EvaluationPlan.objects.select_related("qualification_type", "occupation")
        .annotate(
            session_count=Count("sessions", distinct=True),
            case_count=Count("cases", distinct=True),
        )
        .order_by("-exam_date", "name")
    )
    return render(request, "exams/plan_list.html", {"page": _page(request, queryset)})


def _plan_page(request, pk, *, status=200):
    plan = get_object_or_404(
        EvaluationPlan.objects.select_related("qualification_type", "occupation"), pk=pk
    )
    certificates = plan.certificates.prefetch_related(
        Prefetch("marks", queryset=PassMark.objects.select_related("component"))
    )
    plan_sessions = plan.sessions.select_related("room__venue").annotate(
        booked=Count("bookings", filter=ACTIVE_BOOKING_Q)
    )
    context = {
        "plan": plan,
        "components": plan.components.select_related("component"),
        "certificates": certificates,
        "sessions": plan_sessions,
        "transitions": _available(plan, PLAN_TRANSITIONS),
        "eligible_unbooked": _unbooked(plan).count(),
        "has_open_sessions": any(s.status == SessionStatus.OPEN for s in plan_sessions),
        "disabled_rules": plan.disabled_rules.order_by("row"),
    }
    return render(request, "exams/plan_detail.html", context, status=status)


# Bookings that still hold a seat (Booking.ACTIVE_BOOKING seen from the session).
ACTIVE_BOOKING_Q = ~Q(bookings__status=BookingStatus.CANCELLED)


def _unbooked(plan: EvaluationPlan):
    """Eligible cases of `plan` holding no seat: what allocation would try to seat."""
    return selectors.cases_awaiting_seat(plan).select_related("candidate").order_by("pk")


@coordinator_required
def plan_detail(request, pk):
    return _plan_page(request, pk)


@require_POST
@coordinator_required
def plan_transition(request, pk, name):
    plan = get_object_or_404(EvaluationPlan, pk=pk)
    return _transition_page(
        request,
        name,
        PLAN_SERVICES,
        PLAN_TRANSITIONS,
        {"plan": plan},
        page=lambda status: _plan_page(request, pk, status=status),
        done=redirect("exams:plan-detail", pk=pk),
    )


def _transition_page(request, name, services, labels, target: dict, *, page, done):
    """Run the transition service `services[name]` on `target` (its keyword argument);
    show the page again with the service's refusal (400 or 409), else redirect to
    `done` with a confirmation."""
    if name not in services:
        raise Http404
    try:
        services[name](actor=request.user, **target)
    except ValidationError as exc:
        _service_messages(request, exc)
        return page(400)
    except (StateConflict, ConcurrentTransition) as exc:
        _conflict(request, exc)
        return page(409)
    messages.success(request, _("已执行：%(action)s") % {"action": labels[name][0]})
    return done


@require_POST
@coordinator_required
def plan_allocate(request, pk):
    """Seat every eligible unbooked case of the plan in its open sessions, as a
    background job (jobs app): its page shows the progress, then who was seated where
    and who could not be, with the reason. A plan with no open session to allocate into
    stays on the plan page with the reason (400)."""
    plan = get_object_or_404(EvaluationPlan, pk=pk)
    return _allocate(
        request, {"plan": plan.pk}, lambda status: _plan_page(request, pk, status=status)
    )


# Venues and rooms ------------------------------------------------------------------------


def _venue_page(request, *, status=200, venue_form=None, room_form=None, room_venue=None):
    venues = Venue.objects.prefetch_related("rooms")
    for venue in venues:
        if room_form is not None and room_venue == venue.pk:
            venue.room_form = room_form
        else:
            venue.room_form = RoomForm(auto_id=f"id_room{venue.pk}_%s")
    context = {"venues": venues, "venue_form": venue_form or VenueForm()}
    return render(request, "exams/venue_list.html", context, status=status)


@coordinator_required
def venue_list(request):
    if request.method != "POST":
        return _venue_page(request)
    form = VenueForm(request.POST)
    if form.is_valid():
        try:
            sessions.venue_create(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("考点已添加"))
            return redirect("exams:venue-list")
    return _venue_page(request, status=400, venue_form=form)


@require_POST
@coordinator_required
def room_create(request, pk):
    venue = get_object_or_404(Venue, pk=pk)
    form = RoomForm(request.POST, auto_id=f"id_room{venue.pk}_%s")
    if form.is_valid():
        try:
            sessions.room_create(actor=request.user, venue=venue, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("考场已添加"))
            return redirect("exams:venue-list")
    return _venue_page(request, status=400, room_form=form, room_venue=venue.pk)


# Sessions ------------------------------------------------------------------------------


@coordinator_required
def session_list(request):
    form = SessionFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    queryset = (
        ExamSession.objects.select_related("plan", "room__venue")
        .prefetch_related("components")
        .annotate(booked=Count("bookings", filter=ACTIVE_BOOKING_Q))
        .order_by("-date", "start_time", "code")
    )
    if data.get("plan"):
        queryset = queryset.filter(plan=data["plan"])
    if data.get("status"):
        queryset = queryset.filter(status=data["status"])
    return render(
        request, "exams/session_list.html", {"form": form, "page": _page(request, queryset)}
    )


@coordinator_required
def session_create(request):
    initial = {}
    if request.GET.get("plan", "").isdigit():
        initial["plan"] = request.GET["plan"]
    form = SessionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            session = sessions.session_create(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("场次已创建"))
            return redirect("exams:session-detail", pk=session.pk)
    status = 400 if form.errors else 200
    return render(request, "exams/session_form.html", {"form": form}, status=status)


def _session_page(request, pk, *, status=200, staff_form=None, booking_form=None, cancel=None):
    """The session page; bound forms that failed are put back in place (`cancel` is a
    (booking pk, bound form) pair)."""
    session = get_object_or_404(
        ExamSession.objects.select_related("plan__qualification_type", "room__venue"), pk=pk
    )
    roster = list(
        Booking.objects.filter(session=session)
        .select_related("case__candidate")
        .prefetch_related("components")
        .order_by("seat_number", "pk")
    )
    for booking in roster:
        if cancel is not None and cancel[0] == booking.pk:
            booking.cancel_form = cancel[1]
        else:
            booking.cancel_form = ReasonForm(auto_id=f"id_cancel{booking.pk}_%s")
    counts = dict.fromkeys(BookingStatus.values, 0)
    for booking in roster:
        counts[booking.status] += 1
    is_open = session.status == SessionStatus.OPEN
    context = {
        "session": session,
        "components": session.components.order_by("pk"),
        "roster": roster,
        "counts": counts,
        "staff": SessionStaff.objects.filter(session=session)
        .select_related("user", "component")
        .order_by("role", "component_id", "user__username"),
        "transitions": _available(session, SESSION_TRANSITIONS),
        "staff_form": staff_form or StaffForm(session=session, auto_id="id_staff_%s"),
        "booking_form": (
            (booking_form or BookingForm(cases=_unbooked(session.plan), auto_id="id_booking_%s"))
            if is_open
            else None
        ),
        "can_book": is_open,
        "can_staff": session.status in sessions.STAFF_STATES,
        "can_check_in": session.status in attendance.CHECK_IN_STATES,
        "can_record_misconduct": session.status in attendance.MISCONDUCT_STATES,
        "ticket_pdfs": True,
        "results_url": (
            reverse("exams:session-results", args=[session.pk])
            if session.status in RESULT_STATES
            else ""
        ),
    }
    return render(request, "exams/session_detail.html", context, status=status)


@coordinator_required
def session_detail(request, pk):
    return _session_page(request, pk)


@require_POST
@coordinator_required
def session_transition(request, pk, name):
    session = get_object_or_404(ExamSession, pk=pk)
    return _transition_page(
        request,
        name,
        SESSION_SERVICES,
        SESSION_TRANSITIONS,
        {"session": session},
        page=lambda status: _session_page(request, pk, status=status),
        done=redirect("exams:session-detail", pk=pk),
    )


@require_POST
@coordinator_required
def session_staff(request, pk):
    session = get_object_or_404(ExamSession, pk=pk)
    form = StaffForm(request.POST, session=session, auto_id="id_staff_%s")
    if form.is_valid():
        try:
            sessions.session_assign_staff(
                actor=request.user,
                session=session,
                user=form.cleaned_data["user"],
                role=form.cleaned_data["role"],
                component=form.cleaned_data["component"] or None,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except StateConflict as exc:
            _conflict(request, exc)
            return _session_page(request, pk, status=409)
        else:
            messages.success(request, _("场次人员已安排"))
            return redirect("exams:session-detail", pk=pk)
    return _session_page(request, pk, status=400, staff_form=form)


@require_POST
@coordinator_required
def session_book(request, pk):
    session = get_object_or_404(ExamSession.objects.select_related("plan"), pk=pk)
    form = BookingForm(
        request.POST,
        cases=Case.objects.filter(plan=session.plan).select_related("candidate"),
        auto_id="id_booking_%s",
    )
    if form.is_valid():
        try:
            booking = scheduling.booking_create(
                actor=request.user, session=session, case=form.cleaned_data["case"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except (StateConflict, ConcurrentTransition) as exc:
            _conflict(request, exc)
            return _session_page(request, pk, status=409)
        else:
            messages.success(
                request,
                _("已安排座位 %(seat)s，准考证号 %(ticket)s")
                % {"seat": booking.seat_number, "ticket": booking.ticket_number},
            )
            return redirect("exams:session-detail", pk=pk)
    return _session_page(request, pk, status=400, booking_form=form)


@require_POST
@coordinator_required
def session_allocate(request, pk):
    """Allocation into this session only, as a background job (see plan_allocate)."""
    session = get_object_or_404(ExamSession.objects.select_related("plan"), pk=pk)
    return _allocate(
        request,
        {"plan": session.plan_id, "sessions": [session.pk]},
        lambda status: _session_page(request, pk, status=status),
    )


def _allocate(request, data: dict, page):
    try:
        job = job_services.job_create(actor=request.user, kind="exams.allocate", data=data)
    except ValidationError as exc:
        _service_messages(request, exc)
        return page(400)
    return redirect(job)


@require_POST
@coordinator_required
def booking_cancel(request, pk):
    booking = get_object_or_404(Booking, pk=pk)
    form = ReasonForm(request.POST, auto_id=f"id_cancel{booking.pk}_%s")
    if form.is_valid():
        try:
            scheduling.booking_cancel(
                actor=request.user, booking=booking, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except (StateConflict, ConcurrentTransition) as exc:
            _conflict(request, exc)
            return _session_page(request, booking.session_id, status=409)
        else:
            messages.success(
                request, _("考位已取消：%(ticket)s") % {"ticket": booking.ticket_number}
            )
            return redirect("exams:session-detail", pk=booking.session_id)
    return _session_page(request, booking.session_id, status=400, cancel=(booking.pk, form))


# Admission tickets (exams.tickets) ---------------------------------------------------------


def _pdf(content: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


@coordinator_required
def booking_ticket(request, pk):
    booking = get_object_or_404(Booking.objects.exclude(status=BookingStatus.CANCELLED), pk=pk)
    return _pdf(tickets.ticket_pdf(booking), f"准考证-{booking.ticket_number}.pdf")


@coordinator_required
def session_tickets(request, pk):
    session = get_object_or_404(ExamSession, pk=pk)
    try:
        content = tickets.session_tickets_pdf(session)
    except DomainError as exc:
        messages.error(request, str(exc))
        return _session_page(request, pk, status=400)
    return _pdf(content, f"准考证-场次{session.code}.pdf")


# Exam day ------------------------------------------------------------------------------


@coordinator_required
def check_in_desk(request, pk):
    """One autofocused field: a scanner types the ticket number (QR) or ID number and
    Enter. The result is shown big and the field is empty again for the next scan."""
    session = get_object_or_404(ExamSession.objects.select_related("plan", "room__venue"), pk=pk)
    result, error, status = None, None, 200
    if request.method == "POST":
        form = CheckInForm(request.POST)
        if form.is_valid():
            try:
                result = attendance.check_in(
                    actor=request.user, session=session, ticket_or_id=form.cleaned_data["code"]
                )
            except ValidationError as exc:
                error, status = " ".join(exc.messages), 400
            except (StateConflict, ConcurrentTransition) as exc:
                error, status = getattr(exc, "message", None) or str(exc), 409
            session.refresh_from_db()
    bookings = Booking.objects.filter(session=session).exclude(status=BookingStatus.CANCELLED)
    context = {
        "session": session,
        "form": CheckInForm(),  # always empty: ready for the next scan
        "result": result,
        "error": error,
        "scanned": mask_ids_in(request.POST.get("code", "").strip())
        if request.method == "POST"
        else "",
        "open": session.status in attendance.CHECK_IN_STATES,
        "checked_in": bookings.filter(status=BookingStatus.CHECKED_IN).count(),
        "total": bookings.count(),
        "recent": bookings.filter(status=BookingStatus.CHECKED_IN)
        .select_related("case__candidate")
        .order_by("-checked_in_at")[:10],
    }
    return render(request, "exams/check_in.html", context, status=status)


@coordinator_required
def misconduct_create(request, pk):
    booking = get_object_or_404(Booking.objects.select_related("session", "case__candidate"), pk=pk)
    form = MisconductForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            attendance.misconduct_record(
                actor=request.user,
                booking=booking,
                description=form.cleaned_data["description"],
                evidence=form.cleaned_data["evidence"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
            status = 400
        except (StateConflict, ConcurrentTransition) as exc:
            _conflict(request, exc)
            status = 409
        else:
            messages.success(
                request,
                _("已记录违纪，准考证号 %(ticket)s 的成绩无效") % {"ticket": booking.ticket_number},
            )
            return redirect("exams:session-detail", pk=booking.session_id)
    if form.errors:
        status = 400
    return render(
        request, "exams/misconduct_form.html", {"form": form, "booking": booking}, status=status
    )


# Results (exams.results) -------------------------------------------------------------------


def _result_rows(bookings) -> list[dict]:
    """Per booking: its final component scores and each certificate earned or not with
    the reasons, for the attempt the booking was."""
    bookings = list(bookings)
    case_ids = [b.case_id for b in bookings]
    scores, certificates = {}, {}
    for row in ComponentScore.objects.filter(case_id__in=case_ids).select_related("component"):
        scores.setdefault((row.case_id, row.attempt), []).append(row)
    for row in CertificateResult.objects.filter(case_id__in=case_ids):
        certificates.setdefault((row.case_id, row.attempt), []).append(row)
    return [
        {
            "booking": b,
            "scores": scores.get((b.case_id, b.attempt), []),
            "certificates": certificates.get((b.case_id, b.attempt), []),
        }
        for b in bookings
    ]


def _results_page(request, pk, *, status=200, summary=None):
    session = get_object_or_404(ExamSession.objects.select_related("plan", "room__venue"), pk=pk)
    bookings = (
        Booking.objects.filter(session=session)
        .exclude(status=BookingStatus.CANCELLED)
        .select_related("case__candidate")
        .order_by("seat_number")
    )
    context = {
        "session": session,
        "rows": _result_rows(bookings),
        "summary": summary,
        "can_finalise": session.status == SessionStatus.MARKING,
        "can_submit": session.status == SessionStatus.MARKING,
        "outstanding": (
            results.session_marking_outstanding(session)
            if session.status == SessionStatus.MARKING
            else []
        ),
    }
    return render(request, "exams/results.html", context, status=status)


@coordinator_required
def session_results(request, pk):
    return _results_page(request, pk)


@require_POST
@coordinator_required
def session_finalise(request, pk):
    session = get_object_or_404(ExamSession, pk=pk)
    try:
        summary = results.session_finalise(actor=request.user, session=session)
    except (StateConflict, ConcurrentTransition) as exc:
        _conflict(request, exc)
        return _results_page(request, pk, status=409)
    messages.success(
        request,
        _("已确定 %(n)s 名考生的成绩，%(m)s 项待评分")
        % {"n": len(summary.finalised), "m": len(summary.pending)},
    )
    return _results_page(request, pk, summary=summary)


@require_POST
@coordinator_required
def session_submit_for_review(request, pk):
    session = get_object_or_404(ExamSession, pk=pk)
    try:
        review.session_submit_for_review(actor=request.user, session=session)
    except (StateConflict, ConcurrentTransition) as exc:
        _conflict(request, exc)
        return _results_page(request, pk, status=409)
    except DomainError as exc:
        messages.error(request, exc.message)
        return _results_page(request, pk, status=400)
    messages.success(request, _("已提交质量审核，预警已生成"))
    return redirect("exams:quality-review", pk=pk)


@coordinator_required
def case_results(request, pk):
    case = get_object_or_404(Case.objects.select_related("candidate", "plan"), pk=pk)
    bookings = (
        Booking.objects.filter(case=case)
        .exclude(status=BookingStatus.CANCELLED)
        .select_related("session", "case__candidate")
        .order_by("attempt", "pk")
    )
    return render(
        request, "exams/case_results.html", {"case": case, "rows": _result_rows(bookings)}
    )


# Grading (exams.scoring) -------------------------------------------------------------------


def _assignments(user, session=None):
    """The grader's assignments (SessionStaff as grader or chief grader)."""
    queryset = SessionStaff.objects.filter(
        user=user, role__in=[StaffRole.GRADER, StaffRole.CHIEF_GRADER]
    ).select_related("session__plan", "session__room__venue", "component")
    if session is not None:
        queryset = queryset.filter(session=session)
    return queryset


@grader_required
def grading_sessions(request):
    """ "My sessions": only those the grader is assigned to, with a grid link per
    component (a chief grader without a component covers all of them)."""
    by_session: dict[int, dict] = {}
    # A chief grader without a component covers every component of the session: the
    # components of all sessions come in one query (sorted here, so the prefetch holds).
    assignments = _assignments(request.user).prefetch_related("session__components")
    for staff in assignments.order_by("-session__date", "session__start_time", "session__code"):
        entry = by_session.setdefault(
            staff.session_id, {"session": staff.session, "components": {}, "roles": set()}
        )
        entry["roles"].add(staff.get_role_display())
        components = (
            [staff.component]
            if staff.component is not None
            else sorted(staff.session.components.all(), key=lambda c: c.pk)
        )
        for component in components:
            entry["components"][component.code] = component
    rows = [
        {**entry, "components": list(entry["components"].values())} for entry in by_session.values()
    ]
    return render(request, "exams/grading_sessions.html", {"rows": rows})


def _grid_rows(session, component, user):
    """Checked-in bookings sitting `component` (exempt components are never sat), by
    seat, each with the grader's OWN marks only (double-blind)."""
    bookings = list(
        Booking.objects.filter(
            session=session, status=BookingStatus.CHECKED_IN, components=component
        ).order_by("seat_number")
    )
    own = {}
    for mark in Mark.objects.filter(
        booking__in=bookings, component=component, grader=user
    ).order_by("slot"):
        own.setdefault(mark.booking_id, []).append(mark)
    for booking in bookings:
        booking.own_marks = own.get(booking.pk, [])
    return bookings


@grader_required
def score_grid(request, pk, component):
    session = get_object_or_404(ExamSession.objects.select_related("plan", "room__venue"), pk=pk)
    plan_component = get_object_or_404(
        PlanComponent.objects.select_related("component"),
        plan=session.plan,
        component__code=component,
        component__in=session.components.all(),
    )
    roles = scoring.staff_roles(session, request.user, plan_component.component)
    if not roles:
        raise PermissionDenied(_("您不是本场次该科目的考评员"))
    rows = _grid_rows(session, plan_component.component, request.user)
    typed, row_errors, batch_error, status = {}, {}, None, 200
    if request.method == "POST":
        entries, typed = grid_entries(request.POST, rows)
        try:
            counts = scoring.marks_enter(
                actor=request.user,
                session=session,
                component=plan_component.component,
                entries=entries,
            )
        except scoring.MarkBatchError as exc:
            batch_error, status = exc.message, 400
            for error in exc.errors:
                row_errors.setdefault(error["ticket_number"], []).append(error["message"])
        except ValidationError as exc:
            batch_error, status = " ".join(exc.messages), 400
        except (StateConflict, ConcurrentTransition) as exc:
            batch_error, status = getattr(exc, "message", None) or str(exc), 409
        else:
            messages.success(
                request,
                _("已保存：新录入 %(entered)s，修改 %(changed)s，未变 %(unchanged)s") % counts,
            )
            return redirect("exams:grading-grid", pk=pk, component=component)
    for row in rows:
        row.errors = row_errors.get(row.ticket_number.upper(), [])
        row.typed = typed.get(row.ticket_number)
    context = {
        "session": session,
        "plan_component": plan_component,
        "rows": rows,
        "roles": [StaffRole(r).label for r in sorted(roles)],
        "editable": session.status == SessionStatus.MARKING,
        "batch_error": batch_error,
        "reason": request.POST.get("reason", "") if request.method == "POST" else "",
    }
    return render(request, "exams/score_grid.html", context, status=status)


@login_required
def score_import(request, pk):
    """Upload of an XLSX/CSV score file: graders for their components; coordinators for
    machine-marked theory (the service decides per row)."""
    session = get_object_or_404(ExamSession.objects.select_related("plan", "room__venue"), pk=pk)
    is_coordinator = has_role(request.user, Role.COORDINATOR)
    if not is_coordinator and not (
        has_role(request.user, Role.GRADER) and _assignments(request.user, session).exists()
    ):
        raise PermissionDenied(_("您不是本场次的考评员"))
    form = ScoreImportForm(request.POST or None, request.FILES or None)
    report, status = None, 200
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            counts = scoring.scores_import(
                actor=request.user,
                session=session,
                file=upload,
                name=upload.name,
                reason=form.cleaned_data["reason"],
            )
        except scoring.ScoreImportError as exc:
            report, status = exc.errors, 400
            form.add_error(None, exc.message)
        except ValidationError as exc:
            add_service_errors(form, exc)
        except (StateConflict, ConcurrentTransition) as exc:
            form.add_error(None, getattr(exc, "message", None) or str(exc))
            status = 409
        else:
            messages.success(
                request,
                _("已导入 %(rows)s 行：新录入 %(entered)s，修改 %(changed)s，未变 %(unchanged)s")
                % counts,
            )
            return redirect("exams:grading-import", pk=pk)
    if form.errors and status == 200:
        status = 400
    context = {"session": session, "form": form, "report": report}
    return render(request, "exams/score_import.html", context, status=status)


# Quality review (exams.review) ------------------------------------------------------------


@reviewer_required
def quality_queue(request):
    queue = selectors.review_session_list(user=request.user, status=SessionStatus.IN_REVIEW)
    queue = queue.annotate(
        open_warnings=Count("warnings", filter=~Q(warnings__status=WarningStatus.CLOSED))
    )
    recent = selectors.review_session_list(user=request.user, status=SessionStatus.APPROVED)
    return render(
        request,
        "exams/quality_queue.html",
        {"queue": queue, "recent": recent.order_by("-date", "-start_time")[:10]},
    )


def _review_page(request, pk, *, status=200, forms=None):
    """The review of one session: warnings with their actions, the distribution charts,
    approve / return. Supervisors reach it through the review scope (never a session
    they graded); coordinators to answer confirmed warnings."""
    if not has_role(request.user, Role.REVIEWER, Role.COORDINATOR):
        raise PermissionDenied(_(ROLE_DENIED[Role.REVIEWER]))
    session = get_object_or_404(selectors.review_session_list(user=request.user), pk=pk)
    forms = forms or {}
    is_reviewer = has_role(request.user, Role.REVIEWER)
    graded = review.session_graded_by(session, request.user)
    supervise = is_reviewer and not graded and session.status == SessionStatus.IN_REVIEW
    answer = has_role(request.user, Role.COORDINATOR)
    warnings = list(selectors.warning_list(user=request.user, session_id=session.pk))
    for warning in warnings:
        bound = forms.get(warning.pk)
        warning.review_form = bound or WarningReviewForm(auto_id=f"id_w{warning.pk}_%s")
        warning.answer_form = bound or WarningAnswerForm(auto_id=f"id_w{warning.pk}_%s")
        warning.can_review = supervise and warning.status == WarningStatus.SENT
        warning.can_close = supervise and warning.status in (
            WarningStatus.ANSWERED,
            WarningStatus.DISMISSED,
        )
        warning.can_answer = answer and warning.status == WarningStatus.CONFIRMED
    distribution = selectors.session_score_distribution(session=session)
    for component in distribution:
        component["svg"] = charts.histogram_svg(component)
    open_count = sum(1 for w in warnings if w.status != WarningStatus.CLOSED)
    context = {
        "session": session,
        "warnings": warnings,
        "distribution": distribution,
        "supervise": supervise,
        "graded": graded and is_reviewer,
        "open_count": open_count,
        "approve_form": forms.get("approve") or ReviewNotesForm(auto_id="id_approve_%s"),
        "return_form": forms.get("return") or ReviewNotesForm(auto_id="id_return_%s"),
    }
    return render(request, "exams/quality_review.html", context, status=status)


@login_required
def quality_review(request, pk):
    return _review_page(request, pk)


def _review_action(request, pk, call, *, form_key=None, form=None):
    """Run one review service; errors go back on the review page (form or message)."""
    try:
        call()
    except ValidationError as exc:
        if form is None:
            _service_messages(request, exc)
            return _review_page(request, pk, status=400)
        add_service_errors(form, exc)
        return _review_page(request, pk, status=400, forms={form_key: form})
    except (StateConflict, ConcurrentTransition) as exc:
        _conflict(request, exc)
        return _review_page(request, pk, status=409)
    return None


# The supervisor's verdict on a session: form key -> (service, message when done).
QUALITY_DECISIONS = {
    "approve": (review.session_approve, gettext_lazy("场次 %(code)s 已审核通过，成绩已公布")),
    "return": (review.session_return_to_marking, gettext_lazy("场次 %(code)s 已退回评分")),
}


@require_POST
@reviewer_required
def quality_decide(request, pk, name):
    """Approve the session (results published) or return it to marking, with notes."""
    service, done = QUALITY_DECISIONS[name]
    session = get_object_or_404(ExamSession, pk=pk)
    form = ReviewNotesForm(request.POST, auto_id=f"id_{name}_%s")
    form.is_valid()
    failed = _review_action(
        request,
        pk,
        lambda: service(
            actor=request.user, session=session, notes=form.cleaned_data.get("notes", "")
        ),
        form_key=name,
        form=form,
    )
    if failed:
        return failed
    messages.success(request, done % {"code": session.code})
    return redirect("exams:quality-review", pk=pk)


WARNING_ACTIONS = ("confirm", "dismiss", "answer", "close")


@require_POST
@login_required
def warning_action(request, pk, name):
    if name not in WARNING_ACTIONS:
        raise Http404
    warning = get_object_or_404(QualityWarning.objects.select_related("session"), pk=pk)
    session_pk = warning.session_id
    if name == "answer":
        form = WarningAnswerForm(request.POST, auto_id=f"id_w{pk}_%s")
        form.is_valid()

        def call():
            review.warning_answer(
                actor=request.user, warning=warning, answer=form.cleaned_data.get("answer", "")
            )
    elif name == "close":
        form = None

        def call():
            review.warning_close(actor=request.user, warning=warning)
    else:
        form = WarningReviewForm(request.POST, auto_id=f"id_w{pk}_%s")
        form.is_valid()

        def call():
            review.warning_review(
                actor=request.user,
                warning=warning,
                confirmed=name == "confirm",
                note=form.cleaned_data.get("note", ""),
            )

    failed = _review_action(request, session_pk, call, form_key=pk, form=form)
    if failed:
        return failed
    messages.success(request, _("预警已处理：%(rule)s") % {"rule": warning.get_rule_display()})
    return redirect(reverse("exams:quality-review", args=[session_pk]) + f"#warning-{pk}")
