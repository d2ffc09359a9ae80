"""Issuance tasks: thin, idempotent, taking ids (STYLE.md §4)."""

import logging
from datetime import date, timedelta
from pathlib import Path

from celery import shared_task

from . import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def certificates_open_for(case_ids: list[int]) -> int:
    """Open the certificates of cases a quality review just passed (idempotent)."""
    return len(services.certificates_open(case_ids=case_ids))


@shared_task(acks_late=True, reject_on_worker_lost=True)
def certificates_open_sweep() -> int:
    """Safety net for the approval hook: passed cases that still have no certificate
    (the hook's process died, or no issuer was configured then)."""
    return len(services.certificates_open(case_ids=services.passed_cases_without_certificates()))


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=240)
def certificate_render(certificate_id: int) -> bool:
    """Render, sign and store one certificate's PDF; idempotent (issuance.pdf)."""
    from .pdf import certificate_pdf_store

    return certificate_pdf_store(certificate_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def certificate_render_sweep(
    older_than_seconds: int = 120, partials_older_than_seconds: int | None = None
) -> int:
    """Re-dispatch rendering for issued certificates that still have no PDF, issued at
    least `older_than_seconds` ago (the on-commit dispatch died with its process, or a
    worker was killed mid-render), in batches as batch issuance does; and delete the
    files killed runs staged but never claimed (issuance.pdf.pdf_partials_remove).
    Returns how many certificates were re-dispatched."""
    from .pdf import PARTIAL_MAX_AGE, pdf_partials_remove
    from .selectors import certificates_missing_pdf
    from .services import RENDER_BATCH

    if partials_older_than_seconds is None:
        partials_older_than_seconds = PARTIAL_MAX_AGE
    pdf_partials_remove(older_than_seconds=partials_older_than_seconds)
    ids = certificates_missing_pdf(older_than_seconds=older_than_seconds)
    if len(ids) == 1:
        certificate_render.delay(ids[0])
    else:
        for start in range(0, len(ids), RENDER_BATCH):
            certificates_render.delay(ids[start : start + RENDER_BATCH])
    return len(ids)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=1800)
def certificates_export_quarter(day: str | None = None) -> int:
    """Write the previous quarter's certificates (relative to `day`, ISO date, default
    today) to EXCHANGE_DIR/certificates-<YYYY>Q<n>.csv and .xlsx for the national query.
    Idempotent: a rerun rewrites the same deterministic file names. Returns the row count."""
    from django.conf import settings
    from django.utils import timezone

    from .exchange import certificates_export, quarter_bounds

    first, last = quarter_bounds(date.fromisoformat(day) if day else timezone.localdate())
    stem = Path(settings.EXCHANGE_DIR) / f"certificates-{first.year}Q{(first.month - 1) // 3 + 1}"
    count = certificates_export(
        date_from=first, date_to=last, path=stem.with_suffix(".csv"), fmt="csv"
    )
    certificates_export(date_from=first, date_to=last, path=stem.with_suffix(".xlsx"), fmt="xlsx")
    logger.info("exported %d certificates issued %s..%s to %s.*", count, first, last, stem)
    return count


REVIEW_NOTICE_DAYS = 90


@shared_task(acks_late=True, reject_on_worker_lost=True)
def certificates_review_reminder(day: str | None = None) -> dict[str, int]:
    """Count, per issuer code, the issued certificates whose review date falls within
    the next 90 days of `day` (ISO date, default today), and log them for the issuers'
    officers. Read-only, so idempotent. Returns {issuer code: count}."""
    from django.db.models import Count
    from django.utils import timezone

    from .models import Certificate, CertificateStatus

    start = date.fromisoformat(day) if day else timezone.localdate()
    end = start + timedelta(days=REVIEW_NOTICE_DAYS)
    counts = dict(
        Certificate.objects.filter(
            status=CertificateStatus.ISSUED, review_due__gte=start, review_due__lte=end
        )
        .values_list("issuer__code")
        .annotate(n=Count("pk"))
        .order_by("issuer__code")
    )
    for code, n in counts.items():
        logger.info("issuer %s: %d certificates due for review by %s", code, n, end)
    return counts


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=900, soft_time_limit=840)
def certificates_render(certificate_ids: list[int]) -> int:
    """Render a batch as one document, split and signed per certificate; idempotent:
    certificates already rendered (or no longer issued) are skipped (issuance.pdf)."""
    from .pdf import certificates_pdf_store

    return certificates_pdf_store(certificate_ids)
