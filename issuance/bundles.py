"""The files an officer downloads: one certificate's stored PDF, a ZIP of several, and one
merged print file (issue 4 item 4: "batch download as ZIP and as one merged print file").

The PDFs themselves are rendered, signed and stored by the background task
(issuance.tasks.certificate_render); these helpers only read what is stored and never
render. A certificate whose PDF is not stored yet is skipped, and the callers tell the
officer how many were.
"""

import io
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse
from pypdf import PdfWriter

from config.downloads import accel_redirect_response

from .models import Certificate

PDF_NOT_READY = "证书PDF尚未生成（后台生成中），请稍后再试"
PDF_MISSING = "证书PDF文件缺失，请联系管理员重新生成"


def has_pdf(certificate: Certificate) -> bool:
    return bool(certificate.pdf and certificate.pdf_sha256)


def with_pdf(certificates: Iterable[Certificate]) -> tuple[list[Certificate], int]:
    """The certificates whose PDF is stored, and how many of the others were skipped."""
    certificates = list(certificates)
    ready = [c for c in certificates if has_pdf(c)]
    return ready, len(certificates) - len(ready)


def pdf_filename(certificate: Certificate) -> str:
    """`certificate-<pk>.pdf`: ASCII whatever the number (MOHURD numbers start with a
    Chinese province abbreviation, MEM numbers embed the holder's ID)."""
    return f"certificate-{certificate.pk}.pdf"


def pdf_response(certificate: Certificate) -> HttpResponse:
    """The stored, signed PDF as an attachment; Http404 with a message the officer can
    act on while it is not rendered yet. Behind nginx (PROTECTED_MEDIA_PREFIX set) an
    empty response with X-Accel-Redirect: nginx sends the same bytes."""
    if not has_pdf(certificate):
        raise Http404(PDF_NOT_READY)
    if settings.PROTECTED_MEDIA_PREFIX:
        # A stat here keeps the officer's message for a lost file (nginx would answer a
        # bare 404 of its own).
        if not default_storage.exists(certificate.pdf):
            raise Http404(PDF_MISSING)
        return accel_redirect_response(
            certificate.pdf,
            content_type="application/pdf",
            filename=pdf_filename(certificate),
            as_attachment=True,
        )
    try:
        handle = default_storage.open(certificate.pdf, "rb")
    except FileNotFoundError:
        raise Http404(PDF_MISSING) from None
    # FileResponse streams the file and closes it; the bytes are served unchanged, so
    # the PAdES signature still validates after download.
    return FileResponse(
        handle,
        as_attachment=True,
        filename=pdf_filename(certificate),
        content_type="application/pdf",
    )


def _read(certificate: Certificate) -> bytes:
    with default_storage.open(certificate.pdf, "rb") as handle:
        return handle.read()


def _zip_name(certificate: Certificate) -> str:
    """`<number>.pdf` when the number is plain ASCII (skill-level and SAMR numbers),
    else `certificate-<pk>.pdf`. MEM numbers (`T` + ID number) are never used as file
    names: ID numbers stay out of names that end up in folders and mail."""
    number = certificate.number or ""
    holder_id = (
        certificate.qualification_type_id and certificate.qualification_type.number_is_holder_id
    )
    if number and not holder_id and re.fullmatch(r"[A-Za-z0-9_-]+", number):
        return f"{number}.pdf"
    return pdf_filename(certificate)


def certificates_zip(certificates: Iterable[Certificate]) -> bytes:
    """A ZIP of the stored PDFs of `certificates` (those without one are skipped; see
    `with_pdf` for the count), each under `_zip_name`. PDFs are stored, not
    deflated: they are compressed already, and the bytes stay exactly the signed ones."""
    ready, _skipped = with_pdf(certificates)
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for certificate in ready:
            name = _zip_name(certificate)
            if name in used:
                # One holder's MEM certificates of two types share the number T + ID.
                name = f"{name.removesuffix('.pdf')}-{certificate.pk}.pdf"
            used.add(name)
            archive.writestr(name, _read(certificate))
    return buffer.getvalue()


def certificates_print_file(certificates: Iterable[Certificate]) -> bytes:
    """One PDF with the pages of every stored certificate PDF in order (those without a
    PDF are skipped), for printing in one go.

    The merged file carries NO valid signature: a PAdES signature covers the bytes of
    its own file, so merging necessarily breaks it. The signature fields and other
    annotations are left out rather than copied as broken signatures; the signed
    originals are the single PDFs and the ZIP."""
    ready, _skipped = with_pdf(certificates)
    if not ready:
        return b""
    # poppler's pdfunite (Debian poppler-utils, installed by `make debs`) copies pages
    # object by object, keeping each page's own resources; pypdf's page cloning trips
    # over the compact hand-written page objects of our certificate files.
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, certificate in enumerate(ready):
            path = Path(folder) / f"{index:05d}.pdf"
            path.write_bytes(_read(certificate))
            paths.append(str(path))
        merged = Path(folder) / "print.pdf"
        subprocess.run(  # noqa: S603 (fixed tool, our own temporary files)
            [shutil.which("pdfunite") or "pdfunite", *paths, str(merged)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        # No signature survives a merge: drop the form (an incremental update, which
        # copies no page) so no viewer looks for signatures in the print file.
        writer = PdfWriter(io.BytesIO(merged.read_bytes()), incremental=True)
        writer.root_object.pop("/AcroForm", None)
        for page in writer.pages:
            page.pop("/Annots", None)
        buffer = io.BytesIO()
        writer.write(buffer)
        return buffer.getvalue()
