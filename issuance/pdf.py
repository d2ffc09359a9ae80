"""Certificate PDFs (issue 4 item 4): rendered with WeasyPrint from one template per
certificate kind (templates/issuance/pdf/), signed PAdES with the issuer's key (pyHanko,
issuance.keys), stored through Django's storage under a deterministic name with its
checksum. Each run stages its file under a name of its own and only the run that claims
the certificate moves it into place (_claim), so overlapping runs never touch each
other's file and a row never names a missing one.

Rendering is slow next to everything else (fonts, layout), so it runs in a Celery task
(issuance.tasks.certificate_render), outside any transaction and without holding a lock
(STYLE.md §2, §4). Many certificates render much faster as the pages of one WeasyPrint
document, split afterwards into one file each, than one document each: fonts are loaded
and subset once per batch, what certificates of one kind share is laid out once, and QR
code and seal are drawn straight into the PDF (render_certificates; bench/README.md
shows where the time goes).

The holder's full ID number is printed: this is the holder's own certificate (the
public verification page masks it, DESIGN.md).
"""

import asyncio
import gc
import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import subprocess
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache
from math import radians

import segno
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from fontTools.misc.transform import Transform
from fontTools.pens.basePen import BasePen
from fontTools.pens.transformPen import TransformPen
from fontTools.ttLib import TTFont
from PIL import Image, ImageOps
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    TextStringObject,
)
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from audit.services import audit_record_bulk, event_for
from cases.models import CertificateKind
from catalog.models import SkillLevel

from .keys import signer_for, trust_root
from .models import Certificate, CertificateStatus

logger = logging.getLogger(__name__)

# Certificates rendered per WeasyPrint document by the batch path: large enough to
# amortise font loading, small enough to bound a worker's memory.
BATCH_SIZE = 50
# Runs stage their file in certificates/<issuer>/.partial/ before claiming the
# certificate (an issuer code is a slug, so it never clashes). A staged file older than
# an hour cannot belong to a live run: render tasks are killed after 15 minutes at most.
PARTIAL_DIR = ".partial"
PARTIAL_MAX_AGE = 3600
# The photo is printed 33 x 44 mm: 300 dpi is 390 x 520 pixels; larger uploads only
# make the file heavier.
PHOTO_PIXELS = (390, 520)
SEAL_RED = "#c8161d"
SEAL_FONT = "Noto Serif CJK SC:bold"  # the template's bold face, for the seal's letters


def verification_url(certificate: Certificate) -> str:
    """The public verification link the QR code carries."""
    path = reverse("issuance:verify-code", args=[certificate.verification_code])
    return f"{settings.PUBLIC_BASE_URL}{path}"


def pdf_name(certificate: Certificate) -> str:
    """Deterministic storage name: one file per certificate however often it is rendered
    (a run's file is staged under its own name first, see _claim)."""
    return f"certificates/{certificate.issuer.code}/{certificate.pk:08d}.pdf"


def _certificates():
    return Certificate.objects.select_related(
        "issuer", "qualification_type", "occupation", "case__candidate"
    )


def _date(value) -> str:
    return f"{value.year}年{value.month}月{value.day}日" if value else ""


def _photo_jpeg(candidate) -> bytes:
    """The candidate's photo (read through the storage API) downscaled to print size, as
    JPEG bytes; b"" when there is none or it cannot be read."""
    if not candidate.photo:
        return b""
    try:
        with candidate.photo.open("rb") as handle:
            image = Image.open(handle)
            image.load()
    except (OSError, ValueError):  # missing file, or not an image (UnidentifiedImageError)
        logger.warning("photo of candidate %s unreadable; printing the placeholder", candidate.pk)
        return b""
    image = ImageOps.exif_transpose(image).convert("RGB")
    # Bilinear is Pillow's triangle filter widened to the reduction, so no aliasing; at
    # this scale (stored photos are 600 x 800) it prints like bicubic at half the cost.
    image.thumbnail(PHOTO_PIXELS, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class _Photos(URLFetcher):
    """The batch's photos, served from memory under made-up `photo:<n>` URLs (no base64
    data URI for the HTML parser to wade through). Every other URL is refused: a
    template or a value must never make the worker fetch anything over the network or
    from the local disk."""

    def __init__(self, photos: dict[str, bytes]):
        super().__init__(allowed_protocols=set())
        self._photos = photos

    def fetch(self, url, headers=None):
        if url not in self._photos:
            raise ValueError(f"not a photo of this batch: {url}")
        return URLFetcherResponse(
            url, body=self._photos[url], headers={"Content-Type": "image/jpeg"}
        )


def certificate_context(certificate: Certificate, level_names: dict[int, str]) -> dict:
    """What one certificate page shows, as text (photo, QR code and seal are added by
    render_certificates)."""
    candidate = certificate.case.candidate
    context = {
        "holder_name": certificate.holder_name,
        "sex": candidate.get_sex_display(),
        "id_number": certificate.holder_id_number,
        "photo": "",
        "occupation": certificate.occupation.name,
        "number": certificate.number,
        "issuer_name": certificate.issuer.name,
        "seal_text": certificate.issuer.seal_text or certificate.issuer.name,
        "issued_on": _date(certificate.issued_on),
        "review_due": _date(certificate.review_due),
        "verify_url": verification_url(certificate),
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


# QR code and seal, drawn as PDF operators --------------------------------------------
#
# WeasyPrint draws inline SVG slowly: it parses every path point by point in Python and
# lays out SVG text one letter at a time with Pango; QR code and seal took a quarter of
# a batch's time. The template leaves their boxes empty (with ids, so WeasyPrint reports where
# they landed) and _Splitter draws them into each page's PDF: the QR code as filled
# rectangles, the seal as one form per issuer (ring, star and the outlines of its
# letters from the same Noto Serif CJK SC Bold the page uses), so no font is embedded
# for it and its text is not extracted as the page's.


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _qr_operators(url: str, box: tuple[float, float, float, float]) -> str:
    """A full QR code of `url` (segno picks a Micro QR for short data, which phones cannot
    read) with its 4-module quiet zone, filling `box` (x, y, width, height in points,
    from the page's bottom left), one rectangle per run of dark modules in a row."""
    rows = list(segno.make(url, micro=False).matrix_iter(border=4))
    x, y, width, height = box
    module = min(width, height) / len(rows)
    operators = [f"q 0 g {_num(module)} 0 0 {_num(-module)} {_num(x)} {_num(y + height)} cm"]
    for row, bits in enumerate(rows):
        column = 0
        while column < len(bits):
            if bits[column]:
                start = column
                while column < len(bits) and bits[column]:
                    column += 1
                operators.append(f"{start} {row} {column - start} 1 re")
            column += 1
    operators.append("f Q")
    return "\n".join(operators)


class _OutlinePen(BasePen):
    """fontTools pen writing a glyph's outline as PDF path operators."""

    def __init__(self, glyph_set, operators: list[str]):
        super().__init__(glyph_set)
        self.operators = operators

    def _moveTo(self, pt):
        self.operators.append(f"{_num(pt[0])} {_num(pt[1])} m")

    def _lineTo(self, pt):
        self.operators.append(f"{_num(pt[0])} {_num(pt[1])} l")

    def _curveToOne(self, pt1, pt2, pt3):
        self.operators.append(" ".join(_num(v) for v in (*pt1, *pt2, *pt3)) + " c")

    def _closePath(self):
        self.operators.append("h")


@lru_cache(maxsize=1)
def _seal_font():
    """cmap, glyph set and units per em of the seal's font, found as WeasyPrint finds it
    (fontconfig); loaded lazily, once per process."""
    try:
        found = subprocess.run(  # noqa: S603 - fixed arguments
            [shutil.which("fc-match") or "fc-match", "-f", "%{file}\n%{index}", SEAL_FONT],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ImproperlyConfigured(f"fontconfig's fc-match cannot find {SEAL_FONT}") from exc
    font = TTFont(found[0], fontNumber=int(found[1] or 0), lazy=True)
    return font.getBestCmap(), font.getGlyphSet(), font["head"].unitsPerEm


SEAL_STAR = "100,76 105.6,92.3 122.8,92.6 109.1,103 114.1,119.4 100,109.6 85.9,119.4 90.9,103 77.2,92.6 94.4,92.3"  # noqa: E501


@lru_cache(maxsize=64)
def _seal_form(text: str) -> bytes:
    """The issuer's seal as the Flate-compressed content of a 200 x 200 form: a red
    ring, `text` along the upper arc, a star in the middle (the usual layout of a Chinese
    official seal), in the geometry the template's SVG seal had."""
    cmap, glyphs, units = _seal_font()
    red = " ".join(_num(int(SEAL_RED[i : i + 2], 16) / 255) for i in (1, 3, 5))
    k = 0.5523 * 94  # Bezier handle length of a quarter circle of radius 94
    a, b = _num(100 + k), _num(100 - k)
    star = [point.split(",") for point in SEAL_STAR.split()]
    operators = [
        "1 0 0 -1 0 200 cm /Alpha gs",  # y downwards, as in SVG
        f"{red} RG {red} rg 5 w",
        f"194 100 m 194 {a} {a} 194 100 194 c {b} 194 6 {a} 6 100 c",
        f"6 {b} {b} 6 100 6 c {a} 6 194 {b} 194 100 c S",
        " ".join(f"{x} {y} {'l' if i else 'm'}" for i, (x, y) in enumerate(star)) + " h f",
    ]
    chars = list(text.strip())[:24]
    count = len(chars)
    radius = 60  # baseline of the arc text
    span = min(250.0, max(100.0, 24.0 * count))  # degrees of arc the text covers
    step = span / (count - 1) if count > 1 else 0.0
    # Glyphs as wide as their share of the arc, capped so short texts stay seal-sized.
    scale = (min(26.0, 0.85 * radius * radians(step)) if count > 1 else 26.0) / units
    pen = _OutlinePen(glyphs, operators)
    for index, char in enumerate(chars):
        name = cmap.get(ord(char))
        if name is None:
            logger.warning("seal font has no glyph for %r of seal %r", char, text)
            continue
        glyph = glyphs[name]
        transform = (
            Transform()
            .translate(100, 100)
            .rotate(radians(-span / 2 + index * step))
            .translate(-100, -100)
            .translate(100 - glyph.width * scale / 2, 100 - radius)  # centred on the top
            .scale(scale, -scale)
        )
        glyph.draw(TransformPen(pen, transform))
    operators.append("f")
    return zlib.compress("\n".join(operators).encode())


# Splitting -----------------------------------------------------------------------------

# A name token in a content stream: "/x3 Do", "/a0.85 gs", "/f1 12 Tf".
CONTENT_NAME = re.compile(rb"/([^\s/\[\]()<>{}%]+)")
PRUNED_RESOURCES = ("/XObject", "/ExtGState", "/Pattern", "/Shading", "/Font")
PAGE_KEYS_DROPPED = ("/Parent", "/Contents", "/Resources", "/Annots", "/StructParents")


def _prune_resources(page) -> DictionaryObject:
    """A resource dictionary for `page` holding only what its content names.

    WeasyPrint shares one resource dictionary among all pages of a document, so a page
    copied out as is would carry every other page's images (other holders' photos) and
    drawings. Names are matched as tokens anywhere in the content, so a used entry is
    never dropped (an unused one kept by coincidence is harmless). Fonts drawn inside
    groups stay reachable through the groups' own resources."""
    contents = page["/Contents"].get_object()
    streams = contents if isinstance(contents, ArrayObject) else [contents]
    used = set(CONTENT_NAME.findall(b"\n".join(s.get_object().get_data() for s in streams)))
    own = DictionaryObject()
    for key, value in page["/Resources"].get_object().items():
        if key in PRUNED_RESOURCES:
            entries = value.get_object()
            own[NameObject(key)] = DictionaryObject(
                {name: ref for name, ref in entries.items() if name[1:].encode() in used}
            )
        else:
            own[NameObject(key)] = value
    return own


def _serialised(obj) -> bytes:
    buffer = io.BytesIO()
    obj.write_to_stream(buffer)
    return buffer.getvalue()


def _references(obj) -> list[int]:
    """Numbers of the objects `obj` refers to (not through /Parent: never up the tree)."""
    found, stack = [], [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, IndirectObject):
            found.append(item.idnum)
        elif isinstance(item, dict):
            stack.extend(value for key, value in item.items() if key != "/Parent")
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _stream(data: bytes, entries: str = "") -> bytes:
    return f"<< /Length {len(data)}{entries} >>\nstream\n".encode() + data + b"\nendstream"


class _Splitter:
    """Writes each page of a WeasyPrint document as a PDF of its own, with its QR code
    and seal drawn in, over its background page if it has one, and its own document
    information.

    Objects keep their numbers from the document (pydyf writes generation 0 only) and
    each is serialised once, so the fonts (most of every file) are shared by all the
    pages' files instead of being copied object by object into each (which is what
    pypdf's PdfWriter does); new objects are numbered after the document's."""

    def __init__(self, pdf: bytes):
        self.reader = PdfReader(io.BytesIO(pdf))
        self.first_new = int(self.reader.trailer["/Size"])
        self.objects: dict[int, bytes] = {}
        self.refers: dict[int, list[int]] = {}
        self.backgrounds: dict[int, tuple[bytes, list[int]]] = {}

    def _object(self, number: int) -> None:
        if number not in self.objects:
            obj = self.reader.get_object(number)
            self.objects[number] = b"%d 0 obj\n%b\nendobj\n" % (number, _serialised(obj))
            self.refers[number] = _references(obj)

    def _background(self, index: int) -> tuple[bytes, list[int]]:
        """Page `index` as a form (the body of its object) and the objects it uses."""
        if index not in self.backgrounds:
            page = self.reader.pages[index]
            contents = page["/Contents"].get_object()
            streams = contents if isinstance(contents, ArrayObject) else [contents]
            data = zlib.compress(b"\n".join(s.get_object().get_data() for s in streams))
            resources = _prune_resources(page)
            box = " ".join(_num(float(value)) for value in page.mediabox)
            body = _stream(
                data,
                f" /Filter /FlateDecode /Type /XObject /Subtype /Form /BBox [{box}] /Resources "
                + _serialised(resources).decode("latin-1"),
            )
            self.backgrounds[index] = (body, _references(resources))
        return self.backgrounds[index]

    def page(
        self,
        index: int,
        drawing: str,
        seal: bytes,
        info: dict[str, str],
        background: int | None = None,
    ) -> bytes:
        """Page `index` as a PDF file: page `background` (if any) under it, `drawing`
        (PDF operators, default user space) over it, `seal` (a _seal_form) available to
        it as /Seal."""
        page = self.reader.pages[index]
        new: dict[int, bytes] = {}
        needed, stack = set(), []

        def add(body: bytes) -> int:
            number = self.first_new + len(new)
            new[number] = b"%d 0 obj\n%b\nendobj\n" % (number, body)
            return number

        resources = _prune_resources(page)
        form = add(
            _stream(
                seal,
                " /Filter /FlateDecode /Type /XObject /Subtype /Form /BBox [0 0 200 200] "
                "/Resources << /ExtGState << /Alpha << /ca 0.85 /CA 0.85 >> >> >>",
            )
        )
        xobjects = resources.get("/XObject", DictionaryObject())
        xobjects[NameObject("/Seal")] = IndirectObject(form, 0, None)
        opening = b"q"
        if background is not None:
            body, references = self._background(background)
            xobjects[NameObject("/Background")] = IndirectObject(add(body), 0, None)
            stack.extend(references)
            opening = b"/Background Do q"
        resources[NameObject("/XObject")] = xobjects
        # WeasyPrint's content leaves its coordinate system flipped: wrapped in q ... Q,
        # the drawing starts from the default one.
        contents = page["/Contents"]
        contents = contents if isinstance(contents, ArrayObject) else [contents]
        content = ArrayObject(
            [
                IndirectObject(add(_stream(opening)), 0, None),
                *contents,
                IndirectObject(add(_stream(b"Q\n" + drawing.encode())), 0, None),
            ]
        )
        pages_number = self.first_new + len(new) + 1
        own = DictionaryObject(
            {key: value for key, value in page.items() if key not in PAGE_KEYS_DROPPED}
        )
        own[NameObject("/Parent")] = IndirectObject(pages_number, 0, None)
        own[NameObject("/Resources")] = resources
        own[NameObject("/Contents")] = content
        page_number = add(_serialised(own))
        add(b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % page_number)
        catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_number)
        info_number = add(
            _serialised(
                DictionaryObject(
                    {NameObject(key): TextStringObject(value) for key, value in info.items()}
                )
            )
        )
        stack.extend(_references(own))
        while stack:
            number = stack.pop()
            if number in needed or number in new:
                continue
            needed.add(number)
            self._object(number)
            stack.extend(self.refers[number])

        out = io.BytesIO()
        out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = {}
        for number, body in [*((n, self.objects[n]) for n in sorted(needed)), *new.items()]:
            offsets[number] = out.tell()
            out.write(body)
        xref = out.tell()
        out.write(b"xref\n0 1\n0000000000 65535 f \n")
        numbers = sorted(offsets)
        start = 0
        for end in range(1, len(numbers) + 1):  # one subsection per run of numbers
            if end == len(numbers) or numbers[end] != numbers[end - 1] + 1:
                out.write(b"%d %d\n" % (numbers[start], end - start))
                out.write(b"".join(b"%010d 00000 n \n" % offsets[n] for n in numbers[start:end]))
                start = end
        out.write(
            b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (max(numbers) + 1, catalog, info_number, xref)
        )
        return out.getvalue()


@contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off for the duration.

    A batch allocates millions of small objects (boxes, styles, PDF objects) that stay
    alive until it is written, so every collection triggered meanwhile scans them all
    for nothing: about a tenth of the render. The batch's garbage is collected
    afterwards. Process-wide: a concurrent thread just runs without collections for the
    moment, and whichever finishes last while it was enabled turns it back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _box(anchors: dict, name: str, page_height: float) -> tuple[float, float, float, float]:
    """The box of the element with id `name` (WeasyPrint anchors: CSS px from the top
    left) as (x, y, width, height) in points from the bottom left."""
    x1, y1, x2, y2 = (value * 0.75 for value in anchors[name])
    return x1, page_height - y2, x2 - x1, y2 - y1


# Certificates whose pages differ only in their holder's part share a background page
# (_layers): same template, title, issuer and dates.
SHARED = ("template", "title", "issuer_name", "issued_on", "valid_until", "review_due")
# The holder's part of the field rows, left out of the background (photo, QR code and
# verification address are left out by the template).
HOLDER_FIELDS = ("holder_name", "sex", "id_number", "occupation", "level", "item", "number")


def _layers(contexts: list[dict]) -> list[dict]:
    """Give certificates that differ only in their holder's part a shared background
    page: each becomes a "data" page drawn over it. Returns the background pages'
    contexts (their group's, without a holder), to follow all certificates' pages."""
    groups: dict[tuple, list[dict]] = {}
    for context in contexts:
        groups.setdefault(tuple(context[key] for key in SHARED), []).append(context)
    backgrounds = []
    for members in groups.values():
        if len(members) < 2:  # nothing to share: drawn whole
            continue
        index = len(contexts) + len(backgrounds)
        blank = dict.fromkeys(HOLDER_FIELDS, "")
        backgrounds.append(members[0] | blank | {"layer": "background", "index": index})
        for context in members:
            context.update(layer="data", static=False, background=index)
    return backgrounds


def render_certificates(
    certificates: Sequence[Certificate], *, layered: bool = True
) -> list[bytes]:
    """Unsigned PDFs of `certificates` (issued, with their related rows loaded), one
    file of one page each, rendered as the pages of one WeasyPrint document.

    What certificates of one kind, issuer and date have in common (frames, titles,
    labels, rules, issuer, dates: more than half of each page's layout) is laid out
    once, as a background page that every file draws under its own data page
    (`layered`, certificate.html; _layers), unless a value took more room than on the
    background (a wrapped line): that certificate is drawn whole, in a second
    document."""
    if not certificates:
        return []
    level_names = dict(SkillLevel.objects.values_list("level", "name"))
    photos, contexts = {}, []
    for index, certificate in enumerate(certificates):
        context = certificate_context(certificate, level_names)
        context.update(index=index, layer="full", static=True, background=None)
        if photo := _photo_jpeg(certificate.case.candidate):
            context["photo"] = f"photo:{index}"
            photos[context["photo"]] = photo
        contexts.append(context)
    backgrounds = _layers(contexts) if layered else []
    with _gc_paused():
        html = render_to_string(
            "issuance/pdf/document.html",
            {
                "certificates": contexts + backgrounds,
                "title": certificates[0].type_label if len(certificates) == 1 else "证书",
            },
        )
        document = HTML(string=html, url_fetcher=_Photos(photos)).render()
        if len(document.pages) != len(contexts) + len(backgrounds):
            # A page overflowed into a second one: splitting would mismatch holders and
            # pages.
            raise RuntimeError(
                f"{len(contexts) + len(backgrounds)} pages rendered as {len(document.pages)}"
            )
        pages = document.pages
        splitter = _Splitter(document.write_pdf())
        files: list[bytes | None] = []
        for index, (certificate, context) in enumerate(zip(certificates, contexts, strict=True)):
            anchors, background = pages[index].anchors, context["background"]
            # The bottom of the holder's last row, here and on the background: a value
            # that wrapped (a longer name) moved it, and the rows would no longer meet
            # the background's rules and labels.
            bottom = anchors[f"number-{index}"][3]
            if (
                background is not None
                and bottom != pages[background].anchors[f"number-{background}"][3]
            ):
                files.append(None)
                continue
            height = pages[index].height * 0.75
            seal_x, seal_y, seal_size, _ = _box(anchors, f"seal-{index}", height)
            drawing = "\n".join(
                [
                    _qr_operators(context["verify_url"], _box(anchors, f"qr-{index}", height)),
                    f"q {_num(seal_size / 200)} 0 0 {_num(seal_size / 200)} {_num(seal_x)} "
                    f"{_num(seal_y)} cm /Seal Do Q",
                ]
            )
            info = {
                "/Title": f"{certificate.type_label} {certificate.number}",
                "/Author": certificate.issuer.name,
                "/Creator": "一试多证联合评价系统",
            }
            seal = _seal_form(context["seal_text"])
            files.append(splitter.page(index, drawing, seal, info, background))
    if redo := [certificates[index] for index, pdf in enumerate(files) if pdf is None]:
        whole = iter(render_certificates(redo, layered=False))
        files = [pdf if pdf is not None else next(whole) for pdf in files]
    return files


def render_certificate(certificate: Certificate) -> bytes:
    """One certificate's unsigned PDF."""
    return render_certificates([certificate])[0]


# The size pyHanko reserves for each signer's signature container (hex digits), learnt
# from its first signature in this process: left to estimate it, pyHanko builds and
# throws away a dummy signature before every real one, which doubles the signing time.
_reserved: dict[bytes, int] = {}
SIGNATURE_CONTENTS = re.compile(rb"/Contents\s*<([0-9A-Fa-f]+)>")


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
    signer = signer_for(issuer)
    key = signer.signing_cert.sha256
    reserved = _reserved.get(key)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    pdf_signer = signers.PdfSigner(meta, signer=signer)
    signed = _outside_event_loop(
        lambda: pdf_signer.sign_pdf(writer, bytes_reserved=reserved).getvalue()
    )
    if reserved is None and (found := SIGNATURE_CONTENTS.search(signed, len(pdf))):
        _reserved[key] = len(found.group(1))
    return signed


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


def _stage(certificate: Certificate, pdf: bytes) -> str:
    """Save `pdf` under a name of its own, beside where it is to go: two overlapping runs
    for one certificate (the sweep re-dispatching while a slow render runs, a redelivered
    task) never write, or delete, each other's file."""
    name = f"{pdf_name(certificate)[: -len('.pdf')]}-{secrets.token_hex(8)}.pdf"
    directory, _, file_name = name.rpartition("/")
    return default_storage.save(f"{directory}/{PARTIAL_DIR}/{file_name}", ContentFile(pdf))


def _place(staged: str, name: str, pdf: bytes) -> str:
    """Put the staged file under `name`, replacing whatever is there, and return the name
    it is stored under. Only the run holding the certificate's claim calls this: a file
    already under `name` is no row's (a run that crashed before its claim committed)."""
    try:
        source, target = default_storage.path(staged), default_storage.path(name)
    except NotImplementedError:
        # A storage without local files (an object store) cannot rename: save the bytes
        # again under the final name. The storage may pick another name if one appears
        # meanwhile; the caller records whichever it returns.
        if default_storage.exists(name):
            default_storage.delete(name)
        stored = default_storage.save(name, ContentFile(pdf))
        default_storage.delete(staged)
        return stored
    # The staging folder sits inside the target's, so this is a rename on one file system:
    # a reader of `name` sees the old file or the new one whole, never half of one.
    os.replace(source, target)
    return name


def _claim(certificate: Certificate, staged: str, pdf: bytes) -> bool:
    """Record the staged file as the certificate's PDF, unless another run did first or
    the certificate was revoked meanwhile. True when this call recorded it.

    The conditional UPDATE is the claim: of two runs finishing together exactly one
    changes the row (STYLE.md §4), and only that one moves its file into place and writes
    the audit event. The row stays locked until commit, so the file is in place before
    any reader sees the row name it; a crash before commit leaves the row without a PDF
    (the sweep renders it again) and never names a missing file. The loser deletes only
    its own staged file: a file a row records is never deleted."""
    return _claim_many([(certificate, staged, pdf)]) == 1


def _claim_many(staged_pdfs: list[tuple[Certificate, str, bytes]]) -> int:
    """`_claim` for a rendered batch, each (certificate, staged name, PDF) claimed by its
    own conditional UPDATE, in one transaction with one audit write: a batch takes the
    audit chain's head lock, which the officers' transactions also take, once instead of
    once per PDF. Returns how many this call recorded."""
    events = []
    try:
        with transaction.atomic(durable=True):
            now = timezone.now()
            for certificate, staged, pdf in staged_pdfs:
                name = pdf_name(certificate)
                sha = hashlib.sha256(pdf).hexdigest()
                updated = Certificate.objects.filter(
                    pk=certificate.pk, status=CertificateStatus.ISSUED, pdf_sha256=""
                ).update(pdf=name, pdf_sha256=sha, pdf_size=len(pdf), pdf_rendered_at=now)
                if not updated:
                    continue
                stored = _place(staged, name, pdf)
                if stored != name:
                    Certificate.objects.filter(pk=certificate.pk).update(pdf=stored)
                events.append(
                    event_for(
                        certificate,
                        "certificate.render",
                        changes={
                            "pdf": {"before": "", "after": stored},
                            "pdf_sha256": {"before": "", "after": sha},
                            "pdf_size": {"before": None, "after": len(pdf)},
                        },
                    )
                )
            audit_record_bulk(actor=None, events=events)
    finally:
        # Still there when this run lost, or failed before its file was moved.
        for _, staged, _ in staged_pdfs:
            if default_storage.exists(staged):
                default_storage.delete(staged)
    return len(events)


def _store(certificate: Certificate, pdf: bytes) -> bool:
    return _claim(certificate, _stage(certificate, pdf), pdf)


def pdf_partials_remove(*, older_than_seconds: int = PARTIAL_MAX_AGE) -> int:
    """Delete staged files older than `older_than_seconds`: those of runs killed between
    staging and claiming (a live run's staged file lives for a moment; every render task's
    hard time limit is far below the default age). Returns how many were deleted."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    try:
        issuers, _ = default_storage.listdir("certificates")
    except FileNotFoundError:
        return 0
    removed = 0
    for issuer in issuers:
        directory = f"certificates/{issuer}/{PARTIAL_DIR}"
        try:
            _, files = default_storage.listdir(directory)
        except FileNotFoundError:
            continue
        for file_name in files:
            name = f"{directory}/{file_name}"
            try:
                if default_storage.get_modified_time(name) <= cutoff:
                    default_storage.delete(name)
                    removed += 1
            except FileNotFoundError:  # its run claimed or dropped it meanwhile
                continue
    return removed


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
        staged: list[tuple[Certificate, str, bytes]] = []
        try:
            for certificate, pdf in zip(
                certificates, render_certificates(certificates), strict=True
            ):
                signed = sign_pdf(pdf, certificate.issuer)
                staged.append((certificate, _stage(certificate, signed), signed))
        except BaseException:
            for _, name, _ in staged:  # never claimed: this run's own files
                default_storage.delete(name)
            raise
        recorded += _claim_many(staged)
    return recorded
