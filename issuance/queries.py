"""Reads behind the officers' pages and the certificates API (issue 4 items 2, 6, 8).

Every read is scoped here, in one place (STYLE.md §3): an issuer_officer sees only the
certificates of the issuer they act for, an admin sees all, anyone else sees none. The
pages and the API call the same functions, so they show the same rows with the same
number of queries however many certificates there are.
"""

from datetime import date, timedelta

from django.db.models import Count, QuerySet
from django.utils import timezone

from cases.roles import Role, user_roles

from .models import Certificate, CertificateStatus
from .services import issuer_for_user


def _scoped(user) -> QuerySet[Certificate]:
    certificates = Certificate.objects.all()
    if Role.ADMIN in user_roles(user):
        return certificates
    issuer = issuer_for_user(user)
    if issuer is None:
        # Includes an issuer_officer not yet linked to an issuer: nothing to act on.
        return certificates.none()
    return certificates.filter(issuer=issuer)


def certificate_list(
    *, user, status: str | None = None, kind: str | None = None, number: str | None = None
) -> QuerySet[Certificate]:
    """The certificates `user` may see, newest first, optionally filtered by status, kind
    and exact number, with what a row displays joined in."""
    certificates = _scoped(user).select_related(
        "issuer", "qualification_type", "occupation", "case__candidate"
    )
    if status:
        certificates = certificates.filter(status=status)
    if kind:
        certificates = certificates.filter(kind=kind)
    if number:
        certificates = certificates.filter(number=number.strip())
    return certificates.order_by("-created_at", "-pk")


def certificate_get(*, user, pk: int) -> Certificate | None:
    """One certificate `user` may see (None when missing or another issuer's), with the
    people who approved and issued it."""
    return (
        certificate_list(user=user).select_related("approved_by", "issued_by").filter(pk=pk).first()
    )


def certificates_due_for_review(
    *, user, within_days: int = 90, on: date | None = None
) -> QuerySet[Certificate]:
    """Issued certificates whose review (复审) falls within `within_days` of `on` (default
    today) or is already overdue, soonest first. Certificates without a review date
    (skill-level certificates, types without a review) never appear; revoked ones are
    not reviewed."""
    on = on or timezone.localdate()
    return (
        certificate_list(user=user, status=CertificateStatus.ISSUED)
        .filter(review_due__isnull=False, review_due__lte=on + timedelta(days=within_days))
        .order_by("review_due", "pk")
    )


def certificate_counts_by_status(*, user) -> dict[str, int]:
    """{status: count} of the certificates `user` may see, zeros included."""
    counts = dict(_scoped(user).values_list("status").annotate(n=Count("pk")).order_by())
    return {status.value: counts.get(status.value, 0) for status in CertificateStatus}


def certificates_awaiting_pdf_count(*, user) -> int:
    """Issued certificates `user` may see whose PDF the background task has not stored
    yet (issuance.tasks.certificate_render)."""
    return _scoped(user).filter(status=CertificateStatus.ISSUED, pdf_sha256="").count()
