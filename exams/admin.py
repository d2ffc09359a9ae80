"""Admin registrations of the exams app. Each engineer appends their models' admins.
State fields are protected FSM fields: shown read-only; states move through services."""

from django.contrib import admin

from .models import QualityWarning


@admin.register(QualityWarning)
class QualityWarningAdmin(admin.ModelAdmin):
    list_display = ["session", "rule", "subject", "status", "updated_at"]
    list_filter = ["rule", "status"]
    search_fields = ["session__code", "subject", "message"]
    readonly_fields = [
        "session",
        "rule",
        "subject",
        "detail",
        "message",
        "status",
        "review_note",
        "reviewed_by",
        "answer",
        "answered_by",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
