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


class PlanOutput(serializers.ModelSerializer):
    qualification_type = serializers.CharField(source="qualification_type.code")
    occupation = serializers.CharField(source="occupation.code")

    class Meta:
        model = EvaluationPlan
        fields = [
            "id",
            "name",
            "qualification_type",
            "occupation",
            "level",
            "province",
            "exam_date",
            "min_education",
            "min_work_years",
            "alternative_work_years",
            "require_photo",
        ]


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
