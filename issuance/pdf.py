"""Certificate PDFs (issue 4 item 4): rendered with WeasyPrint from one template per
certificate kind (templates/issuance/pdf/), signed PAdES with the issuer's key (pyHanko,
issuance.keys), stored through Django's storage under a deterministic name with its
checksum.

Rendering is slow next to everything else (fonts, layout), so it runs in a Celery task
(issuance.tasks.certificate_render), outside any transaction and without holding a lock
(STYLE.md §2, §4). Many certificates render much faster as the pages of one WeasyPrint
document, split afterwards with pypdf, than one document each: fonts are loaded and
subset once per batch.

The holder's full ID number is printed: this is the holder's own certificate (the
public verification page masks it, DESIGN.md).
"""

import asyncio
import base64
import hashlib
import io
import logging
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from html import escape
from math import radians

import segno
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from PIL import Image, ImageOps
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, NameObject
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from audit.services import audit_record
from cases.models import CertificateKind
from catalog.models import SkillLevel

from .keys import signer_for, trust_root
from .models import Certificate, CertificateStatus

logger = logging.getLogger(__name__)

# Certificates rendered per WeasyPrint document by the batch path: large enough to
# amortise font loading, small enough to bound a worker's memory.
BATCH_SIZE = 50
# The photo is printed 33 x 44 mm: 300 dpi is 390 x 520 pixels; larger uploads only
# make the file heavier.
PHOTO_PIXELS = (390, 520)
SEAL_RED = "#c8161d"


def verification_url(certificate: Certificate) -> str:
    """The public verification link the QR code carries."""
    path = reverse("issuance:verify-code", args=[certificate.verification_code])
    return f"{settings.PUBLIC_BASE_URL}{path}"


def pdf_name(certificate: Certificate) -> str:
    """Deterministic storage name: a re-run overwrites, never duplicates."""
    return f"certificates/{certificate.issuer.code}/{certificate.pk:08d}.pdf"


def _certificates():
    return Certificate.objects.select_related(
        "issuer", "qualification_type", "occupation", "case__candidate"
    )


def _date(value) -> str:
    return f"{value.year}年{value.month}月{value.day}日" if value else ""


def _photo_data_uri(candidate) -> str:
    """The candidate's photo (read through the storage API) downscaled to print size, as
    a JPEG data URI; "" when there is none or it cannot be read."""
    if not candidate.photo:
        return ""
    try:
        with candidate.photo.open("rb") as handle:
            image = Image.open(handle)
            image.load()
    except (OSError, ValueError):  # missing file, or not an image (UnidentifiedImageError)
        logger.warning("photo of candidate %s unreadable; printing the placeholder", candidate.pk)
        return ""
    image = ImageOps.exif_transpose(image).convert("RGB")
    image.thumbnail(PHOTO_PIXELS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def seal_svg(text: str) -> str:
    """The issuer's seal as inline SVG: a red ring, `text` along the upper arc, a star in
    the middle (the usual layout of a Chinese official seal)."""
    chars = list((text or "").strip())[:24]
    count = len(chars)
    radius = 60  # baseline of the arc text, in a 200 x 200 box
    span = min(250.0, max(100.0, 24.0 * count))  # degrees of arc the text covers
    step = span / (count - 1) if count > 1 else 0.0
    # Glyphs as wide as their share of the arc, capped so short texts stay seal-sized.
    size = min(26.0, 0.85 * radius * radians(step)) if count > 1 else 26.0
    letters = "".join(
        f'<text x="100" y="{100 - radius}" text-anchor="middle" font-size="{size:.1f}" '
        f'transform="rotate({-span / 2 + index * step:.2f} 100 100)">{escape(char)}</text>'
        for index, char in enumerate(chars)
    )
    star = "M100,76 L105.6,92.3 L122.8,92.6 L109.1,103 L114.1,119.4 L100,109.6 L85.9,119.4 L90.9,103 L77.2,92.6 L94.4,92.3 Z"  # noqa: E501
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200" width="200" '
        f'height="200"><circle cx="100" cy="100" r="94" fill="none" stroke="{SEAL_RED}" '
        f'stroke-width="5"/><path d="{star}" fill="{SEAL_RED}"/>'
        f'<g fill="{SEAL_RED}" font-family="Noto Serif CJK SC" font-weight="bold">'
        f"{letters}</g></svg>"
    )


def certificate_context(certificate: Certificate, level_names: dict[int, str]) -> dict:
    """What one certificate page shows."""
    candidate = certificate.case.candidate
    url = verification_url(certificate)
    context = {
        "holder_name": certificate.holder_name,
        "sex": candidate.get_sex_display(),
        "id_number": certificate.holder_id_number,
        "photo": _photo_data_uri(candidate),
        "occupation": certificate.occupation.name,
        "number": certificate.number,
        "issuer_name": certificate.issuer.name,
        "seal": seal_svg(certificate.issuer.seal_text or certificate.issuer.name),
        "issued_on": _date(certificate.issued_on),
        "review_due": _date(certificate.review_due),
        "verify_url": url,
        # A full QR code: segno picks a Micro QR for short data, which phones cannot read.
        "qr": segno.make(url, micro=False).svg_inline(scale=3),
    }
    if certificate.kind == CertificateKind.SKILL:
        level = certificate.level
        return context | {
            "template": "issuance/pdf/skill.html",
            "title": "职业技能等级证书",
            "level": level_names.get(level, f"{level}级"),
            # 职业技能等级证书 carry no expiry date.
            "valid_until": _date(certificate.valid_until) or "长期有效",
        }
    # Catalog names read "特种作业操作证 · 低压电工作业": the certificate, then the item.
    title, _, item = certificate.qualification_type.name.partition(" · ")
    return context | {
        "template": "issuance/pdf/qualification.html",
        "title": title,
        "item": item or title,
        "valid_until": _date(certificate.valid_until) or "长期有效",
    }


# A name token in a content stream: "/x3 Do", "/a0.85 gs", "/f1 12 Tf".
CONTENT_NAME = re.compile(rb"/([^\s/\[\]()<>{}%]+)")
PRUNED_RESOURCES = ("/XObject", "/ExtGState", "/Pattern", "/Shading", "/Font")


def _prune_resources(page) -> None:
    """Give `page` its own resource dictionary holding only what its content names.

    WeasyPrint shares one resource dictionary among all pages of a document, so a page
    copied out as is would carry every other page's images (other holders' photos) and
    drawings. Names are matched as tokens anywhere in the content, so a used entry is
    never dropped (an unused one kept by coincidence is harmless). Fonts drawn inside
    groups stay reachable through the groups' own resources."""
    contents = page["/Contents"].get_object()
    streams = contents if isinstance(contents, ArrayObject) else [contents]
    used = set(CONTENT_NAME.findall(b"\n".join(s.get_object().get_data() for s in streams)))
    shared = page["/Resources"].get_object()
    own = DictionaryObject()
    for key, value in shared.items():
        if key in PRUNED_RESOURCES:
            entries = value.get_object()
            own[NameObject(key)] = DictionaryObject(
                {name: ref for name, ref in entries.items() if name[1:].encode() in used}
            )
        else:
            own[NameObject(key)] = value
    page[NameObject("/Resources")] = own


def _split(pdf: bytes, certificates: Sequence[Certificate]) -> list[bytes]:
    """One PDF per page of `pdf`, each with only its own page's resources and its own
    document information."""
    reader = PdfReader(io.BytesIO(pdf))
    files = []
    for page, certificate in zip(reader.pages, certificates, strict=True):
        _prune_resources(page)
        writer = PdfWriter()
        writer.add_page(page)
        writer.add_metadata(
            {
                "/Title": f"{certificate.type_label} {certificate.number}",
                "/Author": certificate.issuer.name,
                "/Creator": "一试多证联合评价系统",
            }
        )
        buffer = io.BytesIO()
        writer.write(buffer)
        files.append(buffer.getvalue())
    return files


def render_certificates(certificates: Sequence[Certificate]) -> list[bytes]:
    """Unsigned PDFs of `certificates` (issued, with their related rows loaded), one
    file of one page each, rendered as the pages of one WeasyPrint document."""
    if not certificates:
        return []
    level_names = dict(SkillLevel.objects.values_list("level", "name"))
    html = render_to_string(
        "issuance/pdf/document.html",
        {
            "certificates": [certificate_context(c, level_names) for c in certificates],
            "title": certificates[0].type_label if len(certificates) == 1 else "证书",
        },
    )
    # Only data: URIs (photo) are embedded: a template or a value must never make the
    # worker fetch anything over the network or from the local disk.
    document = HTML(string=html, url_fetcher=URLFetcher(allowed_protocols={"data"})).render()
    if len(document.pages) != len(certificates):
        # A page overflowed into a second one: splitting would mismatch holders and pages.
        raise RuntimeError(
            f"{len(certificates)} certificates rendered as {len(document.pages)} pages"
        )
    return _split(document.write_pdf(), certificates)


def render_certificate(certificate: Certificate) -> bytes:
    """One certificate's unsigned PDF."""
    return render_certificates([certificate])[0]


def sign_pdf(pdf: bytes, issuer) -> bytes:
    """`pdf` with a PAdES signature (B-B) of `issuer`'s signer key, as a certification
    signature that allows no later change: any edit shows in validation."""
    meta = signers.PdfSignatureMetadata(
        field_name="Sig1",
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason="证书电子签章",
        location=issuer.name,
        certify=True,
        docmdp_permissions=fields.MDPPerm.NO_CHANGES,
    )
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    signer = signers.PdfSigner(meta, signer=signer_for(issuer))
    return _outside_event_loop(lambda: signer.sign_pdf(writer).getvalue())


def _outside_event_loop(call):
    """pyHanko's synchronous API runs asyncio.run(), which refuses to start inside a
    thread with a running event loop (an ASGI server, Playwright's sync API in the
    test run): then run `call` in a short-lived helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def pdf_signature_status(pdf: bytes, issuer) -> dict[str, bool]:
    """pyHanko's verdict on `pdf`'s (last) signature: intact (the signed byte ranges
    still hash to the signed digest: one changed byte makes this False), valid (the
    signature over the signed attributes verifies with the signer's key) and trusted
    (the signer chains to `issuer`'s root). A sound certificate PDF is all three. A file
    too damaged to read, or without a signature, is none of them."""
    context = ValidationContext(trust_roots=[load_cert_from_pemder(str(trust_root(issuer)))])
    try:
        signatures = PdfFileReader(io.BytesIO(pdf), strict=False).embedded_signatures
        if not signatures:
            return {"intact": False, "valid": False, "trusted": False}
        status = _outside_event_loop(lambda: validate_pdf_signature(signatures[-1], context))
    except (PdfError, ValueError, KeyError) as exc:
        logger.info("unreadable signed PDF: %s", exc)
        return {"intact": False, "valid": False, "trusted": False}
    return {"intact": status.intact, "valid": status.valid, "trusted": status.trusted}


def _record(certificate: Certificate, stored: str, pdf: bytes) -> bool:
    """Record the stored file on the certificate, unless another run did first or the
    certificate was revoked meanwhile. True when this call recorded it."""
    sha = hashlib.sha256(pdf).hexdigest()
    with transaction.atomic(durable=True):
        # The conditional UPDATE is the claim: of two runs finishing together exactly one
        # changes the row (STYLE.md §4), and only that one writes the audit event.
        updated = Certificate.objects.filter(
            pk=certificate.pk, status=CertificateStatus.ISSUED, pdf_sha256=""
        ).update(pdf=stored, pdf_sha256=sha, pdf_size=len(pdf), pdf_rendered_at=timezone.now())
        if updated:
            audit_record(
                actor=None,
                instance=certificate,
                action="certificate.render",
                changes={
                    "pdf": {"before": "", "after": stored},
                    "pdf_sha256": {"before": "", "after": sha},
                    "pdf_size": {"before": None, "after": len(pdf)},
                },
            )
            return True
    _reconcile(certificate.pk, stored)
    return False


def _reconcile(certificate_id: int, stored: str) -> None:
    """After losing the claim: make sure the row describes the file it names.

    A concurrent run deletes "a crashed attempt's" file before saving its own, so the
    file under the deterministic name may now hold the loser's bytes while the row has
    the winner's checksum. Both are signed renderings of the same certificate; the row
    must match whatever the file holds. A file nobody's row names (saved under an
    alternative name, or for a certificate revoked meanwhile) is removed."""
    row = Certificate.objects.filter(pk=certificate_id).values("pdf", "pdf_sha256").first()
    if row is None or row["pdf"] != stored:
        default_storage.delete(stored)
        return
    with default_storage.open(stored, "rb") as handle:
        content = handle.read()
    sha = hashlib.sha256(content).hexdigest()
    if sha != row["pdf_sha256"]:
        Certificate.objects.filter(pk=certificate_id, pdf=stored).update(
            pdf_sha256=sha, pdf_size=len(content)
        )


def _store(certificate: Certificate, pdf: bytes) -> bool:
    name = pdf_name(certificate)
    # A file without a recorded checksum is what a crashed earlier attempt left behind.
    if default_storage.exists(name):
        default_storage.delete(name)
    stored = default_storage.save(name, ContentFile(pdf))
    return _record(certificate, stored, pdf)


def _pending(ids: Iterable[int]):
    return _certificates().filter(pk__in=ids, status=CertificateStatus.ISSUED, pdf_sha256="")


def certificate_pdf_store(certificate_id: int) -> bool:
    """Render, sign and store one issued certificate's PDF, and record its storage name,
    SHA-256 and size with a `certificate.render` audit event.

    Idempotent: False (nothing done) when the certificate is not issued (revoked before
    its PDF was made: it gets none) or already has its PDF, or when another run recorded
    its file first. Call outside any transaction: rendering holds no lock, and only the
    final conditional UPDATE and the audit event share a short transaction."""
    certificate = _pending([certificate_id]).first()
    if certificate is None:
        return False
    return _store(certificate, sign_pdf(render_certificate(certificate), certificate.issuer))


def certificates_pdf_store(certificate_ids: Iterable[int]) -> int:
    """certificate_pdf_store for many, rendered BATCH_SIZE at a time as one document
    (much faster per certificate). Returns how many PDFs this call recorded."""
    ids = sorted(set(certificate_ids))
    recorded = 0
    for start in range(0, len(ids), BATCH_SIZE):
        certificates = list(_pending(ids[start : start + BATCH_SIZE]).order_by("pk"))
        for certificate, pdf in zip(certificates, render_certificates(certificates), strict=True):
            recorded += _store(certificate, sign_pdf(pdf, certificate.issuer))
    return recorded
