"""Bulk registration of candidates with their held certificates from an XLSX file.

The file format is the one `template_workbook()` produces (it is the contract, and the
template's 说明 sheet documents it): sheet 考生, the header in row 1, one candidate per
row, and up to CERT_SLOTS held certificates in column groups 证书1…, 证书2…. A file
without a sheet named 考生 is read from its first sheet.

All-or-nothing per file. Every row is validated with the rules of cases.services and
cases.validators (parse_id_number, held_certificate_problems, each model's field rules
and clean()), collecting every problem as (row as shown in Excel, column header, reason
in Chinese). Only a clean file is written: in one transaction, with bulk inserts and one
audit event per candidate (`candidate.create`) and per certificate
(`held_certificate.create`) carrying the same field snapshots the single-create
services record. Existing ID and certificate numbers are fetched with one query each,
never one per row. No model instance is built per row: cells are read by config.xlsx,
rows written by config.bulk and audited by audit_record_bulk.

Large files use both cores: a forked helper process validates parts of the file while
this one reads the rest (`_Helper`; the errors are those one process finds, in the same
order). bench/README.md ("import") has the figures.

Jobs: `import_job_create` stores the upload and queues `cases.tasks.candidate_import_run`
on commit; `import_job_run` (the task body) claims the job, validates and writes.
"""

import contextlib
import json
import logging
import multiprocessing.connection
import os
import queue
import re
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from io import BytesIO
from types import SimpleNamespace
from typing import Any, NamedTuple
from uuid import uuid4
from xml.parsers import expat

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import Max, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from stdnum.cn import ric

from audit.masking import mask_id_number, mask_ids_in
from audit.services import CanonicalJSON, Event, audit_record_bulk, json_text
from catalog.models import Occupation, QualificationType
from config.bulk import insert_rows
from config.xlsx import UnsafeXML, open_workbook, sheet_rows

from .models import (
    Candidate,
    Education,
    HeldCertificate,
    ImportJob,
    ImportJobStatus,
    WorkExperience,
)
from .roles import Role
from .services import CANDIDATE_FIELDS, HELD_FIELDS, held_certificate_problems, require_role
from .validators import parse_id_number, region_codes


def education_labels_zh() -> dict[str, str]:
    """{value: Chinese label}: the file format is Chinese whatever the page language."""
    with translation.override("zh-hans"):
        return {value: str(label) for value, label in Education.choices}


logger = logging.getLogger(__name__)

SHEET_TITLE = "考生"
HELP_TITLE = "说明"
CERT_SLOTS = 2

NAME, ID_NUMBER, PHONE, EDUCATION = "姓名", "身份证号码", "联系电话", "文化程度"
# Occupation codes are the catalog's stable interface (catalog migration 0002).
WORK_YEARS_COLUMNS = {"电工从业年限": "6-31-01-03", "焊工从业年限": "6-18-02-04"}
CERT_PARTS = ("类型代码", "编号", "发证机关", "发证日期", "有效期至", "下次复审日期")
OPTIONAL_CERT_PARTS = ("有效期至", "下次复审日期")


def cert_column(slot: int, part: str) -> str:
    return f"证书{slot}{part}"


COLUMNS = [
    NAME,
    ID_NUMBER,
    PHONE,
    EDUCATION,
    *WORK_YEARS_COLUMNS,
    *(cert_column(slot, part) for slot in range(1, CERT_SLOTS + 1) for part in CERT_PARTS),
]
_COLUMN_ORDER = {name: index for index, name in enumerate(COLUMNS)}
_CERT_COLUMNS = {
    slot: {part: cert_column(slot, part) for part in CERT_PARTS}
    for slot in range(1, CERT_SLOTS + 1)
}

# Which column a model field's error belongs to. Sex and birth date come from the ID.
CANDIDATE_FIELD_COLUMNS = {
    "id_number": ID_NUMBER,
    "sex": ID_NUMBER,
    "birth_date": ID_NUMBER,
    "name": NAME,
    "phone": PHONE,
    "education": EDUCATION,
}
HELD_FIELD_PARTS = {
    "qualification_type": "类型代码",
    "number": "编号",
    "issuer_name": "发证机关",
    "issue_date": "发证日期",
    "expiry_date": "有效期至",
    "review_due_date": "下次复审日期",
}

NOT_XLSX = "文件不是有效的 XLSX 工作簿"
# A legitimate sheet of IMPORT_MAX_ROWS rows unpacks to tens of MB; far more is a zip bomb.
MAX_UNPACKED_RATIO = 20
PROGRESS_EVERY = 500
# IN-list chunk: below SQLite's historical 999-parameter limit.
LOOKUP_CHUNK = 900

_DATE_RE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")


@dataclass(frozen=True)
class RowError:
    """One problem: `row` as numbered in Excel (None for the whole file), the column
    header ("" for the whole file or row), the reason in Chinese."""

    row: int | None
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class ImportResult:
    total_rows: int = 0
    created: int = 0
    held_created: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class FileProblem(Exception):
    """The file as a whole cannot be imported (not XLSX, too large, too many rows)."""

    def __init__(self, message: str, row: int | None = None, column: str = ""):
        super().__init__(message)
        self.errors = [RowError(row, column, message)]


class CellProblem(Exception):
    pass


class _Row(NamedTuple):
    """A validated row as plain values, with the text of its audit events: no model
    instance is built for it (a 50,000-row file would spend seconds in Model.__init__
    alone; bench/README.md). Only text, numbers and None, dates and decimals as their
    text (what the audit records; the inserts' fields read them back): such tuples are
    several times cheaper to send between processes than dates and Decimals."""

    excel_row: int
    candidate: tuple  # values of CANDIDATE_COLUMNS
    changes: str  # the candidate.create event's changes, as CanonicalJSON text
    repr: str  # str() of the candidate
    work_years: list[tuple[str, str]]  # (occupation code, years) by code
    held: list[tuple[tuple, str, str]]  # (values of HELD_COLUMNS, changes, repr) each


def _plain(value):
    # A date as the ISO text the audit records and DateField.to_python reads back.
    return value.isoformat() if isinstance(value, date) else value


ProgressCallback = Callable[[int, int], None]


# Template -----------------------------------------------------------------------------

_HEADER_NOTES = {
    NAME: "必填，与身份证一致",
    ID_NUMBER: "必填，18位，末位可为X。请保持文本格式，数字格式会丢失末几位。"
    "出生日期和性别由身份证号码得出",
    PHONE: "必填，11位手机号码或带区号的固定电话",
    EDUCATION: "必填，从下拉列表选择",
    **dict.fromkeys(WORK_YEARS_COLUMNS, "本职业从业年限（年），可留空或填小数，如 2.5"),
}


def template_workbook() -> bytes:
    """The downloadable template: sheet 考生 (headers with notes, dropdowns for 文化程度
    and 证书类型代码, text format for numbers that must keep their digits) and sheet
    说明 (the rules, the allowed values and an example)."""
    qtypes = list(QualificationType.objects.order_by("code"))
    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE
    help_ws = wb.create_sheet(HELP_TITLE)

    header_fill = PatternFill("solid", fgColor="DDEBF7")
    cert_fill = PatternFill("solid", fgColor="FCE4D6")
    for index, column in enumerate(COLUMNS, start=1):
        cell = ws.cell(row=1, column=index, value=column)
        cell.font = Font(bold=True)
        cell.fill = cert_fill if column.startswith("证书") else header_fill
        cell.alignment = Alignment(horizontal="center")
        note = _HEADER_NOTES.get(column) or _cert_note(column)
        cell.comment = Comment(note, "一试多证")
        letter = get_column_letter(index)
        ws.column_dimensions[letter].width = max(12, len(column) * 2 + 4)
        if column in {ID_NUMBER, PHONE} or column.endswith("编号"):
            # Column style, not cell style: new cells typed in Excel become text, and no
            # empty styled cells enlarge the sheet's dimension.
            ws.column_dimensions[letter].number_format = "@"
        elif column.endswith(("日期", "有效期至")):
            ws.column_dimensions[letter].number_format = "yyyy-mm-dd"
    ws.column_dimensions[get_column_letter(COLUMNS.index(ID_NUMBER) + 1)].width = 22
    ws.freeze_panes = "C2"

    # 说明 sheet: rules, then the value lists the dropdowns refer to.
    lines = [
        "考生批量登记模板（一试多证）",
        "",
        f"1. 在「{SHEET_TITLE}」工作表中每行填写一名考生，第1行为表头，请勿修改或删除表头。",
        "2. 出生日期和性别由身份证号码自动得出，无需填写。",
        f"3. 每名考生最多填写 {CERT_SLOTS} 本已持证书（证书1…、证书2…各列）；没有证书的留空整组。",
        "4. 证书编号须符合证书类型的编号规则；特种作业操作证编号为 T + 持证人身份证号码。",
        "5. 有效期至可留空，按证书类型的有效期自动计算；下次复审日期可留空。",
        "6. 日期格式：2024-03-15（也接受 2024/3/15、2024年3月15日）。",
        "7. 整个文件全部通过校验才会导入；有任何错误时不写入任何数据，"
        "错误报告列出行号、列名和原因。",
        f"8. 单个文件最多 {settings.IMPORT_MAX_ROWS} 行考生，"
        f"不超过 {settings.IMPORT_MAX_BYTES // (1024 * 1024)} MB。",
        "",
    ]
    for line in lines:
        help_ws.append([line])
    help_ws["A1"].font = Font(bold=True, size=14)
    help_ws.column_dimensions["A"].width = 24
    help_ws.column_dimensions["B"].width = 44
    help_ws.column_dimensions["C"].width = 60

    help_ws.append(["文化程度（可选值）"])
    help_ws.cell(row=help_ws.max_row, column=1).font = Font(bold=True)
    education_first = help_ws.max_row + 1
    for label in education_labels_zh().values():
        help_ws.append([label])
    education_last = help_ws.max_row
    help_ws.append([])
    help_ws.append(["证书类型代码", "名称", "证书编号规则"])
    for cell in help_ws[help_ws.max_row]:
        cell.font = Font(bold=True)
    codes_first = help_ws.max_row + 1
    for qtype in qtypes:
        help_ws.append([qtype.code, qtype.name, qtype.number_format])
    codes_last = help_ws.max_row
    help_ws.append([])
    help_ws.append(["示例（请在「考生」工作表中填写，勿在此处填写）"])
    help_ws.cell(row=help_ws.max_row, column=1).font = Font(bold=True)
    example_id = "110105199005170011"
    help_ws.append(COLUMNS[:12])
    help_ws.append(
        [
            "张三",
            example_id,
            "13800138000",
            "高中/中专/技校",
            3,
            0.5,
            "MEM-ELEC-LV",
            f"T{example_id}",
            "北京市朝阳区应急管理局",
            "2024-03-15",
            "",
            "",
        ]
    )

    limit = max(settings.IMPORT_MAX_ROWS, 1) + 1
    education_rule = DataValidation(
        type="list",
        formula1=f"'{HELP_TITLE}'!$A${education_first}:$A${education_last}",
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="文化程度",
        error="请从下拉列表中选择",
    )
    letter = get_column_letter(COLUMNS.index(EDUCATION) + 1)
    education_rule.add(f"{letter}2:{letter}{limit}")
    ws.add_data_validation(education_rule)
    if qtypes:
        code_rule = DataValidation(
            type="list",
            formula1=f"'{HELP_TITLE}'!$A${codes_first}:$A${codes_last}",
            allow_blank=True,
            showErrorMessage=True,
            errorTitle="证书类型代码",
            error="请从下拉列表中选择证书类型代码",
        )
        for slot in range(1, CERT_SLOTS + 1):
            letter = get_column_letter(COLUMNS.index(cert_column(slot, "类型代码")) + 1)
            code_rule.add(f"{letter}2:{letter}{limit}")
        ws.add_data_validation(code_rule)

    buffer = BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def _cert_note(column: str) -> str:
    part = column[3:]
    return {
        "类型代码": "证书类型代码，从下拉列表选择，如 MEM-ELEC-LV；无证书则整组留空",
        "编号": "证书编号，须符合该类型的编号规则（见「说明」）",
        "发证机关": "发证机关全称",
        "发证日期": "日期，如 2024-03-15",
        "有效期至": "可留空：按证书类型的有效期自动计算",
        "下次复审日期": "可留空",
    }.get(part, "")


# Reading cells ------------------------------------------------------------------------


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value) -> str:
    """A cell as text. Whole numbers are accepted (a phone typed as a number)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, datetime | date)):
        raise CellProblem("应为文本")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    raise CellProblem("应为文本")


def _id_text(value) -> str:
    # Excel keeps 15 significant digits: an 18-digit ID stored as a number has lost its
    # last digits, which no check digit can recover.
    if isinstance(value, float):
        raise CellProblem("身份证号码须以文本格式填写（数字格式会丢失末几位）")
    return _text(value)


def _decimal(value) -> Decimal | None:
    if _is_blank(value):
        return None
    if isinstance(value, (bool, datetime | date)):
        raise CellProblem("应为数字（年），如 3 或 2.5")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise CellProblem("应为数字（年），如 3 或 2.5") from None
    if not number.is_finite():
        raise CellProblem("应为数字（年），如 3 或 2.5")
    return number


def _date(value) -> date | None:
    if _is_blank(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        match = _DATE_RE.match(value.strip())
        if match:
            try:
                return date(*(int(part) for part in match.groups()))
            except ValueError:
                raise CellProblem(f"{value.strip()} 不是有效的日期") from None
    raise CellProblem("应为日期，如 2024-03-15")


# Opening the workbook -----------------------------------------------------------------


def _read_bytes(file) -> bytes:
    limit = settings.IMPORT_MAX_BYTES
    if isinstance(file, bytes | bytearray):
        data = bytes(file)
    else:
        if hasattr(file, "seek"):
            file.seek(0)
        data = file.read(limit + 1)
    if len(data) > limit:
        raise FileProblem(f"文件不能超过 {limit // (1024 * 1024)} MB")
    return data


def _open_workbook(data: bytes):
    if not data.startswith(b"PK") or not zipfile.is_zipfile(BytesIO(data)):
        raise FileProblem(NOT_XLSX)
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FileProblem(NOT_XLSX) from None
    if unpacked > max(settings.IMPORT_MAX_BYTES, 1024 * 1024) * MAX_UNPACKED_RATIO:
        raise FileProblem(f"{NOT_XLSX}（解压后过大）")
    try:
        # Read-only, formulas' cached values; rows are streamed by _sheet_rows.
        return open_workbook(data)
    except Exception:  # openpyxl raises many types on malformed parts
        logger.info("upload is not a readable XLSX workbook", exc_info=True)
        raise FileProblem(NOT_XLSX) from None


def _sheet_rows(sheet) -> Iterator[tuple[int, list]]:
    """(Excel row number, values) from row 1 on; a sheet whose XML breaks off or is
    malformed halfway is refused as a whole (FileProblem), never imported in part."""
    try:
        yield from sheet_rows(sheet)
    except (expat.ExpatError, UnsafeXML, ValueError, IndexError, KeyError, zipfile.BadZipFile):
        logger.info("worksheet %r is not readable", sheet.title, exc_info=True)
        raise FileProblem(NOT_XLSX) from None


def _data_sheet(workbook):
    if SHEET_TITLE in workbook.sheetnames:
        return workbook[SHEET_TITLE]
    sheets = [ws for ws in workbook.worksheets if ws.title != HELP_TITLE]
    if not sheets:
        raise FileProblem(f"工作簿中没有名为「{SHEET_TITLE}」的工作表")
    return sheets[0]


def _check_row_limit(sheet) -> int | None:
    """Refuse an oversized sheet from its recorded dimension, before parsing any row.

    Returns the estimated number of data rows (None when the writer recorded no
    dimension). Afterwards the recorded dimension is dropped: in read-only mode openpyxl
    stops at the recorded last row, and a writer that recorded too few rows must not make
    us import part of a file silently. Rows are then counted while reading."""
    limit = settings.IMPORT_MAX_ROWS
    recorded = sheet.max_row
    if recorded is not None and recorded - 1 > limit:
        raise FileProblem(
            f"工作表共 {recorded} 行（含表头），超过单次导入上限 {limit} 行；"
            "请删除多余的空行或拆分后分批导入"
        )
    sheet.reset_dimensions()
    return max(recorded - 1, 0) if recorded is not None else None


def _header_map(header: tuple) -> tuple[dict[str, int], list[RowError]]:
    positions: dict[str, int] = {}
    errors = []
    for index, value in enumerate(header):
        name = str(value).strip() if value is not None else ""
        if not name:
            continue
        if name in positions and name in _COLUMN_ORDER:
            errors.append(RowError(1, name, "表头重复"))
            continue
        positions.setdefault(name, index)
    for name in COLUMNS:
        if name not in positions:
            errors.append(RowError(1, name, f"缺少必需的列「{name}」（请使用系统提供的模板）"))
    return positions, errors


# Validation ---------------------------------------------------------------------------

_EMPTY_CODES = {"blank", "null", "required"}
# Never validated from the file: foreign keys are the actor and catalog rows fetched once
# (validating one is a query per row), the photo is not imported.
CANDIDATE_EXCLUDED = {"created_by", "photo"}
HELD_EXCLUDED = {"candidate", "qualification_type", "verified_by"}
_EDUCATION_VALUES = frozenset(Education.values)
_ID_FORMAT = re.compile(r"[0-9]{17}[0-9X]")


def _field_errors(exc: ValidationError) -> Iterator[tuple[str | None, str | None, str]]:
    """(field, code, message) of a model's ValidationError."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            for error in errors:
                for message in error.messages:
                    yield name, error.code, message
    else:
        for error in exc.error_list:
            for message in error.messages:
                yield None, error.code, message


def parse_id_number_fast(raw: str, today: date) -> tuple[str, date, str] | None:
    """parse_id_number's result for an ID number that is plainly valid, else None (the
    caller then asks parse_id_number, for the result or its exact message).

    Accepts only what parse_id_number accepts: 18 ASCII characters, 17 digits and a
    digit or X, stdnum's check digit, a real birth date not after `today` and a known
    region code (`region_codes`). parse_id_number also accepts spaces that stdnum
    compacts away; those go the slow way. tests/cases/test_imports.py checks the two
    agree on valid and broken numbers."""
    number = raw.upper()
    if not _ID_FORMAT.fullmatch(number) or number[:6] not in region_codes():
        return None
    if number[17] != ric.calc_check_digit(number):
        return None
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    if birth > today:
        return None
    return number, birth, "M" if int(number[16]) % 2 == 1 else "F"


class _ModelRules:
    """A model's full_clean(exclude=..., validate_unique=False,
    validate_constraints=False) for values given as a dict, without an instance.

    The same checks in the same order: each field's own clean() (to_python, choices,
    blank, validators) skipping blank values of blank=True fields as clean_fields does,
    then the model's clean() run on the cleaned values. Results for the fields in
    `repeated` (a file repeats a handful of dates, codes and labels thousands of times)
    are remembered per value: a field's clean() depends on the value alone."""

    def __init__(self, model: type[models.Model], *, repeated: set[str], excluded: set[str]):
        # `excluded`: fields every call excludes (foreign keys, the photo); their values
        # still reach the model's clean(), as on an instance.
        self.constant = {}
        self.fields = []
        for f in model._meta.fields:
            if f.generated:
                continue
            default = f.get_default()
            if f.name in excluded:
                self.constant[f.attname] = default
            else:
                self.fields.append((f, f.name, f.attname, default, f.blank, f.name in repeated))
        self.model_clean = model.clean if model.clean is not models.Model.clean else None
        self.seen: dict[tuple, tuple[Any, ValidationError | None]] = {}

    @staticmethod
    def _clean(field: models.Field, value):
        try:
            return field.clean(value, None), None
        except ValidationError as exc:
            return value, exc

    def problems(self, values: dict[str, Any], exclude: set[str]) -> ValidationError | None:
        errors: dict[str, list] = {}
        cleaned = {}
        for f, name, attname, default, blank, repeated in self.fields:
            value = values.get(attname, default)
            cleaned[attname] = value
            if name in exclude or (blank and value in f.empty_values):
                continue
            # A field the file never fills holds its default: checked once.
            if repeated or attname not in values:
                key = (name, value.__class__, value)
                outcome = self.seen.get(key)
                if outcome is None:
                    outcome = self.seen[key] = self._clean(f, value)
            else:
                outcome = self._clean(f, value)
            cleaned[attname], error = outcome
            if error is not None:
                errors[name] = error.error_list
        if self.model_clean is not None:
            try:
                self.model_clean(SimpleNamespace(**self.constant, **cleaned))
            except ValidationError as exc:
                errors = exc.update_error_dict(errors)
        return ValidationError(errors) if errors else None


class _Holder:
    """What held_certificate_problems reads of the candidate: the ID number."""

    __slots__ = ("id_number",)

    def __init__(self, id_number: str):
        self.id_number = id_number


class _Validator:
    """Validates rows one by one (`row`), noting where each ID and certificate number
    occurs; then `duplicates` reports the numbers a file repeats and `against_database`
    those already registered.

    Each row's checks depend on that row alone, so a file's rows can be validated in
    parts, in any process (`part`), and put together in file order: every duplicate is
    reported from the occurrences of the whole file, after the rows' own problems, which
    is where a row-by-row check would have put it (it was each cell's last check)."""

    def __init__(self, actor):
        self.actor = actor
        self.errors: list[RowError] = []
        self.rows: list[_Row] = []
        # Where numbers occur, in file order: (ID number, row) and
        # ((qualification type id, certificate number), row, column).
        self.id_seen: list[tuple[str, int]] = []
        self.number_seen: list[tuple[tuple[int, str], int, str]] = []
        self.candidate_changes = _CreateChanges(Candidate, CANDIDATE_FIELDS, CANDIDATE_COLUMNS)
        region_codes()  # read once here, before a helper process is forked
        self.held_changes = _CreateChanges(HeldCertificate, HELD_FIELDS, HELD_COLUMNS)
        self.qtypes = {q.code: q for q in QualificationType.objects.all()}
        self.occupations = {
            o.code: o for o in Occupation.objects.filter(code__in=WORK_YEARS_COLUMNS.values())
        }
        self.education = {label: value for value, label in education_labels_zh().items()}
        self.education.update({value: value for value in Education.values})
        self.id_rows: dict[str, int] = {}
        # (qualification type id, number) -> (row, column) where first seen
        self.number_cells: dict[tuple[int, str], tuple[int, str]] = {}
        self._years_checked: dict[str, ValidationError | None] = {}
        self.today = timezone.localdate()
        self.candidate_rules = _ModelRules(
            Candidate, repeated={"sex", "birth_date", "education"}, excluded=CANDIDATE_EXCLUDED
        )
        self.held_rules = _ModelRules(
            HeldCertificate,
            repeated={"issuer_name", "issue_date", "expiry_date", "review_due_date"},
            excluded=HELD_EXCLUDED,
        )
        self._expiry: dict[tuple[int, date], date] = {}

    def error(self, row: int | None, column: str, message: str) -> None:
        # The report is stored and shown to other coordinators: no full ID numbers
        # (MEM certificate numbers embed them), by the one masking rule.
        self.errors.append(RowError(row, column, mask_ids_in(message)))

    def model_errors(self, row: int, exc: ValidationError, column_for) -> None:
        for name, code, message in _field_errors(exc):
            column = column_for(name)
            self.error(row, column, f"请填写{column}" if code in _EMPTY_CODES else message)

    def work_years_problems(self, years: Decimal) -> ValidationError | None:
        """WorkExperience's field rules for `years`. A file repeats a handful of values,
        so each distinct value is checked once (the rules depend on the value alone).
        Keyed by text: Decimal("3") == Decimal("3.00"), but only one has two places."""
        key = str(years)
        if key not in self._years_checked:
            try:
                WorkExperience(years=years).full_clean(
                    exclude=["candidate", "occupation"],
                    validate_unique=False,
                    validate_constraints=False,
                )
            except ValidationError as exc:
                self._years_checked[key] = exc
            else:
                self._years_checked[key] = None
        return self._years_checked[key]

    def row(self, excel_row: int, cells: dict[str, Any]) -> None:
        errors_before = len(self.errors)
        failed: set[str] = set()

        def cell(column: str, convert):
            try:
                return convert(cells.get(column))
            except CellProblem as exc:
                self.error(excel_row, column, str(exc))
                failed.add(column)
                return None

        name = cell(NAME, _text) or ""
        raw_id = cell(ID_NUMBER, _id_text) or ""
        phone = cell(PHONE, _text) or ""
        education_text = cell(EDUCATION, _text) or ""

        number, birth, sex = raw_id.upper(), None, ""
        if ID_NUMBER not in failed:
            if not raw_id:
                self.error(excel_row, ID_NUMBER, f"请填写{ID_NUMBER}")
                failed.add(ID_NUMBER)
            else:
                parsed = parse_id_number_fast(raw_id, self.today)
                try:
                    number, birth, sex = parsed or parse_id_number(raw_id)
                except ValidationError as exc:
                    for message in exc.messages:
                        self.error(excel_row, ID_NUMBER, message)
                    failed.add(ID_NUMBER)
        education = self.education.get(education_text, education_text)
        if education_text and education not in _EDUCATION_VALUES:
            self.error(
                excel_row,
                EDUCATION,
                f"文化程度应为以下之一：{'、'.join(education_labels_zh().values())}",
            )
            failed.add(EDUCATION)

        # Built as candidate_create builds it, and checked by the model's own field rules.
        candidate = {
            "id_number": number,
            "name": name,
            "sex": sex,
            "birth_date": birth,
            "phone": phone,
            "education": education,
        }
        exclude = {f for f, column in CANDIDATE_FIELD_COLUMNS.items() if column in failed}
        problems = self.candidate_rules.problems(candidate, exclude)
        if problems is not None:
            self.model_errors(excel_row, problems, lambda f: CANDIDATE_FIELD_COLUMNS.get(f, NAME))

        if ID_NUMBER not in failed:
            self.id_seen.append((number, excel_row))

        work_years: list[tuple[str, str]] = []
        for column, code in WORK_YEARS_COLUMNS.items():
            years = cell(column, _decimal)
            if years is None:
                continue
            if code not in self.occupations:
                self.error(excel_row, column, f"未知的职业编码：{code}")
                continue
            problems = self.work_years_problems(years)
            if problems is not None:
                self.model_errors(excel_row, problems, lambda f, column=column: column)
                continue
            work_years.append((code, str(years)))

        held = []
        holder = _Holder(number)
        for slot in range(1, CERT_SLOTS + 1):
            certificate = self.certificate(excel_row, slot, cells, holder, failed)
            if certificate is not None:
                held.append(certificate)
        if len(self.errors) == errors_before:
            values = tuple(_plain(candidate[c]) for c in CANDIDATE_COLUMNS)
            changes = self.candidate_changes.text(values)
            if work_years:
                work_years.sort()
                # candidate_create's work_years change: {code: years as text}.
                years_text = ",".join(f"{json_text(c)}:{json_text(y)}" for c, y in work_years)
                changes = (
                    f'{changes[:-1]},"work_years":{{"after":{{{years_text}}},"before":null}}}}'
                )
            self.rows.append(
                _Row(excel_row, values, changes, _candidate_repr(candidate), work_years, held)
            )

    def certificate(
        self, excel_row: int, slot: int, cells: dict, holder: _Holder, failed: set[str]
    ) -> tuple[tuple, str, str] | None:
        columns = _CERT_COLUMNS[slot]
        if all(_is_blank(cells.get(column)) for column in columns.values()):
            return None  # no certificate in this slot

        def cell(part: str, convert):
            try:
                return convert(cells.get(columns[part]))
            except CellProblem as exc:
                self.error(excel_row, columns[part], str(exc))
                failed.add(columns[part])
                return None

        errors_before = len(self.errors)
        code = (cell("类型代码", _text) or "").upper()
        # Normalised as held_certificate_create normalises it.
        number = (cell("编号", _text) or "").upper()
        issuer_name = cell("发证机关", _text) or ""
        issue_date = cell("发证日期", _date)
        expiry_date = cell("有效期至", _date)
        review_due_date = cell("下次复审日期", _date)

        qtype = self.qtypes.get(code)
        if columns["类型代码"] not in failed and qtype is None:
            # held_certificate_create's message for an unknown code.
            message = f"未知的证书类型代码：{code}" if code else f"请填写{columns['类型代码']}"
            self.error(excel_row, columns["类型代码"], message)
        # Without a valid ID only the number's format can be checked, not the holder.
        if (
            qtype is not None
            and number
            and (ID_NUMBER not in failed or not qtype.number_matches(number))
        ):
            for message in held_certificate_problems(holder, qtype, number):
                self.error(excel_row, columns["编号"], message)

        if expiry_date is None and issue_date and qtype is not None:
            key = (qtype.pk, issue_date)
            if key not in self._expiry:
                self._expiry[key] = qtype.expiry_for(issue_date)
            expiry_date = self._expiry[key]
        held = {
            "qualification_type_id": qtype.pk if qtype is not None else None,
            "number": number,
            "issuer_name": issuer_name,
            "issue_date": issue_date,
            "expiry_date": expiry_date,
            "review_due_date": review_due_date,
        }
        exclude = {f for f, part in HELD_FIELD_PARTS.items() if columns[part] in failed}
        if expiry_date is None:
            exclude.add("expiry_date")  # optional in the file; no default without a type
        problems = self.held_rules.problems(held, exclude)
        if problems is not None:
            self.model_errors(
                excel_row, problems, lambda f: columns[HELD_FIELD_PARTS.get(f, "类型代码")]
            )

        if qtype is not None and number:
            self.number_seen.append(((qtype.pk, number), excel_row, columns["编号"]))
        if len(self.errors) != errors_before:
            return None
        values = tuple(_plain(held[c]) for c in HELD_COLUMNS)
        return values, self.held_changes.text(values), _held_repr(qtype, number)

    def part(self, rows: list[tuple[int, list]], indexes, tick=None) -> "_Part":
        """Validate `rows` ((Excel row, cell values) with the header's column `indexes`)
        on their own: their errors, where their numbers occur and their clean rows.
        `tick()` after each row, for progress."""
        self.errors, self.rows, self.id_seen, self.number_seen = [], [], [], []
        for excel_row, values in rows:
            width = len(values)
            self.row(excel_row, {name: values[i] if i < width else None for name, i in indexes})
            if tick is not None:
                tick()
        return _Part(self.errors, self.rows, self.id_seen, self.number_seen)

    def duplicates(self) -> None:
        """Report every ID and certificate number the file repeats, against its first
        occurrence (held_certificate_create's and the file's own messages)."""
        for number, row in self.id_seen:
            first = self.id_rows.setdefault(number, row)
            if first != row:
                self.error(row, ID_NUMBER, f"身份证号码与第 {first} 行重复")
        for key, row, column in self.number_seen:
            first_row, first_column = self.number_cells.setdefault(key, (row, column))
            if first_row != row:
                self.error(row, column, f"证书编号 {key[1]} 与第 {first_row} 行重复")
            elif first_column != column:
                self.error(row, column, f"证书编号 {key[1]} 与本行「{first_column}」重复")

    def against_database(self) -> None:
        """ID and certificate numbers already registered: one query for each."""
        for (number,) in _registered(Candidate, "id_number", list(self.id_rows), ["id_number"]):
            self.error(self.id_rows[number], ID_NUMBER, "该身份证号码已登记")
        numbers = sorted({number for _, number in self.number_cells})
        for key in _registered(
            HeldCertificate, "number", numbers, ["qualification_type_id", "number"]
        ):
            if key in self.number_cells:
                row, column = self.number_cells[key]
                # held_certificate_create's message.
                self.error(row, column, f"证书编号 {key[1]} 已登记")


def _registered(model: type[models.Model], name: str, values: list[str], columns: list[str]):
    """Rows (tuples of `columns`) of `model` whose field `name` is one of `values`.

    One query with the values as one parameter (an array on PostgreSQL, a JSON array
    read by json_each on SQLite), both using the field's unique index: the ORM's IN
    lists cost ~10 µs of query building per value, a second for a 50,000-row file."""
    if not values:
        return []
    connection = connections[router.db_for_read(model)]
    if connection.vendor not in {"postgresql", "sqlite"}:
        return [
            row
            for start in range(0, len(values), LOOKUP_CHUNK)
            for row in model.objects.filter(
                **{f"{name}__in": values[start : start + LOOKUP_CHUNK]}
            ).values_list(*columns)
        ]
    meta, quote = model._meta, connection.ops.quote_name
    # Identifiers from the model's meta, quoted; the values are one parameter.
    selected = ", ".join(quote(meta.get_field(column).column) for column in columns)
    table, column = quote(meta.db_table), quote(meta.get_field(name).column)
    if connection.vendor == "postgresql":
        sql = f"SELECT {selected} FROM {table} WHERE {column} = ANY(%s)"  # noqa: S608
        parameter: Any = values
    else:
        sql = f"SELECT {selected} FROM {table} WHERE {column} IN (SELECT value FROM json_each(%s))"  # noqa: S608
        parameter = json.dumps(values)
    with connection.cursor() as cursor:
        cursor.execute(sql, [parameter])
        return cursor.fetchall()


def _error_order(error: RowError) -> tuple[int, int]:
    return (error.row or 0, _COLUMN_ORDER.get(error.column, -1))


def _validate(file, *, actor, on_progress: ProgressCallback | None) -> tuple[ImportResult, list]:
    """Read and check the whole file. Returns the result (with every error found) and,
    when there is none, the rows ready to write."""
    result = ImportResult()
    try:
        workbook = _open_workbook(_read_bytes(file))
    except FileProblem as exc:
        result.errors = exc.errors
        return result, []
    try:
        validator, total = _validate_sheet(workbook, actor, on_progress)
    except FileProblem as exc:
        result.errors = exc.errors
        return result, []
    finally:
        workbook.close()  # read-only mode keeps the archive open until closed
    result.total_rows = total
    result.errors = sorted(validator.errors, key=_error_order)
    return result, validator.rows if result.ok else []


# Rows validated as one part: large enough that sending a part to the helper costs little
# next to checking it, small enough for steady progress and an even share of the work.
PART_ROWS = 250
# From this many rows a second process validates parts of the file (forking it and
# sending its rows back cost ~0.1 s); fewer rows, or where forking is unsafe, one.
PARALLEL_MIN_ROWS = 2000
HELPER_AHEAD = 4


class _Part(NamedTuple):
    """What validating some rows on their own gives (`_Validator.part`)."""

    errors: list[RowError]
    rows: list[_Row]
    id_seen: list[tuple[str, int]]
    number_seen: list[tuple[tuple[int, str], int, str]]


def _may_fork() -> bool:
    """Whether a helper process may be forked here: where fork exists, and only from a
    process running one thread (the child gets only the forking thread: a lock another
    thread held at the fork, the import lock say, would stay held in it for ever). A
    Celery prefork worker runs tasks in its one thread; a threaded development server
    validates in its own process."""
    return hasattr(os, "fork") and threading.active_count() == 1


class _Helper:
    """A forked process validating parts of the file (`_Validator.part`) while this one
    reads the sheet and validates parts of its own: the two cores each do about half.

    The child inherits the validator as it stands (catalog rows, caches) and never
    touches the database or the connection it inherited; its results come back through
    a pipe and this process puts them together in file order, so the errors are the ones
    one process finds. A thread here receives them as they come, so that neither side
    ever waits to send while the other waits to send too.

    Forked with os.fork, not multiprocessing: multiprocessing refuses children to a
    daemonic process, which a Celery prefork worker is, so that a terminated worker
    leaves no orphans. This child cannot outlive its parent by more than the part in
    hand: it exits when told, when the pipe closes (the parent died), on any error, and
    always through os._exit (none of the parent's exit handlers). Parts it has not
    answered are then validated here."""

    def __init__(self, validator: "_Validator", indexes):
        self.connection, child = multiprocessing.connection.Pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            code = 1
            try:
                self.connection.close()
                _helper_main(validator, indexes, child)
                code = 0
            finally:
                os._exit(code)
        child.close()
        self.sent: dict[int, list] = {}  # part index -> its rows, until answered
        self.answers: queue.SimpleQueue = queue.SimpleQueue()
        self.receiver = threading.Thread(target=self._receive, daemon=True)
        self.receiver.start()

    def _receive(self) -> None:
        try:
            while True:
                self.answers.put(self.connection.recv())
        except (EOFError, OSError):
            self.answers.put(None)  # the child has gone

    def send(self, index: int, rows: list) -> None:
        self.sent[index] = rows
        self.connection.send((index, rows))

    def results(self, *, wait: bool) -> Iterator[tuple[int, _Part, int]]:
        """(part index, part, rows in it) of each answer received; with `wait`, until
        every part sent is answered. EOFError when the child is gone."""
        while self.sent:
            try:
                answer = self.answers.get(block=wait)
            except queue.Empty:
                return
            if answer is None:
                self.answers.put(None)  # stays gone
                raise EOFError("the import validation helper has gone")
            index, part = answer
            yield index, part, len(self.sent.pop(index))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.send(None)
        try:
            deadline = time.monotonic() + 5
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.005)
        except ChildProcessError:
            pass  # already reaped
        self.connection.close()
        self.receiver.join(timeout=5)


def _helper_main(validator: "_Validator", indexes, connection) -> None:
    with contextlib.suppress(EOFError):
        while (task := connection.recv()) is not None:
            index, rows = task
            connection.send((index, validator.part(rows, indexes)))


def _validate_sheet(workbook, actor, on_progress) -> tuple[_Validator, int]:
    sheet = _data_sheet(workbook)
    estimate = _check_row_limit(sheet) or 0
    limit = settings.IMPORT_MAX_ROWS
    rows = _sheet_rows(sheet)
    first = next(rows, None)
    if first is None:
        raise FileProblem(f"工作表「{sheet.title}」是空的；请使用系统提供的模板")
    positions, header_errors = _header_map(tuple(first[1]))
    validator = _Validator(actor)
    if header_errors:
        validator.errors = header_errors
        return validator, 0
    indexes = [(name, positions[name]) for name in COLUMNS]
    total = validated = 0
    parts: list[_Part | None] = []
    helper: _Helper | None = None
    may_fork = _may_fork()

    def tick(count: int = 1) -> None:
        nonlocal validated
        before, validated = validated, validated + count
        if on_progress and validated // PROGRESS_EVERY > before // PROGRESS_EVERY:
            on_progress(validated, max(estimate, total))

    def helper_lost() -> None:
        nonlocal helper
        logger.warning("import validation helper died; validating its rows here")
        lost, helper = helper, None
        lost.close()
        for index, part_rows in sorted(lost.sent.items()):
            parts[index] = validator.part(part_rows, indexes, tick)

    def collect(*, wait: bool) -> None:
        try:
            for index, part, count in helper.results(wait=wait):
                parts[index] = part
                tick(count)
        except EOFError:
            helper_lost()

    def dispatch(part_rows: list) -> None:
        nonlocal helper, may_fork
        index = len(parts)
        parts.append(None)
        if helper is None and may_fork and max(estimate, total) >= PARALLEL_MIN_ROWS:
            may_fork = False  # one helper per file at most
            try:
                helper = _Helper(validator, indexes)
            except OSError:
                logger.warning("could not start an import validation helper", exc_info=True)
        if helper is not None:
            collect(wait=False)
        # Keep the helper a few parts ahead; when it falls behind (it shares the cores
        # with this process and others), this process validates the part itself.
        if helper is not None and len(helper.sent) < HELPER_AHEAD:
            try:
                helper.send(index, part_rows)
                return
            except OSError:
                helper_lost()  # validates this part too: it is among those sent
                return
        parts[index] = validator.part(part_rows, indexes, tick)

    part_rows: list = []
    try:
        for excel_row, values in rows:
            if all(_is_blank(value) for value in values):
                continue
            total += 1
            if total > limit:
                # Reached only when the writer recorded no dimension (see _check_row_limit).
                raise FileProblem(f"数据行超过单次导入上限 {limit} 行；请拆分后分批导入")
            part_rows.append((excel_row, values))
            if len(part_rows) == PART_ROWS:
                dispatch(part_rows)
                part_rows = []
        if part_rows:
            dispatch(part_rows)
        if helper is not None:
            collect(wait=True)
    finally:
        if helper is not None:
            helper.close()
    if total == 0:
        raise FileProblem("文件中没有考生数据（自第 2 行起每行填写一名考生）")
    validator.errors = [error for part in parts for error in part.errors]
    validator.rows = [row for part in parts for row in part.rows]
    validator.id_seen = [seen for part in parts for seen in part.id_seen]
    validator.number_seen = [seen for part in parts for seen in part.number_seen]
    validator.duplicates()
    validator.against_database()
    if on_progress:
        on_progress(total, total)
    return validator, total


# Writing ------------------------------------------------------------------------------

CANDIDATE_COLUMNS = ["id_number", "name", "sex", "birth_date", "phone", "education"]
HELD_COLUMNS = [
    "qualification_type_id",
    "number",
    "issuer_name",
    "issue_date",
    "expiry_date",
    "review_due_date",
]


def _json_ready(value):
    # audit.services.snapshot's rendering of the values these rows hold.
    return value.isoformat() if isinstance(value, date) else value


class _Snapshot:
    """The changes the single-create services record for a new instance (`snapshot` of
    `fields`, each {"before": None, "after": value}): the row's values, and for a field
    the file does not fill (photo, verification...) its default, as Model() holds it."""

    def __init__(self, model: type[models.Model], fields: list[str]):
        self.fields = []
        for name in fields:
            f = model._meta.get_field(name)
            self.fields.append((name, f.attname, _json_ready(f.get_default())))

    def __call__(self, values: dict[str, Any]) -> dict:
        return {
            name: {"before": None, "after": _json_ready(values[attname])}
            if attname in values
            else {"before": None, "after": default}
            for name, attname, default in self.fields
        }


class _CreateChanges:
    """`_Snapshot`'s changes as the canonical JSON text audit_record_bulk stores and
    hashes (CanonicalJSON), from a row's values in the order of `columns`: the fields
    sorted, each {"after": value, "before": null}, the defaults encoded once. A dict per
    event and its encoding cost more than validating the row (bench/README.md)."""

    def __init__(self, model: type[models.Model], fields: list[str], columns: list[str]):
        self.snapshot = _Snapshot(model, fields)
        self.columns = columns
        position = {column: index for index, column in enumerate(columns)}
        template, self.order = [], []
        for name in sorted(fields):
            f = model._meta.get_field(name)
            if f.attname in position:
                value = "%s"
                self.order.append(position[f.attname])
            else:
                value = json_text(_json_ready(f.get_default())).replace("%", "%%")
            template.append(
                f'{json_text(name).replace("%", "%%")}:{{"after":{value},"before":null}}'
            )
        self.template = "{" + ",".join(template) + "}"

    def text(self, values: tuple) -> str:
        return self.template % tuple([json_text(values[index]) for index in self.order])

    def check(self, values: tuple) -> None:
        """Refuse (RuntimeError) unless `text` gives what encoding `_Snapshot`'s dict
        gives: run on an import's first row, so the two can never drift apart."""
        changes = self.snapshot(dict(zip(self.columns, values, strict=True)))
        # AuditEvent.canonical's encoding.
        expected = json.dumps(changes, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        if self.text(values) != expected:
            raise RuntimeError("cases.imports no longer encodes changes as audit does")


def _candidate_repr(values: dict[str, Any]) -> str:
    # Candidate.__str__
    return f"{values['name']}（{mask_id_number(values['id_number'])}）"[:200]


def _held_repr(qtype: QualificationType, number: str) -> str:
    # HeldCertificate.__str__ and masked_number
    if qtype.number_is_holder_id and len(number) > 1:
        number = number[0] + mask_id_number(number[1:])
    return f"{qtype.code} {number}"[:200]


def _write(rows: list[_Row], *, actor) -> tuple[int, int]:
    """Insert the validated rows and their audit events; the caller holds the transaction.

    Plain inserts (config.bulk: COPY on PostgreSQL) of the values validated above, with
    the primary keys read back by their unique ID and certificate numbers; then one audit
    event per candidate and per certificate with the changes, object and text
    candidate_create and held_certificate_create record (built while validating)."""
    _CreateChanges(Candidate, CANDIDATE_FIELDS, CANDIDATE_COLUMNS).check(rows[0].candidate)
    first_held = next((h for row in rows for h in row.held), None)
    if first_held is not None:
        _CreateChanges(HeldCertificate, HELD_FIELDS, HELD_COLUMNS).check(first_held[0])
    # New rows get keys above the largest one now (sequences and SQLite's AUTOINCREMENT
    # only grow), so reading back the rows above it finds them all; rows others commit
    # meanwhile may come along and are ignored (their numbers cannot be ours: the unique
    # indexes make a concurrent insert of one of ours wait for this transaction).
    after = Candidate.objects.aggregate(last=Max("pk"))["last"] or 0
    actor_id = actor.pk
    insert_rows(
        Candidate,
        [*CANDIDATE_COLUMNS, "created_by_id"],
        ((*row.candidate, actor_id) for row in rows),
    )
    by_number = dict(Candidate.objects.filter(pk__gt=after).values_list("id_number", "pk"))
    candidate_ids = [by_number[row.candidate[0]] for row in rows]  # id_number comes first
    occupations = dict(
        Occupation.objects.filter(code__in=WORK_YEARS_COLUMNS.values()).values_list("code", "pk")
    )
    insert_rows(
        WorkExperience,
        ["candidate_id", "occupation_id", "years"],
        (
            (candidate_id, occupations[code], years)
            for row, candidate_id in zip(rows, candidate_ids, strict=True)
            for code, years in row.work_years
        ),
    )
    after = HeldCertificate.objects.aggregate(last=Max("pk"))["last"] or 0
    insert_rows(
        HeldCertificate,
        ["candidate_id", *HELD_COLUMNS],
        (
            (candidate_id, *values)
            for row, candidate_id in zip(rows, candidate_ids, strict=True)
            for values, _, _ in row.held
        ),
    )
    held_ids = {
        (qtype_id, number): pk
        for qtype_id, number, pk in HeldCertificate.objects.filter(pk__gt=after).values_list(
            "qualification_type_id", "number", "pk"
        )
    }

    candidate_type = Candidate._meta.label_lower
    held_type = HeldCertificate._meta.label_lower
    events: list[Event] = []
    add = events.append
    held_count = 0
    for row, candidate_id in zip(rows, candidate_ids, strict=True):
        # The same changes candidate_create and held_certificate_create record.
        add(
            Event(
                "candidate.create",
                candidate_type,
                str(candidate_id),
                row.repr,
                changes=CanonicalJSON(row.changes),
            )
        )
        for values, changes, text in row.held:
            held_count += 1
            add(
                Event(
                    "held_certificate.create",
                    held_type,
                    str(held_ids[values[0], values[1]]),  # type id and number come first
                    text,
                    changes=CanonicalJSON(changes),
                )
            )
    audit_record_bulk(actor=actor, events=events)
    return len(rows), held_count


def candidate_import(
    *,
    actor,
    file,
    on_progress: ProgressCallback | None = None,
    on_written: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Register every candidate of an XLSX file (bytes or a file object), or none.

    Preconditions: `actor` is a coordinator (PermissionDenied otherwise). Reads and
    validates the whole file first, outside any transaction, calling
    `on_progress(rows_checked, rows_expected)` every PROGRESS_EVERY rows. With any error
    returns them all and writes nothing. Otherwise inserts candidates, work experience,
    held certificates and their audit events in one durable transaction (which holds the
    audit chain head lock until it commits) and calls `on_written(result)` inside it, so
    a caller can record the outcome atomically with the rows. Not idempotent: the same
    file again reports every ID number as already registered.
    """
    require_role(actor, Role.COORDINATOR)
    with translation.override("zh-hans"):
        result, rows = _validate(file, actor=actor, on_progress=on_progress)
        if not result.ok:
            return result
        try:
            with transaction.atomic(durable=True):
                result.created, result.held_created = _write(rows, actor=actor)
                if on_written is not None:
                    on_written(result)
        except IntegrityError:
            # Someone registered one of these numbers between validation and write.
            logger.info("candidate import hit a concurrent registration", exc_info=True)
            result.created = result.held_created = 0
            result.errors = [
                RowError(
                    None,
                    "",
                    "写入时发现身份证号码或证书编号已被其他操作登记，未写入任何数据；"
                    "请重新导入以查看具体的行",
                )
            ]
    return result


# Jobs ---------------------------------------------------------------------------------


def import_job_create(*, actor, file, name: str = "") -> ImportJob:
    """Store an uploaded file and queue its import. Coordinators only.

    Refuses a file over IMPORT_MAX_BYTES at once (ValidationError); everything else is
    found by the task and recorded on the job. The task is queued with
    transaction.on_commit, so a worker never sees a job that was rolled back.
    """
    require_role(actor, Role.COORDINATOR)
    limit = settings.IMPORT_MAX_BYTES
    if isinstance(file, bytes | bytearray):
        file = ContentFile(bytes(file), name=name or "import.xlsx")
    if file.size > limit:
        raise ValidationError({"file": [f"文件不能超过 {limit // (1024 * 1024)} MB"]})
    with transaction.atomic(durable=True):
        job = ImportJob(
            uploaded_by=actor, original_name=(name or getattr(file, "name", "") or "")[:255]
        )
        # A random stored name; the uploader's name is kept for display only.
        job.file.save(f"{uuid4().hex}.xlsx", file, save=False)
        job.save()
        job_id = job.pk
        transaction.on_commit(lambda: _dispatch(job_id))
    return job


def _dispatch(job_id: int) -> None:
    from .tasks import candidate_import_run  # tasks imports this module

    # The soft limit lets the task record a timeout on the job before the hard limit
    # kills it; the hard limit is the global CELERY_TASK_TIME_LIMIT.
    hard = settings.CELERY_TASK_TIME_LIMIT
    candidate_import_run.apply_async(args=[job_id], soft_time_limit=max(hard - 30, hard * 0.9))


class _ClaimLost(Exception):
    pass


def import_job_run(*, job_id: int) -> bool:
    """Run an import job; the body of the candidate_import_run task.

    Idempotent: claims the job with a conditional UPDATE (pending -> running) and returns
    False without doing anything when the claim fails (already running or finished). A
    job left `running` longer than the task time limit by a lost worker can be claimed
    again: its write was one transaction, so a dead run wrote nothing. The final UPDATE
    is fenced on this run's claim and sits inside the write transaction, so rows are
    written at most once and a succeeded job always has its rows.

    Progress: `processed_rows` counts rows validated, committed in short autocommit
    UPDATEs every PROGRESS_EVERY rows so pollers see it. The write itself is one
    transaction and cannot report progress that others could see (on SQLite not even
    from a second connection: the writer holds the database lock), so the page shows
    "writing" while processed_rows == total_rows and the job is still running; for the
    50,000-row bench that phase lasts about five seconds on an idle machine.
    """
    claimed_at = timezone.now()
    stale = claimed_at - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    claimed = (
        ImportJob.objects.filter(pk=job_id)
        .filter(
            Q(status=ImportJobStatus.PENDING)
            | Q(status=ImportJobStatus.RUNNING, started_at__lt=stale)
        )
        .update(
            status=ImportJobStatus.RUNNING,
            started_at=claimed_at,
            processed_rows=0,
            total_rows=0,
            errors=[],
        )
    )
    if claimed != 1:
        return False
    job = ImportJob.objects.select_related("uploaded_by").get(pk=job_id)
    owned = ImportJob.objects.filter(
        pk=job_id, status=ImportJobStatus.RUNNING, started_at=claimed_at
    )

    def progress(processed: int, total: int) -> None:
        owned.update(processed_rows=processed, total_rows=total)

    def written(result: ImportResult) -> None:
        done = owned.update(
            status=ImportJobStatus.SUCCEEDED,
            total_rows=result.total_rows,
            processed_rows=result.total_rows,
            created_count=result.created,
            finished_at=timezone.now(),
        )
        if done != 1:
            raise _ClaimLost  # rolls the write back: another run owns this job now

    try:
        with job.file.open("rb") as handle:
            data = handle.read(settings.IMPORT_MAX_BYTES + 1)
        result = candidate_import(
            actor=job.uploaded_by, file=data, on_progress=progress, on_written=written
        )
    except _ClaimLost:
        return False
    except PermissionDenied as exc:
        result = ImportResult(errors=[RowError(None, "", str(exc))])
    except SoftTimeLimitExceeded:
        result = ImportResult(
            errors=[RowError(None, "", "导入超时，未写入任何数据；请拆分文件后分批导入")]
        )
    except Exception:
        logger.exception("candidate import job %s failed", job_id)
        result = ImportResult(
            errors=[RowError(None, "", "导入时发生系统错误，未写入任何数据；请联系系统管理员")]
        )
    if not result.ok:
        owned.update(
            status=ImportJobStatus.FAILED,
            errors=[error.as_dict() for error in result.errors],
            total_rows=result.total_rows,
            processed_rows=result.total_rows,
            created_count=0,
            finished_at=timezone.now(),
        )
    return True


# A pending job older than this lost its dispatch (the web process died between commit
# and on_commit, or the broker was down); the sweep sends it again.
PENDING_GRACE = timedelta(minutes=5)


def import_jobs_sweep() -> list[int]:
    """Re-dispatch jobs no worker is working on: pending past PENDING_GRACE, or running
    past the task time limit (a worker died mid-run; the redelivered message found the
    job still claimed and left it). Safe to repeat: the task claims before working.
    Returns the ids dispatched. Run by Celery beat (config/settings.py)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    job_ids = list(
        ImportJob.objects.filter(
            Q(status=ImportJobStatus.PENDING, created_at__lt=now - PENDING_GRACE)
            | Q(status=ImportJobStatus.RUNNING, started_at__lt=stale)
        ).values_list("pk", flat=True)
    )
    for job_id in job_ids:
        _dispatch(job_id)
    return job_ids


def import_job_list(*, user, limit: int = 20):
    """Recent jobs, newest first (every coordinator sees every job)."""
    require_role(user, Role.COORDINATOR)
    return ImportJob.objects.select_related("uploaded_by").defer("errors")[:limit]


def import_job_progress(job: ImportJob) -> dict[str, Any]:
    """The small JSON the job page polls (cases:import-job-progress) and renders first."""
    total, processed = job.total_rows, job.processed_rows
    error_count = len(job.errors)
    if job.status == ImportJobStatus.PENDING:
        message = _("排队等待处理…")
    elif job.status == ImportJobStatus.SUCCEEDED:
        message = _("导入成功：新登记考生 %(count)d 名") % {"count": job.created_count}
    elif job.status == ImportJobStatus.FAILED:
        message = _("导入失败：发现 %(count)d 个问题，未写入任何数据") % {"count": error_count}
    elif total and processed >= total:
        # The write is one transaction: nothing of it is visible until it commits.
        message = _("校验通过，正在写入 %(total)d 名考生（全部写入或全部不写入）…") % {
            "total": total
        }
    elif total:
        message = _("正在校验：%(processed)d / %(total)d 行") % {
            "processed": processed,
            "total": total,
        }
    else:
        message = _("正在读取文件…")
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "total_rows": total,
        "processed_rows": processed,
        # The keys static/js/jobs.js reads, as every background job's progress has them.
        "done": total if job.status == ImportJobStatus.SUCCEEDED else processed,
        "total": total,
        "percent": job.progress_percent,
        "created_count": job.created_count,
        "error_count": error_count,
        "finished": job.is_finished,
        "message": str(message),
    }
