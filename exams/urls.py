from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "exams"

urlpatterns = [
    # Coordinator: plans, venues, sessions and roster, exam day (templates/exams/).
    path("plans/", views.plan_list, name="plan-list"),
    # The new-plan page moved to cases:plan-create (with cases:plan-edit for drafts);
    # the old address stays as a permanent redirect so bookmarks keep working.
    path(
        "plans/new/",
        RedirectView.as_view(pattern_name="cases:plan-create", permanent=True),
        name="plan-create",
    ),
    path("plans/<int:pk>/", views.plan_detail, name="plan-detail"),
    path("plans/<int:pk>/allocate/", views.plan_allocate, name="plan-allocate"),
    path("plans/<int:pk>/transition/<slug:name>/", views.plan_transition, name="plan-transition"),
    path("venues/", views.venue_list, name="venue-list"),
    path("venues/<int:pk>/rooms/", views.room_create, name="room-create"),
    path("sessions/", views.session_list, name="session-list"),
    path("sessions/new/", views.session_create, name="session-create"),
    path("sessions/<int:pk>/", views.session_detail, name="session-detail"),
    path(
        "sessions/<int:pk>/transition/<slug:name>/",
        views.session_transition,
        name="session-transition",
    ),
    path("sessions/<int:pk>/staff/", views.session_staff, name="session-staff"),
    path("sessions/<int:pk>/book/", views.session_book, name="session-book"),
    path("sessions/<int:pk>/allocate/", views.session_allocate, name="session-allocate"),
    path("sessions/<int:pk>/check-in/", views.check_in_desk, name="check-in"),
    path("sessions/<int:pk>/tickets.pdf", views.session_tickets, name="session-tickets"),
    path("bookings/<int:pk>/ticket.pdf", views.booking_ticket, name="booking-ticket"),
    path("bookings/<int:pk>/cancel/", views.booking_cancel, name="booking-cancel"),
    path("bookings/<int:pk>/misconduct/", views.misconduct_create, name="misconduct"),
    path("sessions/<int:pk>/results/", views.session_results, name="session-results"),
    path("sessions/<int:pk>/finalise/", views.session_finalise, name="session-finalise"),
    path(
        "sessions/<int:pk>/submit-for-review/",
        views.session_submit_for_review,
        name="session-submit-for-review",
    ),
    path("cases/<int:pk>/results/", views.case_results, name="case-results"),
    # Grader: my sessions, score grid, import.
    path("grading/", views.grading_sessions, name="grading-sessions"),
    path("grading/<int:pk>/import/", views.score_import, name="grading-import"),
    path("grading/<int:pk>/<slug:component>/", views.score_grid, name="grading-grid"),
    # Quality supervisor: review queue, warnings, approve / return.
    path("review/", views.quality_queue, name="quality-queue"),
    path("review/<int:pk>/", views.quality_review, name="quality-review"),
    path(
        "review/<int:pk>/approve/",
        views.quality_decide,
        {"name": "approve"},
        name="quality-approve",
    ),
    path(
        "review/<int:pk>/return/", views.quality_decide, {"name": "return"}, name="quality-return"
    ),
    path("warnings/<int:pk>/<slug:name>/", views.warning_action, name="quality-warning"),
]
