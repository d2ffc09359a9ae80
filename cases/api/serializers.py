"""Input and output serializers are separate (STYLE.md §3): inputs only parse and
validate shapes; the rules live in cases.services."""

from rest_framework import serializers

from audit.masking import mask_ids_in
from cases.models import (
    Candidate,
    Case,
    CaseExemption,
    Education,
    EvaluationPlan,
    HeldCertificate,
    PlanCertificate,
    PlanComponent,
    Sex,
    Verification,
)

# Output ------------------------------------------------------------------------------


class CandidateOutput(serializers.ModelSerializer):
    id_number_masked = serializers.CharField(source="masked_id_number")
    work_years = serializers.SerializerMethodField()

    class Meta:
        model = Candidate
        fields = [
            "id",
            "name",
            "id_number_masked",
            "sex",
            "birth_date",
            "phone",
            "education",
            "photo",
            "work_years",
            "created_at",
            "updated_at",
        ]

    def get_work_years(self, candidate) -> dict[str, str]:
        return {w.occupation.code: str(w.years) for w in candidate.work_experience.all()}


class HeldCertificateOutput(serializers.ModelSerializer):
    qualification_type = serializers.CharField(source="qualification_type.code")
    number = serializers.CharField(source="masked_number", help_text="身份证号码部分已脱敏")

    class Meta:
        model = HeldCertificate
        fields = [
            "id",
            "candidate",
            "qualification_type",
            "number",
            "issuer_name",
            "issue_date",
            "expiry_date",
            "review_due_date",
            "revoked_on",
            "verification",
            "verification_note",
            "verified_at",
        ]


class PlanComponentOutput(serializers.ModelSerializer):
    component = serializers.CharField(source="component.code")

    class Meta:
        model = PlanComponent
        fields = ["component", "max_score", "marking_mode", "tolerance", "order"]


class PlanCertificateOutput(serializers.ModelSerializer):
    marks = serializers.SerializerMethodField()

    class Meta:
        model = PlanCertificate
        fields = ["kind", "theory_before_practical", "marks"]

    def get_marks(self, certificate) -> dict[str, str | None]:
        return {
            m.component.code: (str(m.pass_mark) if m.pass_mark is not None else None)
            for m in certificate.marks.all()
        }


class PlanOutput(serializers.ModelSerializer):
    qualification_type = serializers.CharField(source="qualification_type.code")
    occupation = serializers.CharField(source="occupation.code")
    components = PlanComponentOutput(many=True)
    certificates = PlanCertificateOutput(many=True)
    disabled_rows = serializers.SerializerMethodField()

    class Meta:
        model = EvaluationPlan
        fields = [
            "id",
            "name",
            "status",
            "qualification_type",
            "occupation",
            "level",
            "province",
            "exam_date",
            "registration_opens",
            "registration_closes",
            "retake_window_days",
            "retake_limit",
            "min_education",
            "min_work_years",
            "alternative_work_years",
            "require_photo",
            "components",
            "certificates",
            "disabled_rows",
        ]

    def get_disabled_rows(self, plan) -> list[int]:
        return sorted(rule.row for rule in plan.disabled_rules.all())


class PlanComponentInput(serializers.Serializer):
    max_score = serializers.IntegerField(required=False, min_value=1)
    marking_mode = serializers.ChoiceField(choices=["single", "double"], required=False)
    tolerance = serializers.DecimalField(
        max_digits=4, decimal_places=1, required=False, min_value=0
    )


class PlanCertificateInput(serializers.Serializer):
    theory_before_practical = serializers.BooleanField(required=False)


class PlanConfigureInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, required=False)
    exam_date = serializers.DateField(required=False)
    registration_opens = serializers.DateField(required=False, allow_null=True)
    registration_closes = serializers.DateField(required=False, allow_null=True)
    retake_window_days = serializers.IntegerField(required=False, min_value=0)
    retake_limit = serializers.IntegerField(required=False, min_value=0)
    min_education = serializers.ChoiceField(
        choices=Education.choices, required=False, allow_blank=True
    )
    min_work_years = serializers.DecimalField(
        max_digits=4, decimal_places=1, required=False, min_value=0
    )
    alternative_work_years = serializers.DecimalField(
        max_digits=4, decimal_places=1, required=False, allow_null=True, min_value=0
    )
    require_photo = serializers.BooleanField(required=False)
    # Keyed by certificate kind ("qualification", "skill"); the service refuses others.
    certificates = serializers.DictField(child=PlanCertificateInput(), required=False)
    components = serializers.DictField(child=PlanComponentInput(), required=False)
    pass_marks = serializers.DictField(
        child=serializers.DictField(
            child=serializers.DecimalField(max_digits=5, decimal_places=1, allow_null=True)
        ),
        required=False,
    )
    disabled_rows = serializers.ListField(child=serializers.IntegerField(), required=False)


class PlanInput(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    qualification_type = serializers.CharField(max_length=32)
    occupation = serializers.CharField(max_length=16)
    level = serializers.IntegerField(min_value=1, max_value=5)
    province = serializers.ChoiceField(choices=EvaluationPlan._meta.get_field("province").choices)
    exam_date = serializers.DateField()
    registration_opens = serializers.DateField(required=False, allow_null=True)
    registration_closes = serializers.DateField(required=False, allow_null=True)
    retake_window_days = serializers.IntegerField(required=False, min_value=0)
    retake_limit = serializers.IntegerField(required=False, min_value=0)
    min_education = serializers.ChoiceField(
        choices=Education.choices, required=False, allow_blank=True
    )
    min_work_years = serializers.DecimalField(
        max_digits=4, decimal_places=1, required=False, min_value=0
    )
    alternative_work_years = serializers.DecimalField(
        max_digits=4, decimal_places=1, required=False, allow_null=True, min_value=0
    )
    require_photo = serializers.BooleanField(required=False)
    double_marked = serializers.ListField(
        child=serializers.SlugField(), required=False, default=list
    )
    disabled_rows = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list
    )

    def validate_qualification_type(self, value):
        from catalog.models import QualificationType

        if not QualificationType.objects.filter(code=value).exists():
            raise serializers.ValidationError(f"未知的证书类型代码：{value}")
        return value

    def validate_occupation(self, value):
        from catalog.models import Occupation

        if not Occupation.objects.filter(code=value).exists():
            raise serializers.ValidationError(f"未知的职业编码：{value}")
        return value


class ExemptionOutput(serializers.ModelSerializer):
    component = serializers.CharField(source="component.code")

    class Meta:
        model = CaseExemption
        fields = ["component", "row", "basis", "source"]


class CaseOutput(serializers.ModelSerializer):
    exemptions = ExemptionOutput(many=True)
    status_display = serializers.CharField(source="get_status_display")

    class Meta:
        model = Case
        fields = [
            "id",
            "candidate",
            "plan",
            "status",
            "status_display",
            "status_reason",
            "application_date",
            "exemptions",
            "equivalent_level",
            "equivalence_basis",
            "equivalence_source",
            "not_counted",
            "created_at",
            "updated_at",
        ]


class MaskedJSONField(serializers.JSONField):
    """JSON with every ID number masked: audit changes record them in full."""

    def to_representation(self, value):
        return mask_ids_in(super().to_representation(value))


class AuditEventOutput(serializers.Serializer):
    seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_username")
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    from_state = serializers.CharField()
    to_state = serializers.CharField()
    reason = serializers.CharField()
    object_repr = MaskedJSONField()
    changes = MaskedJSONField()
    client_ip = serializers.CharField(allow_null=True)
    hash = serializers.CharField()


# Input -------------------------------------------------------------------------------


class WorkYearsField(serializers.DictField):
    child = serializers.DecimalField(max_digits=4, decimal_places=1, min_value=0)


class CandidateInput(serializers.Serializer):
    id_number = serializers.CharField(max_length=18)
    name = serializers.CharField(max_length=64)
    phone = serializers.CharField(max_length=20)
    education = serializers.ChoiceField(choices=Education.choices)
    sex = serializers.ChoiceField(choices=Sex.choices, required=False)
    birth_date = serializers.DateField(required=False)
    photo = serializers.ImageField(required=False)
    work_years = WorkYearsField(required=False)


class CandidateUpdateInput(CandidateInput):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


class HeldCertificateInput(serializers.Serializer):
    candidate = serializers.PrimaryKeyRelatedField(queryset=Candidate.objects.all())
    qualification_type = serializers.CharField(max_length=32)
    number = serializers.CharField(max_length=32)
    issuer_name = serializers.CharField(max_length=128)
    issue_date = serializers.DateField()
    expiry_date = serializers.DateField(required=False)
    review_due_date = serializers.DateField(required=False)
    revoked_on = serializers.DateField(required=False)


class VerifyInput(serializers.Serializer):
    verification = serializers.ChoiceField(
        choices=[c for c in Verification.choices if c[0] != Verification.UNVERIFIED]
    )
    note = serializers.CharField(required=False, allow_blank=True, default="")


class CaseInput(serializers.Serializer):
    candidate = serializers.PrimaryKeyRelatedField(queryset=Candidate.objects.all())
    plan = serializers.PrimaryKeyRelatedField(queryset=EvaluationPlan.objects.all())


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")
