from django.urls import path

from . import views

app_name = "cases"

urlpatterns = [
    # Registration and eligibility review (templates/cases/).
    path("", views.dashboard, name="dashboard"),
    path("candidates/", views.candidate_list, name="candidate-list"),
    path("candidates/new/", views.candidate_create, name="candidate-create"),
    path("candidates/<int:pk>/", views.candidate_detail, name="candidate-detail"),
    path("candidates/<int:pk>/edit/", views.candidate_edit, name="candidate-edit"),
    path("candidates/<int:pk>/photo/", views.candidate_photo, name="candidate-photo"),
    path("candidates/<int:pk>/reveal-id/", views.candidate_reveal_id, name="candidate-reveal-id"),
    path("candidates/<int:pk>/held/", views.held_create, name="held-create"),
    path("candidates/<int:pk>/cases/", views.case_create, name="case-create"),
    path("held/<int:pk>/verify/", views.held_verify, name="held-verify"),
    path("cases/", views.case_list, name="case-list"),
    path("cases/review/", views.review_queue, name="review-queue"),
    path("cases/<int:pk>/", views.case_detail, name="case-detail"),
    path("cases/<int:pk>/audit/", views.case_audit, name="case-audit"),
    path("cases/<int:pk>/transition/<slug:name>/", views.case_transition, name="case-transition"),
    # Evaluation plans: create and configure (the plan page itself is exams:plan-detail).
    path("plans/new/", views.plan_create, name="plan-create"),
    path("plans/<int:pk>/edit/", views.plan_edit, name="plan-edit"),
    # Bulk registration from XLSX (cases.imports).
    path("candidates/import/", views.candidate_import, name="candidate-import"),
    path(
        "candidates/import/template.xlsx",
        views.candidate_import_template,
        name="candidate-import-template",
    ),
    path("imports/<int:pk>/", views.import_job_detail, name="import-job-detail"),
    path("imports/<int:pk>/progress/", views.import_job_progress, name="import-job-progress"),
]
