"""Admin: reference-like data (plans) is editable; candidates and cases are read here
and changed through the pages and API, whose services audit every change."""

from django.contrib import admin

from .models import (
    Candidate,
    Case,
    CaseExemption,
    EvaluationPlan,
    HeldCertificate,
    ImportJob,
    PassMark,
    PlanCertificate,
    PlanComponent,
)


class PlanComponentInline(admin.TabularInline):
    model = PlanComponent
    extra = 0


class PlanCertificateInline(admin.TabularInline):
    model = PlanCertificate
    extra = 0
    show_change_link = True


class PassMarkInline(admin.TabularInline):
    model = PassMark
    extra = 0


@admin.register(PlanCertificate)
class PlanCertificateAdmin(admin.ModelAdmin):
    list_display = ["plan", "kind", "theory_before_practical"]
    inlines = [PassMarkInline]


@admin.register(EvaluationPlan)
class EvaluationPlanAdmin(admin.ModelAdmin):
    inlines = [PlanComponentInline, PlanCertificateInline]
    readonly_fields = ["status"]
    list_display = ["name", "qualification_type", "occupation", "level", "province", "exam_date"]
    list_filter = ["qualification_type", "province"]
    filter_horizontal = ["disabled_rules"]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdmin):
    list_display = ["name", "masked_id_number", "sex", "education", "created_at"]
    search_fields = ["name", "phone"]
    exclude = ["id_number"]
    readonly_fields = ["masked_id_number"]


@admin.register(HeldCertificate)
class HeldCertificateAdmin(ReadOnlyAdmin):
    list_display = [
        "qualification_type",
        "masked_number",
        "candidate",
        "issue_date",
        "verification",
    ]
    list_filter = ["qualification_type", "verification"]
    exclude = ["number"]
    readonly_fields = ["masked_number"]


class CaseExemptionInline(admin.TabularInline):
    model = CaseExemption
    extra = 0
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ["pk", "candidate", "plan", "status", "application_date"]
    list_filter = ["status", "plan"]
    inlines = [CaseExemptionInline]


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = ["pk", "uploaded_by", "created_at", "status", "total_rows", "created_count"]
    list_filter = ["status"]
    exclude = ["file", "errors"]  # personal data: the import page shows the masked report
