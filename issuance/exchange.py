"""Data exchange with the national certificate query (一网通查) and other departments
(issue 4 item 7; DESIGN.md "export_certificates").

Export: the certificates issued in a period (by default the quarter just ended), as CSV
(UTF-8 with BOM, so Excel opens it as UTF-8) and XLSX, one row per certificate with the
header `EXPORT_HEADER`. These files carry full names, ID numbers and numbers: they are
for the exchange with the national platform, never for public pages.

Import: another department's list in the same layout, matched against the held
certificates candidates declared (cases.HeldCertificate); a match is marked verified in
the registry (or rejected when the list shows it revoked). All-or-nothing.
"""

import csv
import io
import os
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse

from audit.services import audit_record
from cases import services as case_services
from cases.models import CertificateKind, HeldCertificate, Verification
from cases.roles import Role, require_role
from catalog.models import QualificationType

from .models import Certificate, CertificateStatus, ExchangeImport

EXPORT_HEADER = (
    "holder_name",
    "id_number",
    "certificate_type",
    "occupation_code",
    "level",
    "number",
    "issuer_code",
    "issue_date",
    "valid_until",
    "status",
    "verification_url",
)
# Columns an imported list must have (the others are optional: another department's
# system may not know our occupation codes or verification links).
IMPORT_REQUIRED = (
    "holder_name",
    "id_number",
    "certificate_type",
    "number",
    "issue_date",
    "valid_until",
    "status",
)
SKILL = "SKILL"
EXPORTED_STATES = (CertificateStatus.ISSUED, CertificateStatus.REVOKED)
_ID_NUMBER = re.compile(r"^\d{17}[\dX]$")
# Columns written as text in XLSX: an ID ending in X or a number with leading zeros must
# not become a number (or, for 18 digits, lose precision) in Excel.
_TEXT_COLUMNS = {"id_number", "number"}
_DATE_COLUMNS = {"issue_date", "valid_until"}


# Export ------------------------------------------------------------------------------


def quarter_bounds(day: date, *, previous: bool = True) -> tuple[date, date]:
    """(first day, last day) of the quarter before the one containing `day` (the beat
    task runs on the 1st of January, April, July and October for the quarter just
    ended), or of the quarter containing `day` with `previous=False`."""
    first = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if previous:
        first -= relativedelta(months=3)
    return first, first + relativedelta(months=3, days=-1)


def certificates_for_export(*, date_from: date, date_to: date) -> QuerySet[Certificate]:
    """Certificates issued on `date_from`..`date_to` (inclusive), including those revoked
    since (their status column says so), in issue order."""
    return (
        Certificate.objects.filter(
            status__in=EXPORTED_STATES, issued_on__gte=date_from, issued_on__lte=date_to
        )
        .select_related("qualification_type", "occupation", "issuer")
        .order_by("issued_on", "pk")
    )


def export_rows(certificates: Iterable[Certificate]) -> Iterator[tuple]:
    """One tuple per certificate, in `EXPORT_HEADER` order (the header itself is not
    yielded; the writers add it). `id_number` is the holder's full ID number, unmasked:
    the national query matches on it, so this output is for the exchange with the
    national platform only, never for a public page. `level` is empty for qualification
    certificates; dates are `date` objects (None when the certificate has no expiry)."""
    base = settings.PUBLIC_BASE_URL
    if isinstance(certificates, QuerySet):
        certificates = certificates.iterator(chunk_size=2000)
    for c in certificates:
        yield (
            c.holder_name,
            c.holder_id_number,
            c.type_code,
            c.occupation.code,
            c.level if c.kind == CertificateKind.SKILL else None,
            c.number,
            c.issuer.code,
            c.issued_on,
            c.valid_until,
            c.status,
            base + reverse("issuance:verify-code", args=[c.verification_code]),
        )


def _replace_atomically(path: Path, write) -> None:
    # Write beside the target and rename: a reader (or a beat task rerun) never sees a
    # half-written file under the deterministic name.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def write_csv(rows: Iterable[tuple], path) -> int:
    """Write `EXPORT_HEADER` and `rows` as CSV in UTF-8 with BOM; returns the row count."""
    count = 0

    def write(target: Path) -> None:
        nonlocal count
        with open(target, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(EXPORT_HEADER)
            for row in rows:
                writer.writerow([_csv_value(v) for v in row])
                count += 1

    _replace_atomically(Path(path), write)
    return count


def write_xlsx(rows: Iterable[tuple], path) -> int:
    """Write `EXPORT_HEADER` (bold) and `rows` to one XLSX sheet; ID and certificate
    numbers as text cells, dates as dates shown YYYY-MM-DD. Returns the row count."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    count = 0

    def write(target: Path) -> None:
        nonlocal count
        workbook = Workbook(write_only=True)  # streams rows: a quarter may be large
        sheet = workbook.create_sheet("certificates")
        widths = {"holder_name": 12, "id_number": 21, "number": 26, "verification_url": 60}
        for index, name in enumerate(EXPORT_HEADER, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = widths.get(name, 14)
        bold = Font(bold=True)
        header = []
        for name in EXPORT_HEADER:
            cell = WriteOnlyCell(sheet, value=name)
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for row in rows:
            cells = []
            for name, value in zip(EXPORT_HEADER, row, strict=True):
                cell = WriteOnlyCell(sheet, value=value)
                if name in _TEXT_COLUMNS:
                    cell.number_format = "@"
                elif name in _DATE_COLUMNS:
                    cell.number_format = "yyyy-mm-dd"
                cells.append(cell)
            sheet.append(cells)
            count += 1
        workbook.save(target)

    _replace_atomically(Path(path), write)
    return count


def certificates_export(*, date_from: date, date_to: date, path, fmt: str = "csv") -> int:
    """Write the certificates issued in the period to `path` as `fmt` (csv or xlsx);
    returns the row count. Idempotent: the same period rewrites the same content."""
    writer = {"csv": write_csv, "xlsx": write_xlsx}[fmt]
    return writer(export_rows(certificates_for_export(date_from=date_from, date_to=date_to)), path)


# Import ------------------------------------------------------------------------------


def _read_table(data: bytes, name: str) -> list[list]:
    """All rows of an XLSX (first sheet) or CSV (UTF-8, BOM optional) file."""
    if name.lower().endswith(".xlsx") or data[:2] == b"PK":
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            sheet = workbook.worksheets[0]
            # In read-only mode openpyxl trusts the recorded dimension and stops there; a
            # writer that recorded too few rows must not make us read part of the list.
            sheet.reset_dimensions()
            table = [list(r) for r in sheet.iter_rows(values_only=True)]
            workbook.close()
        except Exception:  # openpyxl raises many types on malformed parts
            raise ValidationError({"file": ["无法读取 XLSX 文件，请确认文件格式"]}) from None
        return table
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError({"file": ["CSV 文件须为 UTF-8 编码"]}) from None
    return list(csv.reader(io.StringIO(text)))


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a number typed into Excel as a number
    return str(value).strip()


def _date(value) -> date | None:
    """A cell as a date: an XLSX date cell, or text YYYY-MM-DD; None when empty.
    Raises ValueError when it is neither."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value)
    if not text:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(text)
    return date.fromisoformat(text)


class _Rows:
    """Parsed import rows, and the problems found, each naming its row and column."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, row: int, column: str, message: str) -> None:
        self.problems.append(f"第 {row} 行「{column}」：{message}")


def _parse(table: list[list]) -> list[dict]:
    """Check every row; raise one ValidationError listing every problem, or return the
    rows as dicts (with "row" = the spreadsheet row number, header being row 1)."""
    if not table:
        raise ValidationError({"file": ["第 1 行：文件为空，缺少表头"]})
    header = [_text(h) for h in table[0]]
    missing = [c for c in IMPORT_REQUIRED if c not in header]
    if missing:
        raise ValidationError({"file": [f"第 1 行：缺少列「{c}」" for c in missing]})
    position = {name: header.index(name) for name in IMPORT_REQUIRED}
    known_types = set(QualificationType.objects.values_list("code", flat=True)) | {SKILL}
    found = _Rows()
    rows: list[dict] = []
    seen: dict[tuple[str, str], int] = {}
    for number, cells in enumerate(table[1:], start=2):
        if all(_text(c) == "" for c in cells):
            continue  # blank lines at the end of a hand-edited sheet
        raw = {name: (cells[i] if i < len(cells) else None) for name, i in position.items()}
        row = {"row": number}
        for column in ("holder_name", "id_number", "certificate_type", "number", "status"):
            row[column] = _text(raw[column])
            if not row[column]:
                found.problem(number, column, "不能为空")
        row["id_number"] = row["id_number"].upper()
        row["number"] = row["number"].upper()
        if row["id_number"] and not _ID_NUMBER.match(row["id_number"]):
            found.problem(number, "id_number", "身份证号码应为 18 位")
        if row["certificate_type"] and row["certificate_type"] not in known_types:
            found.problem(
                number, "certificate_type", f"未知的证书类型代码「{row['certificate_type']}」"
            )
        if row["status"] and row["status"] not in EXPORTED_STATES:
            found.problem(number, "status", "状态应为 issued 或 revoked")
        for column in ("issue_date", "valid_until"):
            try:
                row[column] = _date(raw[column])
            except ValueError:
                row[column] = None
                found.problem(number, column, "日期格式应为 YYYY-MM-DD")
            else:
                if column == "issue_date" and row[column] is None:
                    found.problem(number, column, "不能为空")
        if row["issue_date"] and row["valid_until"] and row["valid_until"] < row["issue_date"]:
            found.problem(number, "valid_until", "有效期至不能早于发证日期")
        # The same certificate twice (e.g. issued, then revoked) is ambiguous: refuse it.
        key = (row["certificate_type"], row["number"], row["id_number"])
        if all(key):
            if key in seen:
                found.problem(number, "number", f"与第 {seen[key]} 行重复")
            else:
                seen[key] = number
        rows.append(row)
    if found.problems:
        raise ValidationError({"file": found.problems})
    return rows


def _matches(rows: list[dict]) -> list[tuple[HeldCertificate, str]]:
    """Held certificates with the same type code and number whose candidate's ID number
    is the row's, with the verification the row implies."""
    by_key = {
        (r["certificate_type"], r["number"], r["id_number"]): r
        for r in rows
        if r["certificate_type"] != SKILL
    }
    # By pk: a certificate fetched by two chunks' IN lists is counted once.
    found: dict[int, tuple[HeldCertificate, str]] = {}
    keys = sorted(by_key)
    for start in range(0, len(keys), 500):  # bounded IN lists
        chunk = keys[start : start + 500]
        held_rows = HeldCertificate.objects.filter(
            qualification_type__code__in={key[0] for key in chunk},
            number__in={key[1] for key in chunk},
        ).select_related("candidate", "qualification_type")
        for held in held_rows.order_by("pk"):
            row = by_key.get((held.qualification_type.code, held.number, held.candidate.id_number))
            if row is None:
                continue
            revoked = row["status"] == CertificateStatus.REVOKED
            found[held.pk] = (held, Verification.REJECTED if revoked else Verification.REGISTRY)
    return list(found.values())


@transaction.atomic(durable=True)
def registry_import(*, actor, file, source: str, name: str = "") -> ExchangeImport:
    """Import another department's certificate list (`file`: bytes, a path or a file
    object; CSV in UTF-8 with or without BOM, or XLSX; the export's header, with at
    least `IMPORT_REQUIRED`) and mark each matching held certificate (same type code and
    number, candidate's ID number equal to the row's) verified in the registry, or
    rejected when the row's status is revoked.

    Coordinator or admin. All-or-nothing: any malformed row raises ValidationError
    listing "第 N 行「column」：problem" and nothing is written. Records an
    ExchangeImport (rows, matched) and one `exchange.import` audit event; each changed
    held certificate is audited by cases.services.held_certificates_verify_from_registry,
    which locks them. Re-importing the same list changes no held certificate again."""
    require_role(actor, Role.COORDINATOR)
    source = (source or "").strip()
    if not source:
        raise ValidationError({"source": ["请填写来源部门"]})
    if isinstance(file, bytes):
        data = file
    elif isinstance(file, str | os.PathLike):
        data = Path(file).read_bytes()
        name = name or Path(file).name
    else:
        data = file.read()
        name = name or Path(getattr(file, "name", "") or "").name
    rows = _parse(_read_table(data, name))
    matches = _matches(rows)
    record = ExchangeImport.objects.create(
        source=source, file_name=name[:255], rows=len(rows), matched=len(matches), created_by=actor
    )
    changed = []
    if matches:
        changed = case_services.held_certificates_verify_from_registry(
            actor=actor,
            matches=matches,
            note=f"证书库核验：{source}《{name}》（导入 #{record.pk}）",
        )
    audit_record(
        actor=actor,
        instance=record,
        action="exchange.import",
        changes={
            "source": {"before": None, "after": source},
            "file_name": {"before": None, "after": record.file_name},
            "rows": {"before": None, "after": record.rows},
            "matched": {"before": None, "after": record.matched},
            "changed": {"before": None, "after": len(changed)},
        },
    )
    return record
