"""Shared reads of the issuance stage."""

from datetime import timedelta

from django.utils import timezone

from .models import Certificate, CertificateStatus


def certificates_missing_pdf(*, older_than_seconds: int = 120, limit: int = 1000) -> list[int]:
    """Issued certificates without a PDF, issued at least `older_than_seconds` ago (so a
    render dispatched on commit is not raced by the sweep)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Certificate.objects.filter(
            status=CertificateStatus.ISSUED, pdf_sha256="", issued_at__lte=cutoff
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
