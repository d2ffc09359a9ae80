"""The issuance stage of `manage.py demo`: issuers with their number series and signing
keys, one officer per issuer, and every certificate the passed cases earned opened,
approved and issued in batches with the real services; PDFs are rendered (eagerly in
the embedded setup, by the workers otherwise)."""

from dataclasses import dataclass, field
from datetime import date

from django.contrib.auth import get_user_model
from django.db.models import Count

from catalog.models import Department, Occupation

from . import services
from .keys import issuer_keys_ensure
from .models import (
    Certificate,
    FilingStatus,
    InstitutionScope,
    Issuer,
    IssuerKind,
    IssuerOfficer,
    NumberSeries,
)

# code, kind fields, officer username
DEPARTMENTS = [
    ("mem-14", "mem", "山西省应急管理厅", "", "officer"),
    ("mohurd-14a", "mohurd", "太原市住房和城乡建设局", "A", "officer-mohurd"),
    ("samr-14", "samr", "山西省市场监督管理局", "", "officer-samr"),
]
SERIES = {
    "mohurd-14a": [("MOHURD-ELEC", "01", ""), ("MOHURD-WELD", "02", "")],
    "samr-14": [("SAMR-WELD", "", "TS")],
}
INSTITUTION = ("skill-s1400", "山西省职业技能鉴定指导中心", "S", "1400", "000001", "officer-skill")
BATCH = 200


@dataclass
class IssuanceResult:
    issuers: list[Issuer] = field(default_factory=list)
    opened: int = 0
    issued: int = 0


def ensure_issuers() -> list[Issuer]:
    """The demo issuers (Shanxi), their series, officers and self-signed signing keys."""
    users = get_user_model().objects
    issuers = []
    for code, dept, name, city, username in DEPARTMENTS:
        issuer, _ = Issuer.objects.get_or_create(
            code=code,
            defaults={
                "kind": IssuerKind.DEPARTMENT,
                "name": name,
                "province": "14",
                "department": Department.objects.get(code=dept),
                "city_letter": city,
                "seal_text": name,
            },
        )
        for type_code, category, prefix in SERIES.get(code, []):
            NumberSeries.objects.get_or_create(
                issuer=issuer,
                type_code=type_code,
                defaults={"category": category, "prefix": prefix},
            )
        issuers.append((issuer, username))
    code, name, kind, institution_code, site, username = INSTITUTION
    institution, created = Issuer.objects.get_or_create(
        code=code,
        defaults={
            "kind": IssuerKind.INSTITUTION,
            "name": name,
            "province": "14",
            "institution_type": kind,
            "institution_code": institution_code,
            "site_sequence": site,
            "filing_status": FilingStatus.FILED,
            "filing_valid_from": date(2025, 1, 1),
            "filing_valid_to": date(2029, 12, 31),
            "seal_text": name,
        },
    )
    if created:
        InstitutionScope.objects.bulk_create(
            InstitutionScope(issuer=institution, occupation=occupation, level=level)
            for occupation in Occupation.objects.filter(code__in=["6-31-01-03", "6-18-02-04"])
            for level in (5, 4, 3)
        )
    issuers.append((institution, username))
    for issuer, username in issuers:
        user = users.filter(username=username).first()
        if user is not None:
            IssuerOfficer.objects.get_or_create(user=user, defaults={"issuer": issuer})
        issuer_keys_ensure(issuer)
    return [issuer for issuer, _ in issuers]


def build(*, case_ids: list[int], progress=None, issuers=None) -> IssuanceResult:
    """Open, approve and issue every certificate the passed cases of `case_ids` earned,
    each issuer's officer acting on their own queue, in batches of BATCH. `issuers`:
    those of `ensure_issuers()` when already made."""
    result = IssuanceResult(issuers=issuers or ensure_issuers())
    result.opened = len(services.certificates_open(case_ids=case_ids))
    for issuer in result.issuers:
        officer = IssuerOfficer.objects.filter(issuer=issuer).select_related("user").first()
        if officer is None:
            continue
        pending = list(
            Certificate.objects.filter(issuer=issuer, case_id__in=case_ids, status="pending")
        )
        for start in range(0, len(pending), BATCH):
            batch = pending[start : start + BATCH]
            services.certificates_approve(actor=officer.user, certificates=batch)
            result.issued += len(
                services.certificates_issue(actor=officer.user, certificates=batch)
            )
            if progress:
                progress(result.issued)
    return result


def certificate_counts(case_ids: list[int]) -> dict[str, int]:
    rows = (
        Certificate.objects.filter(case_id__in=case_ids)
        .values("status")
        .annotate(n=Count("pk"))
        .order_by("status")
    )
    return {row["status"]: row["n"] for row in rows}


def pdf_count(case_ids: list[int]) -> int:
    return Certificate.objects.filter(case_id__in=case_ids).exclude(pdf_sha256="").count()
