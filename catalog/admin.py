from django.contrib import admin

from .models import (
    Component,
    Department,
    EquivalenceRule,
    Occupation,
    QualificationComponent,
    QualificationType,
    RecognitionRule,
    SkillCertificateRule,
    SkillLevel,
)

admin.site.register([Department, Occupation, SkillLevel, Component, SkillCertificateRule])


class QualificationComponentInline(admin.TabularInline):
    model = QualificationComponent
    extra = 0


@admin.register(QualificationType)
class QualificationTypeAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "department", "validity_years", "review_interval_years"]
    inlines = [QualificationComponentInline]


@admin.register(RecognitionRule)
class RecognitionRuleAdmin(admin.ModelAdmin):
    list_display = ["row", "held", "target", "effective_from", "effective_to", "source"]
    filter_horizontal = ["exempt"]


@admin.register(EquivalenceRule)
class EquivalenceRuleAdmin(admin.ModelAdmin):
    list_display = ["held", "occupation", "level", "effective_from", "effective_to"]
