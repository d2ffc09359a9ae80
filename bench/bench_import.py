"""Bulk registration from XLSX (cases.imports.candidate_import) against registering the
same kind of candidates one by one through the services (candidate_create +
held_certificate_create), both on the same database in the same run.

The file has 50,000 rows (BENCH_IMPORT_ROWS overrides), each with two work-years
cells; every other candidate holds a MEM-ELEC-LV certificate and every fifth also a
SAMR-WELD one. It is written the way Excel and WPS save a workbook: a shared-strings
table, dates as serial numbers with a date format, the sheet's dimension recorded
(`excel_workbook`). The import limit IMPORT_MAX_ROWS (20,000 by default) is raised to
the file's size for the measurement. The baseline registers 500 such candidates
(different ID numbers) and is extrapolated per row.
"""

import cProfile
import os
import pstats
import resource
import time
import zipfile
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from io import BytesIO, StringIO
from xml.sax.saxutils import escape, quoteattr

from stdnum.cn import ric

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "50000"))
# PROFILE=<file>: profile the measured import (this process only) with cProfile, write
# the stats to <file> and print the 25 largest cumulative entries.
PROFILE = os.environ.get("PROFILE", "")
BASELINE_ROWS = 500
LINE = (
    "import: {figure:,.0f} rows/s ({rows:,} rows in {seconds:.1f} s), "
    "baseline one-by-one {baseline:,.0f} rows/s, ratio {ratio:.1f}"
)


def id_number(n: int) -> str:
    """The n-th valid ID number: a birth date from 1960 to 2001 and a sequence number
    (so up to 15,000,000 distinct numbers), checksum by stdnum."""
    born = date(1960, 1, 1) + timedelta(days=n % 15_000)
    first17 = f"110105{born:%Y%m%d}{n // 15_000 % 1000:03d}"
    return first17 + ric.calc_check_digit(first17 + "0")  # stdnum ignores the last digit


def person(n: int) -> dict:
    number = id_number(n)
    certs = []
    if n % 2 == 0:
        certs.append(("MEM-ELEC-LV", f"T{number}", "北京市应急管理局", date(2024, 3, 15)))
    if n % 5 == 0:
        certs.append(("SAMR-WELD", f"TS{n:08d}", "北京市市场监督管理局", date(2023, 6, 1)))
    return {
        "name": f"考生{n}",
        "id_number": number,
        "phone": f"139{n:08d}",
        "education": ("senior", "高中/中专/技校") if n % 3 else ("college", "大专"),
        "work_years": {"6-31-01-03": "3", "6-18-02-04": "1.5"},
        "certs": certs,
    }


# Workbooks as Excel writes them --------------------------------------------------------

_EXCEL_EPOCH = date(1899, 12, 30)
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


def _letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def excel_workbook(title: str, rows: list[list]) -> bytes:
    """An XLSX of one sheet as Excel saves it: text in the shared-strings table, numbers
    as numbers, dates as serial numbers in a cell style with date format 14, empty
    cells left out, the dimension recorded. openpyxl writes inline strings instead and
    takes about 0.3 ms a row to do it; this takes a few microseconds."""
    strings: list[str] = []
    index: dict[str, int] = {}
    width = max(len(row) for row in rows)
    letters = [_letter(i) for i in range(width)]
    sheet_rows = []
    for number, row in enumerate(rows, start=1):
        cells = []
        for column, value in enumerate(row):
            if value is None:
                continue
            ref = f"{letters[column]}{number}"
            if isinstance(value, str):
                if value not in index:
                    index[value] = len(strings)
                    strings.append(value)
                cells.append(f'<c r="{ref}" t="s"><v>{index[value]}</v></c>')
            elif isinstance(value, date):
                day = value.date() if isinstance(value, datetime) else value
                cells.append(f'<c r="{ref}" s="1"><v>{(day - _EXCEL_EPOCH).days}</v></c>')
            else:
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        sheet_rows.append(f'<row r="{number}" spans="1:{width}">{"".join(cells)}</row>')
    sheet = (
        f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">'
        f'<dimension ref="A1:{letters[-1]}{len(rows)}"/><sheetData>'
        + "".join(sheet_rows)
        + "</sheetData></worksheet>"
    )
    shared = (
        f'{_XML}<sst xmlns="{_MAIN}" count="{len(strings)}" uniqueCount="{len(strings)}">'
        + "".join(f"<si><t>{escape(text)}</t></si>" for text in strings)
        + "</sst>"
    )
    parts = {
        "[Content_Types].xml": (
            f'{_XML}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_CONTENT_TYPE}.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            f'ContentType="{_CONTENT_TYPE}.worksheet+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{_CONTENT_TYPE}.styles+xml"/>'
            '<Override PartName="/xl/sharedStrings.xml" '
            f'ContentType="{_CONTENT_TYPE}.sharedStrings+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_REL}"><Relationship Id="rId1" '
            f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            f'<sheet name={quoteattr(title)} sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_REL}">'
            f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/>'
            f'<Relationship Id="rId3" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"
        ),
        "xl/styles.xml": (
            f'{_XML}<styleSheet xmlns="{_MAIN}">'
            '<fonts count="1"><font><sz val="11"/><name val="宋体"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
            '</borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" '
            'borderId="0"/></cellStyleXfs><cellXfs count="2">'
            '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
            '<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" '
            'applyNumberFormat="1"/></cellXfs><cellStyles count="1">'
            '<cellStyle name="常规" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
        ),
        "xl/sharedStrings.xml": shared,
        "xl/worksheets/sheet1.xml": sheet,
    }
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def build_file(first: int, count: int) -> bytes:
    from cases.imports import COLUMNS, SHEET_TITLE

    rows: list[list] = [list(COLUMNS)]
    for n in range(first, first + count):
        p = person(n)
        row = [p["name"], p["id_number"], p["phone"], p["education"][1], 3, 1.5]
        for code, number, issuer, issued in p["certs"]:
            row += [code, number, issuer, issued, None, None]
        rows.append(row)
    return excel_workbook(SHEET_TITLE, rows)


# The measurement -----------------------------------------------------------------------


def _children_cpu() -> float:
    """CPU seconds of this process's finished children: the import's validation helper
    (cases.imports._Helper), counted once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def profiled():
    """cProfile around the block when PROFILE names a file (see PROFILE above)."""
    if not PROFILE:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(PROFILE)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


def coordinator():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _ = get_user_model().objects.get_or_create(username="bench-coordinator")
    user.groups.add(Group.objects.get(name="coordinator"))
    return user


def one_by_one(actor, first: int, count: int) -> float:
    from cases import services

    started = time.perf_counter()
    for n in range(first, first + count):
        p = person(n)
        candidate = services.candidate_create(
            actor=actor,
            id_number=p["id_number"],
            name=p["name"],
            phone=p["phone"],
            education=p["education"][0],
            work_years=p["work_years"],
        )
        for code, number, issuer, issued in p["certs"]:
            services.held_certificate_create(
                actor=actor,
                candidate=candidate,
                qualification_type=code,
                number=number,
                issuer_name=issuer,
                issue_date=issued,
            )
    return time.perf_counter() - started


def run() -> dict:
    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import override_settings

    from audit.models import AuditEvent
    from cases.imports import candidate_import
    from cases.models import Candidate, HeldCertificate

    actor = coordinator()
    baseline_seconds = one_by_one(actor, first=ROWS, count=BASELINE_ROWS)
    baseline = BASELINE_ROWS / baseline_seconds

    data = build_file(0, ROWS)
    events_before = AuditEvent.objects.count()
    marks = {}
    load_before = os.getloadavg()[0]
    with override_settings(
        IMPORT_MAX_ROWS=max(settings.IMPORT_MAX_ROWS, ROWS),
        IMPORT_MAX_BYTES=max(settings.IMPORT_MAX_BYTES, len(data)),
    ):
        started, cpu_started = time.perf_counter(), time.process_time()
        helper_started = _children_cpu()
        with profiled():
            result = candidate_import(
                actor=actor,
                file=data,
                on_progress=lambda done, total: marks.__setitem__("validated", time.perf_counter()),
                on_written=lambda r: marks.__setitem__("written", time.perf_counter()),
            )
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        helper_cpu_seconds = _children_cpu() - helper_started
    load_after = os.getloadavg()[0]
    assert result.ok, result.errors[:5]
    assert result.created == ROWS
    assert Candidate.objects.count() == ROWS + BASELINE_ROWS
    events = AuditEvent.objects.count() - events_before
    assert events == result.created + result.held_created  # one per candidate and certificate
    verify_started = time.perf_counter()
    call_command("audit_verify", stdout=StringIO())  # raises CommandError on a broken chain
    verify_seconds = time.perf_counter() - verify_started
    figure = ROWS / seconds
    ratio = figure / baseline
    return {
        "name": "import",
        "figure": round(figure, 1),
        "unit": "rows/s",
        "baseline": round(baseline, 1),
        "baseline_label": "one by one through the services",
        "ratio": round(ratio, 2),
        "rows": ROWS,
        "file_bytes": len(data),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "helper_cpu_seconds": round(helper_cpu_seconds, 3),
        "validate_seconds": round(marks["validated"] - started, 3),
        "write_seconds": round(marks["written"] - marks["validated"], 3),
        "held_certificates": result.held_created,
        "audit_events": events,
        "audit_verify_seconds": round(verify_seconds, 3),
        "baseline_rows": BASELINE_ROWS,
        "baseline_seconds": round(baseline_seconds, 3),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "held_certificates_total": HeldCertificate.objects.count(),
        "line": LINE.format(
            figure=figure, rows=ROWS, seconds=seconds, baseline=baseline, ratio=ratio
        ),
    }


if __name__ == "__main__":
    from bench import _support

    _support.django_setup()
    with _support.test_database():
        outcome = run()
        _support.write_result(outcome)
    _support.update_readme()
    print(outcome["line"])
