"""Helpers for the exams tests. States are reached through services, never by
assigning `status`. Append your helpers; do not rewrite others'."""

import itertools
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from cases import services as case_services
from tests.cases.factories import PlanFactory, UserFactory, coordinator, hold, register

__all__ = [
    "PlanFactory",
    "UserFactory",
    "coordinator",
    "desk_time",
    "eligible_case",
    "exam_room",
    "exam_session",
    "hold",
    "register",
]

_rooms = itertools.count(1)
APPLIED = date(2026, 6, 1)


def eligible_case(actor, plan, candidate=None, **register_kwargs):
    """A case of `plan` submitted and approved through the services (status eligible)."""
    candidate = candidate or register(actor, **register_kwargs)
    case = case_services.case_create(actor=actor, candidate=candidate, plan=plan)
    case = case_services.case_submit(actor=actor, case=case, on=APPLIED)
    return case_services.case_approve(actor=actor, case=case)


def exam_room(actor, *, capacity=30, venue=None):
    """A room (and its venue) created through exams.sessions."""
    from exams.models import Venue
    from exams.sessions import room_create, venue_create

    n = next(_rooms)
    venue = venue or Venue.objects.first() or venue_create(actor=actor, name="太原技师学院考点")
    return room_create(actor=actor, venue=venue, name=f"第{n}考场", capacity=capacity)


def exam_session(
    actor,
    plan,
    *,
    room=None,
    day=date(2026, 9, 15),
    start=time(9, 0),
    end=time(11, 0),
    capacity=None,
    components=("theory", "practical"),
    open_it=True,
    **kwargs,
):
    """A session of `plan` (opened unless `open_it=False`) through exams.sessions."""
    from exams.sessions import session_create, session_open

    room = room or exam_room(actor, capacity=capacity or 30)
    session = session_create(
        actor=actor,
        plan=plan,
        room=room,
        date=day,
        start_time=start,
        end_time=end,
        capacity=capacity or room.capacity,
        components=list(components),
        **kwargs,
    )
    return session_open(actor=actor, session=session) if open_it else session


def desk_time(session, minutes_before=15):
    """A check-in moment at the desk of `session`: on its date, `minutes_before` its
    start (negative: after it). The desk admits candidates on the session's date only."""
    start = timezone.make_aware(datetime.combine(session.date, session.start_time))
    return start - timedelta(minutes=minutes_before)


def marking_session(actor, plan, cases, *, staff=(), absent=(), **session_kwargs):
    """A session of `plan` in `marking`, all through the exams services: `cases`
    (eligible) booked, `staff` assigned as (user, role, component code or None), every
    case checked in (on the session's date, 15 minutes before the start) except those in
    `absent`, started and closed. Returns (session, {case.pk: booking})."""
    from exams.attendance import check_in
    from exams.scheduling import booking_create
    from exams.sessions import (
        session_assign_staff,
        session_close,
        session_freeze_roster,
        session_start,
    )

    session = exam_session(actor, plan, **session_kwargs)
    for user, role, component in staff:
        session_assign_staff(
            actor=actor, session=session, user=user, role=role, component=component
        )
    bookings = {case.pk: booking_create(actor=actor, session=session, case=case) for case in cases}
    session = session_freeze_roster(actor=actor, session=session)
    absent_ids = {case.pk for case in absent}
    for case_id, booking in bookings.items():
        if case_id not in absent_ids:
            check_in(
                actor=actor,
                session=session,
                ticket_or_id=booking.ticket_number,
                at=desk_time(session),
            )
    session = session_start(actor=actor, session=session)
    session = session_close(actor=actor, session=session)
    from exams.models import Booking

    return session, {pk: Booking.objects.get(pk=b.pk) for pk, b in bookings.items()}
