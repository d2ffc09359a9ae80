"""Serializers of the certificates API. Inputs only parse shapes; the rules (who may act,
from which state, a reason required) live in issuance.services (STYLE.md §3)."""

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from cases.models import CertificateKind
from issuance.bundles import has_pdf
from issuance.models import Certificate, CertificateStatus

# Output ------------------------------------------------------------------------------


class CertificateOutput(serializers.ModelSerializer):
    """A certificate as its issuer's officers see it. The holder's ID number, and MEM
    numbers that embed it, are masked as everywhere else (audit/masking.py): the one
    place a full ID number is shown is the candidate's audited reveal (cases), and
    the certificate PDF itself. `?number=` still finds a certificate by its full number."""

    issuer = serializers.CharField(source="issuer.code")
    issuer_name = serializers.CharField(source="issuer.name")
    type_code = serializers.CharField(help_text="职业资格证书类型代码，或 SKILL")
    type_label = serializers.CharField()
    occupation = serializers.CharField(source="occupation.code")
    occupation_name = serializers.CharField(source="occupation.name")
    candidate = serializers.IntegerField(source="case.candidate_id")
    holder_id_number = serializers.CharField(source="masked_id_number")
    number = serializers.CharField(source="masked_number", allow_null=True)
    pdf_available = serializers.SerializerMethodField()
    pdf_url = serializers.SerializerMethodField()
    verification_url = serializers.SerializerMethodField()

    class Meta:
        model = Certificate
        fields = [
            "id",
            "case",
            "candidate",
            "kind",
            "status",
            "issuer",
            "issuer_name",
            "type_code",
            "type_label",
            "occupation",
            "occupation_name",
            "level",
            "holder_name",
            "holder_id_number",
            "number",
            "issued_on",
            "valid_until",
            "review_due",
            "approved_at",
            "issued_at",
            "revoked_on",
            "reason",
            "pdf_available",
            "pdf_url",
            "pdf_sha256",
            "pdf_size",
            "verification_url",
            "created_at",
        ]

    def get_pdf_available(self, certificate) -> bool:
        return has_pdf(certificate)

    def get_pdf_url(self, certificate) -> str | None:
        if not has_pdf(certificate):
            return None
        return reverse("certificate-pdf", args=[certificate.pk])

    def get_verification_url(self, certificate) -> str | None:
        """The QR code's link (issued and revoked certificates have a code)."""
        if not certificate.verification_code:
            return None
        path = reverse("issuance:verify-code", args=[certificate.verification_code])
        return settings.PUBLIC_BASE_URL.rstrip("/") + path


class BatchOutput(serializers.Serializer):
    count = serializers.IntegerField()
    results = CertificateOutput(many=True)


# Input -------------------------------------------------------------------------------


class CertificateFilterInput(serializers.Serializer):
    number = serializers.CharField(required=False, allow_blank=True, max_length=32)
    status = serializers.ChoiceField(
        choices=CertificateStatus.choices, required=False, allow_blank=True
    )
    kind = serializers.ChoiceField(
        choices=CertificateKind.choices, required=False, allow_blank=True
    )


class DueForReviewInput(serializers.Serializer):
    within_days = serializers.IntegerField(
        required=False, default=90, min_value=0, max_value=3660, help_text="复审日期在多少天内"
    )


class IssueInput(serializers.Serializer):
    on = serializers.DateField(required=False, help_text="发证日期，默认今天")


class ReasonInput(serializers.Serializer):
    # Optional here: the service names a missing reason ("请填写撤销理由"), one message
    # for the API and the pages.
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class BatchInput(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=1, max_length=500
    )


class BatchIssueInput(BatchInput):
    on = serializers.DateField(required=False, help_text="发证日期，默认今天")
