"""Public verification of issued certificates (issue 4 item 5; DESIGN.md "Public
verification"): look-ups by number + holder name or by the QR link's code, the public
answer with personal data masked, and the per-client rate limit shared by the page and
the API.

A miss and a wrong name must look identical to the caller, so both look-ups answer with
one query that matches on every given field at once and return None either way: there
is no branch (and no extra query) that would tell "this number exists" apart.
"""

import re
from datetime import date

from django.conf import settings
from django_ratelimit import ALL
from django_ratelimit.core import get_usage

from audit.context import client_ip_from_request
from catalog.models import QualificationType, SkillCertificateRule

from .models import Certificate, CertificateStatus

# Certificates the public may see: once issued they stay visible, revoked included, so a
# revoked certificate shows as revoked rather than unknown.
PUBLIC_STATES = (CertificateStatus.ISSUED, CertificateStatus.REVOKED)

# Longer input is rejected before any regex or query runs: the longest format (SAMR
# series) is 32 characters, a holder name at most 64 (Certificate.holder_name).
NUMBER_MAX_LENGTH = 32
NAME_MAX_LENGTH = 64
# secrets.token_urlsafe(12) gives 16 characters; the column holds up to 32.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")

STATUS_LABELS = {"valid": "有效", "revoked": "已撤销", "expired": "已过期"}

NOT_FOUND_MESSAGE = "未找到匹配的证书"
MALFORMED_NUMBER_MESSAGE = "证书编号格式不正确"
NUMBER_REQUIRED_MESSAGE = "请填写证书编号"
NAME_REQUIRED_MESSAGE = "请填写持证人姓名"
NAME_TOO_LONG_MESSAGE = "持证人姓名过长"
RATE_LIMITED_MESSAGE = "查询过于频繁，请稍后再试"

# One budget per client across the page, the QR landing page and the API.
RATE_GROUP = "issuance.verify"


def normalise_number(number: str) -> str:
    return (number or "").strip().upper()


def number_is_well_formed(number: str) -> bool:
    """Whether `number` (after strip and upper-case) matches the number pattern of any
    qualification type or of the skill-level certificate rule in the catalog. All rows
    count, ended ones too: a certificate issued under an earlier rule stays verifiable."""
    number = normalise_number(number)
    if not number or len(number) > NUMBER_MAX_LENGTH:
        return False
    patterns = set(QualificationType.objects.values_list("number_pattern", flat=True))
    patterns |= set(SkillCertificateRule.objects.values_list("number_pattern", flat=True))
    return any(re.fullmatch(pattern, number) for pattern in patterns)


def verification_query_errors(number: str, name: str) -> dict[str, list[str]]:
    """Field messages for a number + name query (the page and the API show the same)."""
    errors: dict[str, list[str]] = {}
    number, name = normalise_number(number), (name or "").strip()
    if not number:
        errors["number"] = [NUMBER_REQUIRED_MESSAGE]
    elif not number_is_well_formed(number):
        errors["number"] = [MALFORMED_NUMBER_MESSAGE]
    if not name:
        errors["name"] = [NAME_REQUIRED_MESSAGE]
    elif len(name) > NAME_MAX_LENGTH:
        errors["name"] = [NAME_TOO_LONG_MESSAGE]
    return errors


def _public_certificates():
    return Certificate.objects.filter(status__in=PUBLIC_STATES).select_related(
        "issuer", "qualification_type", "occupation"
    )


def certificate_lookup(*, number: str, name: str) -> Certificate | None:
    """The issued or revoked certificate with exactly this number (stripped, upper-cased)
    held by exactly this name (stripped), or None for a miss and a wrong name alike.

    MEM numbers are T + the holder's ID, unique per type only: a holder of two MEM types
    has two certificates with one number. The most recently issued one answers."""
    number, name = normalise_number(number), (name or "").strip()
    if not number or not name:
        return None
    return (
        _public_certificates()
        .filter(number=number, holder_name=name)
        .order_by("-issued_on", "-pk")
        .first()
    )


def certificate_by_code(code: str) -> Certificate | None:
    """The issued or revoked certificate whose QR verification code is `code`."""
    code = (code or "").strip()
    if not CODE_PATTERN.fullmatch(code):
        return None
    return _public_certificates().filter(verification_code=code).first()


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def verification_answer(certificate: Certificate, on: date) -> dict:
    """The public answer for `certificate` on day `on`: status, type, level, issuer,
    dates, and the number, name and ID number masked (audit.masking). Never the full
    name or ID number, which MEM numbers embed (hence masked_number)."""
    status = certificate.validity_on(on)
    return {
        "status": status,
        "status_label": STATUS_LABELS[status],
        "certificate_type": certificate.type_code,
        "type_label": certificate.type_label,
        "occupation": certificate.occupation.name,
        "level": certificate.level,
        "number": certificate.masked_number,
        "issuer": certificate.issuer.name,
        "issued_on": _iso(certificate.issued_on),
        "valid_until": _iso(certificate.valid_until),
        "review_due": _iso(certificate.review_due),
        "revoked_on": _iso(certificate.revoked_on),
        "holder_name": certificate.masked_name,
        "id_number": certificate.masked_id_number,
    }


def _client_key(group: str, request) -> str:
    # The address audit events record: REMOTE_ADDR, or the hop the trusted proxies saw.
    # Requests without a usable address share one bucket rather than escaping the limit.
    return client_ip_from_request(request) or "unknown"


def _rate(group: str, request) -> str:
    return settings.VERIFY_RATE


def verify_rate_limit(request) -> int | None:
    """Count this request against its client's verification budget (settings.VERIFY_RATE).
    Returns None while within the limit, else the seconds until the window ends (for
    Retry-After). Works on a Django or DRF request."""
    usage = get_usage(
        request, group=RATE_GROUP, key=_client_key, rate=_rate, method=ALL, increment=True
    )
    if usage is None or not usage["should_limit"]:
        return None
    return max(int(usage["time_left"]), 1)
