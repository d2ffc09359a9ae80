"""Bulk registration from XLSX (cases.imports.candidate_import) against registering the
same kind of candidates one by one through the services (candidate_create +
held_certificate_create), both on the same database in the same run.

The file has 5,000 rows, each with two work-years cells; every other candidate holds a
MEM-ELEC-LV certificate and every fifth also a SAMR-WELD one. The baseline registers
500 such candidates (different ID numbers) and is extrapolated per row.
"""

import time
from datetime import date, timedelta
from io import BytesIO

from openpyxl import Workbook
from stdnum.cn import ric

ROWS = 5_000
BASELINE_ROWS = 500
LINE = "import: {figure:,.0f} rows/s, baseline one-by-one {baseline:,.0f} rows/s, ratio {ratio:.1f}"


def id_number(n: int) -> str:
    """The n-th valid ID number: one birth date per n (from 1960), checksum by stdnum."""
    first17 = f"110105{date(1960, 1, 1) + timedelta(days=n):%Y%m%d}123"
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


def build_file(first: int, count: int) -> bytes:
    from cases.imports import COLUMNS

    # Not write-only: like Excel, record the sheet's dimension (see _check_row_limit).
    wb = Workbook()
    ws = wb.active
    ws.title = "考生"
    ws.append(COLUMNS)
    for n in range(first, first + count):
        p = person(n)
        row = [p["name"], p["id_number"], p["phone"], p["education"][1], 3, 1.5]
        for code, number, issuer, issued in p["certs"]:
            row += [code, number, issuer, issued, None, None]
        ws.append(row)
    buffer = BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


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
    from audit.models import AuditEvent
    from cases.imports import candidate_import
    from cases.models import Candidate, HeldCertificate

    actor = coordinator()
    baseline_seconds = one_by_one(actor, first=ROWS, count=BASELINE_ROWS)
    baseline = BASELINE_ROWS / baseline_seconds

    data = build_file(0, ROWS)
    marks = {}
    started = time.perf_counter()
    result = candidate_import(
        actor=actor,
        file=data,
        on_progress=lambda done, total: marks.__setitem__("validated", time.perf_counter()),
        on_written=lambda r: marks.__setitem__("written", time.perf_counter()),
    )
    seconds = time.perf_counter() - started
    assert result.ok, result.errors[:5]
    assert result.created == ROWS
    assert Candidate.objects.count() == ROWS + BASELINE_ROWS
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
        "validate_seconds": round(marks["validated"] - started, 3),
        "write_seconds": round(marks["written"] - marks["validated"], 3),
        "held_certificates": result.held_created,
        "baseline_rows": BASELINE_ROWS,
        "baseline_seconds": round(baseline_seconds, 3),
        "audit_events": AuditEvent.objects.count(),
        "held_certificates_total": HeldCertificate.objects.count(),
        "line": LINE.format(figure=figure, baseline=baseline, ratio=ratio),
    }


if __name__ == "__main__":
    from bench import _support

    _support.django_setup()
    with _support.test_database():
        outcome = run()
        _support.write_result(outcome)
    _support.update_readme()
    print(outcome["line"])
