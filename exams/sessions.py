"""Venues, rooms and exam sessions: creation, staff, and the session's way through exam
day (planned -> open -> roster_frozen -> in_progress -> marking). Review
(submit_for_review, return, approve) lives in exams.review.

Every transition is one service: it locks the session row, checks the coordinator role
and the state (StateConflict naming the current and target state, HTTP 409), moves,
saves and audits in the same transaction.
"""

import re
from datetime import date, time

from django.core.exceptions import ValidationError
from django.db import transaction
from django_fsm import can_proceed

from audit.exceptions import StateConflict
from audit.services import audit_record, snapshot
from cases import services as case_services
from cases.models import CaseStatus, EvaluationPlan, PlanStatus
from cases.roles import Role, has_role, require_role
from catalog.models import Component

from .models import (
    Booking,
    BookingStatus,
    ExamSession,
    Room,
    SessionStaff,
    SessionStatus,
    StaffRole,
    Venue,
)

SESSION_FIELDS = ["plan", "room", "code", "date", "start_time", "end_time", "capacity"]
CODE_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,16}$")
# Staff may change until marks lock for review (exams.review).
STAFF_STATES = {
    SessionStatus.PLANNED,
    SessionStatus.OPEN,
    SessionStatus.ROSTER_FROZEN,
    SessionStatus.IN_PROGRESS,
    SessionStatus.MARKING,
}


# Venues and rooms ----------------------------------------------------------------------


@transaction.atomic(durable=True)
def venue_create(*, actor, name: str, address: str = "") -> Venue:
    """A venue (考点). Coordinators only; the name is unique."""
    require_role(actor, Role.COORDINATOR)
    venue = Venue(name=(name or "").strip(), address=(address or "").strip())
    venue.full_clean()
    venue.save()
    audit_record(
        actor=actor,
        instance=venue,
        action="venue.create",
        changes={
            k: {"before": None, "after": v} for k, v in snapshot(venue, ["name", "address"]).items()
        },
    )
    return venue


@transaction.atomic(durable=True)
def room_create(*, actor, venue: Venue, name: str, capacity: int) -> Room:
    """A room (考场) of `venue` with its number of seats (> 0); names unique per venue."""
    require_role(actor, Role.COORDINATOR)
    room = Room(venue=venue, name=(name or "").strip(), capacity=capacity)
    if capacity is not None and capacity <= 0:
        raise ValidationError({"capacity": ["座位数须大于 0"]})
    room.full_clean()
    room.save()
    audit_record(
        actor=actor,
        instance=room,
        action="room.create",
        changes={
            k: {"before": None, "after": v}
            for k, v in snapshot(room, ["venue", "name", "capacity"]).items()
        },
    )
    return room


# Sessions ------------------------------------------------------------------------------


def _session_code(day: date) -> str:
    """A readable unique code: the date and a sequence of that day, e.g. 26091501."""
    prefix = f"{day:%y%m%d}"
    taken = set(ExamSession.objects.filter(code__startswith=prefix).values_list("code", flat=True))
    n = 1
    while f"{prefix}{n:02d}" in taken:
        n += 1
    return f"{prefix}{n:02d}"


def _overlapping(qs, day: date, start: time, end: time):
    """Sessions of `qs` on `day` whose time overlaps [start, end)."""
    return qs.filter(date=day, start_time__lt=end, end_time__gt=start)


@transaction.atomic(durable=True)
def session_create(
    *,
    actor,
    plan: EvaluationPlan,
    room: Room,
    date: date,
    start_time: time,
    end_time: time,
    capacity: int,
    components: list[str],
    code: str = "",
) -> ExamSession:
    """A planned session of `plan` in `room`. `components` are component codes: each
    must be a component of the plan of kind exam (training is recorded, never sat).
    Capacity is at most the room's seats; the room must be free at that time; the plan
    must not be archived. `code` defaults to the date and a sequence (26091501).
    Refuses with every problem listed, writing nothing. Audited as `session.create`."""
    require_role(actor, Role.COORDINATOR)
    errors: dict[str, list[str]] = {}
    if plan.status == PlanStatus.ARCHIVED:
        errors.setdefault("plan", []).append("评价计划已归档，不能再安排场次")
    if start_time and end_time and end_time <= start_time:
        errors.setdefault("end_time", []).append("结束时间须晚于开始时间")
    if capacity is None or capacity <= 0:
        errors.setdefault("capacity", []).append("容量须大于 0")
    elif capacity > room.capacity:
        errors.setdefault("capacity", []).append(
            f"容量 {capacity} 超过考场「{room}」的座位数 {room.capacity}"
        )
    codes = list(dict.fromkeys(components or []))
    if not codes:
        errors.setdefault("components", []).append("请至少选择一个考试科目")
    plan_components = {
        pc.component.code: pc.component for pc in plan.components.select_related("component")
    }
    chosen: list[Component] = []
    for item in codes:
        component = plan_components.get(item)
        if component is None:
            errors.setdefault("components", []).append(f"科目「{item}」不是本评价计划的科目")
        elif component.kind != Component.Kind.EXAM:
            errors.setdefault("components", []).append(
                f"科目「{component.name}」为完成记录，不在考试场次中考核"
            )
        else:
            chosen.append(component)
    code = (code or "").strip().upper()
    if code:
        if not CODE_PATTERN.match(code):
            errors.setdefault("code", []).append("场次编号只能包含字母、数字和连字符，最长 16 位")
        elif ExamSession.objects.filter(code=code).exists():
            errors.setdefault("code", []).append(f"场次编号 {code} 已存在")
    if (
        not errors.get("end_time")
        and _overlapping(ExamSession.objects.filter(room=room), date, start_time, end_time).exists()
    ):
        errors.setdefault("room", []).append(f"考场「{room}」在该时段已有场次")
    if errors:
        raise ValidationError(errors)

    session = ExamSession(
        plan=plan,
        room=room,
        code=code or _session_code(date),
        date=date,
        start_time=start_time,
        end_time=end_time,
        capacity=capacity,
    )
    session.full_clean(exclude=["status"])
    session.save()
    session.components.set(chosen)
    # audit's JSON encoder knows dates, not times: times go in as "HH:MM".
    values = {**snapshot(session, SESSION_FIELDS), "start_time": f"{start_time:%H:%M}"}
    values["end_time"] = f"{end_time:%H:%M}"
    changes = {k: {"before": None, "after": v} for k, v in values.items()}
    changes["components"] = {"before": None, "after": [c.code for c in chosen]}
    audit_record(
        actor=actor,
        instance=session,
        action="session.create",
        to_state=session.status,
        changes=changes,
    )
    return session


def _locked_session(session: ExamSession, actor, name: str) -> ExamSession:
    """Re-read the session under a row lock and check the actor may take `name`."""
    require_role(actor, Role.COORDINATOR)
    locked = (
        ExamSession.objects.select_for_update()
        .select_related("plan", "room__venue")
        .get(pk=session.pk)
    )
    if not can_proceed(getattr(locked, name), check_conditions=False):
        target = next(
            (t.target for t in locked.get_all_status_transitions() if t.name == name), None
        )
        target_label = SessionStatus(target).label if target else name
        raise StateConflict(
            f"场次当前状态为「{locked.get_status_display()}」，不能变为「{target_label}」",
            current_state=locked.status,
            target_state=target,
        )
    return locked


def _move(session: ExamSession, actor, name: str, changes: dict | None = None) -> ExamSession:
    from_state = session.status
    getattr(session, name)()
    session.save()
    audit_record(
        actor=actor,
        instance=session,
        action=f"session.{name}",
        from_state=from_state,
        to_state=session.status,
        changes=changes or {},
    )
    return session


@transaction.atomic(durable=True)
def session_open(*, actor, session: ExamSession) -> ExamSession:
    """planned -> open: eligible cases may be booked. Locks the session row."""
    return _move(_locked_session(session, actor, "open"), actor, "open")


@transaction.atomic(durable=True)
def session_freeze_roster(*, actor, session: ExamSession) -> ExamSession:
    """open -> roster_frozen: no more bookings or cancellations; tickets are final and
    the check-in desk may open (candidates enter before the start). Locks the session."""
    return _move(_locked_session(session, actor, "freeze_roster"), actor, "freeze_roster")


@transaction.atomic(durable=True)
def session_start(*, actor, session: ExamSession) -> ExamSession:
    """roster_frozen -> in_progress: the exam has begun (check-ins from now on are late
    for the quality review). Locks the session row."""
    return _move(_locked_session(session, actor, "start"), actor, "start")


@transaction.atomic(durable=True)
def session_close(*, actor, session: ExamSession) -> ExamSession:
    """in_progress -> marking. Every booking still `booked` (never checked in) becomes
    absent and its case moves scheduled -> absent (cases.services.case_mark_absent),
    all in this one transaction: either the whole session closes or nothing changes.
    Locks the session, then its bookings' cases in primary-key order."""
    session = _locked_session(session, actor, "close")
    absent = list(
        Booking.objects.select_for_update()
        .filter(session=session, status=BookingStatus.BOOKED)
        .select_related("case")
        .order_by("case_id")
    )
    # A case withdrawn while scheduled (DESIGN.md allows it) left its booking behind:
    # that seat is released, not counted absent.
    withdrawn = [b for b in absent if b.case.status == CaseStatus.WITHDRAWN]
    absent = [b for b in absent if b.case.status != CaseStatus.WITHDRAWN]
    for booking in absent:
        case_services.case_mark_absent(actor=actor, case=booking.case)
    Booking.objects.filter(pk__in=[b.pk for b in absent]).update(status=BookingStatus.ABSENT)
    Booking.objects.filter(pk__in=[b.pk for b in withdrawn]).update(status=BookingStatus.CANCELLED)
    return _move(
        session,
        actor,
        "close",
        changes={
            "absent": {"before": None, "after": [b.ticket_number for b in absent]},
            "withdrawn": {"before": None, "after": [b.ticket_number for b in withdrawn]},
        },
    )


@transaction.atomic(durable=True)
def session_assign_staff(
    *, actor, session: ExamSession, user, role: str, component: Component | str | None = None
) -> SessionStaff:
    """Assign `user` to `session` as proctor, grader or chief grader. A grader marks one
    component of the session (required); a chief grader arbitrates one component, or
    every component when none is given; a proctor has none. Graders and chief graders
    must hold the grader role. Allowed until the session goes to review. Locks the
    session row; audited as `session.assign_staff`."""
    require_role(actor, Role.COORDINATOR)
    session = ExamSession.objects.select_for_update().get(pk=session.pk)
    if session.status not in STAFF_STATES:
        raise StateConflict(
            f"场次当前状态为「{session.get_status_display()}」，不能再调整考务人员",
            current_state=session.status,
        )
    errors: dict[str, list[str]] = {}
    if role not in StaffRole.values:
        raise ValidationError({"role": [f"未知的职责：{role}"]})
    if isinstance(component, str):
        code, component = component, Component.objects.filter(code=component).first()
        if component is None:
            raise ValidationError({"component": [f"未知的科目：{code}"]})
    if role in (StaffRole.GRADER, StaffRole.CHIEF_GRADER) and not has_role(user, Role.GRADER):
        errors.setdefault("user", []).append(
            f"用户 {user} 不是考评员，不能担任{StaffRole(role).label}"
        )
    if not user.is_active:
        errors.setdefault("user", []).append(f"用户 {user} 已停用")
    if role == StaffRole.PROCTOR and component is not None:
        errors.setdefault("component", []).append("监考员不分科目")
    if role == StaffRole.GRADER and component is None:
        errors.setdefault("component", []).append("请选择考评员负责的科目")
    if component is not None and not session.components.filter(pk=component.pk).exists():
        errors.setdefault("component", []).append(f"科目「{component.name}」不是本场次的考试科目")
    if errors:
        raise ValidationError(errors)
    if SessionStaff.objects.filter(
        session=session, user=user, role=role, component=component
    ).exists():
        raise ValidationError({"user": [f"用户 {user} 已是本场次的{StaffRole(role).label}"]})
    staff = SessionStaff.objects.create(session=session, user=user, role=role, component=component)
    audit_record(
        actor=actor,
        instance=session,
        action="session.assign_staff",
        changes={
            "staff": {
                "before": None,
                "after": {
                    "user": user.pk,
                    "username": user.get_username(),
                    "role": role,
                    "component": component.code if component else None,
                },
            }
        },
    )
    return staff
