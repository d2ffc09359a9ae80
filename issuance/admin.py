from django.contrib import admin

from .models import (
    Certificate,
    ExchangeImport,
    InstitutionScope,
    Issuer,
    IssuerOfficer,
    NumberSeries,
    PlanIssuers,
)


class ScopeInline(admin.TabularInline):
    model = InstitutionScope
    extra = 0


class SeriesInline(admin.TabularInline):
    model = NumberSeries
    extra = 0


@admin.register(Issuer)
class IssuerAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "province", "filing_status", "filing_valid_to"]
    list_filter = ["kind", "province", "filing_status"]
    search_fields = ["code", "name"]
    inlines = [ScopeInline, SeriesInline]


@admin.register(IssuerOfficer)
class IssuerOfficerAdmin(admin.ModelAdmin):
    list_display = ["user", "issuer"]
    autocomplete_fields = ["issuer"]


@admin.register(PlanIssuers)
class PlanIssuersAdmin(admin.ModelAdmin):
    list_display = ["plan", "qualification_issuer", "skill_issuer"]


@admin.register(Certificate)
class CertificateAdmin(admin.ModelAdmin):
    """Read-only: certificates change only through the issuance services (audited)."""

    list_display = ["pk", "kind", "issuer", "masked_name", "status", "issued_on"]
    list_filter = ["status", "kind", "issuer"]
    exclude = ["holder_id_number", "verification_code", "number"]
    readonly_fields = ["masked_number", "masked_id_number"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ExchangeImport)
class ExchangeImportAdmin(admin.ModelAdmin):
    list_display = ["source", "file_name", "rows", "matched", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False
