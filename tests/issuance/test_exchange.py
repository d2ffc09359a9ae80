"""Data exchange (issue 4 item 7): the export for the national query (CSV/XLSX, command
and beat task), the import of another department's list against held certificates, and
the review reminder."""

import csv
from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone
from openpyxl import Workbook, load_workbook

from audit.models import AuditEvent
from cases.models import Verification
from issuance import services, tasks
from issuance.exchange import EXPORT_HEADER, quarter_bounds, registry_import
from issuance.models import ExchangeImport
from tests.cases.factories import UserFactory, coordinator, hold, register
from tests.issuance.factories import (
    BOTH,
    SKILL_ONLY,
    department,
    institution,
    officer,
    passed_cases,
)

pytestmark = pytest.mark.django_db

HEADER_LINE = (
    "holder_name,id_number,certificate_type,occupation_code,level,number,issuer_code,"
    "issue_date,valid_until,status,verification_url"
)
Q3 = (date(2026, 7, 1), date(2026, 9, 30))


def _issue_all(days):
    """Open the certificates of a BOTH and a SKILL_ONLY case and issue them on `days`
    (qualification of case 1, skill of case 1, skill of case 2). Returns them so."""
    officers = {"qualification": officer(department()), "skill": officer(institution())}
    cases = passed_cases(scores=(BOTH, SKILL_ONLY))
    opened = services.certificates_open(case_ids=[c.pk for c in cases])
    opened.sort(key=lambda c: (c.case_id, c.kind != "qualification"))
    issued = []
    for certificate, on in zip(opened, days, strict=True):
        actor = officers[certificate.kind]
        certificate = services.certificate_approve(actor=actor, certificate=certificate)
        issued.append(services.certificate_issue(actor=actor, certificate=certificate, on=on))
    return issued


@pytest.fixture
def issued():
    # Two in Q3 2026, the third just after it: the period filter must drop it.
    return _issue_all([date(2026, 9, 20), date(2026, 9, 21), date(2026, 10, 2)])


def _url(certificate):
    return f"http://127.0.0.1:8000/verify/{certificate.verification_code}/"


# Export ------------------------------------------------------------------------------


def test_quarter_bounds_gives_the_quarter_before_the_day():
    assert quarter_bounds(date(2026, 11, 22)) == (date(2026, 7, 1), date(2026, 9, 30))
    assert quarter_bounds(date(2026, 1, 1)) == (date(2025, 10, 1), date(2025, 12, 31))
    assert quarter_bounds(date(2026, 4, 1)) == (date(2026, 1, 1), date(2026, 3, 31))


def test_quarter_bounds_gives_the_current_quarter_when_asked():
    assert quarter_bounds(date(2026, 11, 22), previous=False) == (
        date(2026, 10, 1),
        date(2026, 12, 31),
    )
    assert quarter_bounds(date(2026, 3, 31), previous=False) == (
        date(2026, 1, 1),
        date(2026, 3, 31),
    )


def test_export_csv_has_bom_exact_header_and_rows(issued, tmp_path, capsys, settings):
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    qualification, skill, _later = issued
    output = tmp_path / "q3.csv"
    call_command(
        "export_certificates", "--from", "2026-07-01", "--to", "2026-09-30", "--output", output
    )
    data = output.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0] == HEADER_LINE
    assert len(lines) == 3  # the certificate issued on 2026-10-02 is outside Q3
    rows = list(csv.reader(lines[1:]))
    holder = qualification.case.candidate
    assert rows[0] == [
        holder.name,
        holder.id_number,
        "MEM-WELD-FC",
        "6-18-02-04",
        "",  # qualification certificates have no level
        "T" + holder.id_number,
        "mem-14",
        "2026-09-20",
        "2032-09-19",  # six years of validity
        "issued",
        _url(qualification),
    ]
    assert rows[1][2:5] == ["SKILL", "6-18-02-04", "5"]
    assert rows[1][5] == skill.number
    assert rows[1][6:] == ["inst-s1234", "2026-09-21", "", "issued", _url(skill)]
    assert "已导出 2 条证书记录（发证日期 2026-07-01 至 2026-09-30）" in capsys.readouterr().out


def test_export_includes_revoked_certificates_with_their_status(issued, tmp_path):
    qualification = issued[0]
    services.certificate_revoke(
        actor=qualification.issued_by, certificate=qualification, reason="伪造材料"
    )
    output = tmp_path / "q3.csv"
    call_command(
        "export_certificates", "--from", "2026-07-01", "--to", "2026-09-30", "--output", output
    )
    rows = list(csv.reader(output.read_text(encoding="utf-8-sig").splitlines()[1:]))
    assert [r[9] for r in rows] == ["revoked", "issued"]


def test_export_xlsx_has_the_same_header_bold_and_text_ids(issued, tmp_path):
    qualification = issued[0]
    output = tmp_path / "q3.xlsx"
    call_command(
        "export_certificates",
        "--from",
        "2026-07-01",
        "--to",
        "2026-09-30",
        "--format",
        "xlsx",
        "--output",
        output,
    )
    sheet = load_workbook(output).worksheets[0]
    header = [cell.value for cell in sheet[1]]
    assert header == list(EXPORT_HEADER)
    assert all(cell.font.b for cell in sheet[1])
    assert sheet.max_row == 3
    id_cell, number_cell = sheet["B2"], sheet["F2"]
    assert id_cell.value == qualification.holder_id_number
    assert id_cell.data_type == "s"
    assert id_cell.number_format == "@"
    assert number_cell.value == qualification.number
    assert number_cell.number_format == "@"
    assert sheet["E2"].value is None
    assert sheet["H2"].value.date() == date(2026, 9, 20)


def test_export_period_excludes_certificates_issued_outside_it(issued, tmp_path):
    later = issued[2]
    output = tmp_path / "october.csv"
    call_command(
        "export_certificates", "--from", "2026-10-01", "--to", "2026-10-31", "--output", output
    )
    lines = output.read_text(encoding="utf-8-sig").splitlines()
    assert len(lines) == 2
    assert lines[1].split(",")[5] == later.number


def test_export_defaults_to_the_previous_quarter(tmp_path, capsys):
    first, last = quarter_bounds(timezone.localdate())
    _issue_all([first, last, last + timedelta(days=1)])
    output = tmp_path / "default.csv"
    call_command("export_certificates", "--output", output)
    assert len(output.read_text(encoding="utf-8-sig").splitlines()) == 3
    assert f"已导出 2 条证书记录（发证日期 {first} 至 {last}）" in capsys.readouterr().out


def test_export_refuses_a_bad_date(tmp_path):
    with pytest.raises(CommandError) as caught:
        call_command("export_certificates", "--from", "2026-13-01", "--output", tmp_path / "x")
    assert str(caught.value) == "--from 日期格式应为 YYYY-MM-DD，收到「2026-13-01」"
    assert not (tmp_path / "x").exists()


def test_export_refuses_from_after_to(tmp_path):
    with pytest.raises(CommandError) as caught:
        call_command(
            "export_certificates",
            "--from",
            "2026-10-01",
            "--to",
            "2026-09-30",
            "--output",
            tmp_path / "x.csv",
        )
    assert str(caught.value) == "--from（2026-10-01）不能晚于 --to（2026-09-30）"


def test_quarterly_task_writes_both_files_and_reruns_in_place(issued, tmp_path, settings):
    settings.EXCHANGE_DIR = tmp_path / "exchange"
    assert tasks.certificates_export_quarter.delay("2026-11-22").get() == 2
    written = sorted(p.name for p in settings.EXCHANGE_DIR.iterdir())
    assert written == ["certificates-2026Q3.csv", "certificates-2026Q3.xlsx"]
    first_csv = (settings.EXCHANGE_DIR / "certificates-2026Q3.csv").read_bytes()
    assert first_csv.decode("utf-8-sig").splitlines()[0] == HEADER_LINE
    sheet = load_workbook(settings.EXCHANGE_DIR / "certificates-2026Q3.xlsx").worksheets[0]
    assert sheet.max_row == 3
    # Idempotent: a rerun rewrites the same names with the same content, nothing else.
    assert tasks.certificates_export_quarter("2026-11-22") == 2
    assert sorted(p.name for p in settings.EXCHANGE_DIR.iterdir()) == written
    assert (settings.EXCHANGE_DIR / "certificates-2026Q3.csv").read_bytes() == first_csv


def test_review_reminder_counts_certificates_due_within_90_days_per_issuer(issued):
    qualification = issued[0]
    assert qualification.review_due == date(2029, 9, 20)  # MEM: reviewed every 3 years
    assert tasks.certificates_review_reminder("2029-06-22") == {"mem-14": 1}
    assert tasks.certificates_review_reminder("2029-06-21") == {}  # 91 days ahead
    assert tasks.certificates_review_reminder("2029-09-21") == {}  # already past


# Import ------------------------------------------------------------------------------


@pytest.fixture
def coord():
    return coordinator("exchange-coord")


@pytest.fixture
def held(coord):
    candidate = register(coord, name="李四")
    return hold(coord, candidate, "SAMR-WELD", verified=False)


def _csv(rows, header=HEADER_LINE, bom=False) -> bytes:
    text = "\n".join([header, *rows]) + "\n"
    return text.encode("utf-8-sig" if bom else "utf-8")


def _row(held, *, id_number=None, number=None, status="issued", issue_date="2024-03-01"):
    fields = [
        "李四",
        id_number or held.candidate.id_number,
        "SAMR-WELD",
        "6-18-02-04",
        "",
        number or held.number,
        "samr-14",
        issue_date,
        "2028-02-29",
        status,
        "",
    ]
    return ",".join(fields)


def test_import_marks_a_matching_held_certificate_verified_in_registry(coord, held):
    other = register(coord, name="王五")
    data = _csv(
        [
            _row(held),
            _row(held, id_number=other.id_number),  # same number, another person: no match
            _row(held, number="TS99999999"),  # not held by anyone here
        ],
        bom=True,
    )
    record = registry_import(actor=coord, file=data, source="山西省市场监督管理局", name="l.csv")
    assert (record.rows, record.matched, record.file_name) == (3, 1, "l.csv")
    held.refresh_from_db()
    assert held.verification == Verification.REGISTRY
    assert (
        held.verification_note == f"证书库核验：山西省市场监督管理局《l.csv》（导入 #{record.pk}）"
    )
    assert held.verified_by == coord
    event = AuditEvent.objects.get(action="exchange.import")
    assert event.object_id == str(record.pk)
    assert event.changes["matched"] == {"before": None, "after": 1}
    assert (
        AuditEvent.objects.filter(action="held_certificate.verify", object_id=str(held.pk)).count()
        == 1
    )


def test_import_again_changes_nothing_more(coord, held):
    data = _csv([_row(held)])
    registry_import(actor=coord, file=data, source="市场监管局", name="l.csv")
    second = registry_import(actor=coord, file=data, source="市场监管局", name="l.csv")
    assert second.matched == 1
    assert AuditEvent.objects.filter(action="held_certificate.verify").count() == 1
    assert AuditEvent.objects.filter(action="exchange.import").count() == 2


def test_import_ignores_rows_without_a_matching_held_certificate(coord, held):
    record = registry_import(
        actor=coord, file=_csv([_row(held, number="TS99999999")]), source="市场监管局"
    )
    assert (record.rows, record.matched) == (1, 0)
    held.refresh_from_db()
    assert held.verification == Verification.UNVERIFIED


def test_import_revoked_row_marks_the_held_certificate_rejected(coord, held):
    record = registry_import(
        actor=coord, file=_csv([_row(held, status="revoked")]), source="市场监管局", name="r.csv"
    )
    held.refresh_from_db()
    assert held.verification == Verification.REJECTED
    assert held.verification_note == (
        f"证书库显示该证书已吊销/注销。证书库核验：市场监管局《r.csv》（导入 #{record.pk}）"
    )


def test_import_reads_xlsx_with_date_cells(coord, held, tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(list(EXPORT_HEADER))
    sheet.append(
        [
            "李四",
            held.candidate.id_number,
            "SAMR-WELD",
            "6-18-02-04",
            None,
            held.number,
            "samr-14",
            date(2024, 3, 1),
            date(2028, 2, 29),
            "issued",
            None,
        ]
    )
    path = tmp_path / "list.xlsx"
    workbook.save(path)
    record = registry_import(actor=coord, file=path, source="市场监管局")
    assert (record.file_name, record.rows, record.matched) == ("list.xlsx", 1, 1)
    held.refresh_from_db()
    assert held.verification == Verification.REGISTRY


def test_import_malformed_row_aborts_and_writes_nothing(coord, held):
    data = _csv([_row(held), _row(held, number="TS99999999", issue_date="2024/03/01")])
    with pytest.raises(ValidationError) as caught:
        registry_import(actor=coord, file=data, source="市场监管局")
    assert caught.value.messages == ["第 3 行「issue_date」：日期格式应为 YYYY-MM-DD"]
    held.refresh_from_db()
    assert held.verification == Verification.UNVERIFIED
    assert ExchangeImport.objects.count() == 0
    assert not AuditEvent.objects.filter(action="exchange.import").exists()


def test_import_names_every_bad_cell(coord, held):
    bad = _row(held, status="valid").replace("SAMR-WELD", "NOPE")
    with pytest.raises(ValidationError) as caught:
        registry_import(actor=coord, file=_csv([bad, _row(held), _row(held)]), source="X")
    assert caught.value.messages == [
        "第 2 行「certificate_type」：未知的证书类型代码「NOPE」",
        "第 2 行「status」：状态应为 issued 或 revoked",
        "第 4 行「number」：与第 3 行重复",
    ]


def test_import_missing_column_aborts(coord, held):
    header = HEADER_LINE.replace(",valid_until", "")
    row = _row(held).replace(",2028-02-29", "")
    with pytest.raises(ValidationError) as caught:
        registry_import(actor=coord, file=_csv([row], header=header), source="X")
    assert caught.value.messages == ["第 1 行：缺少列「valid_until」"]


def test_import_needs_a_coordinator(held):
    from django.core.exceptions import PermissionDenied

    grader = UserFactory(username="exchange-grader", roles=["grader"])
    with pytest.raises(PermissionDenied):
        registry_import(actor=grader, file=_csv([_row(held)]), source="X")


def test_import_command_prints_the_matched_count(held, tmp_path, capsys):
    UserFactory(username="root", is_superuser=True)
    path = tmp_path / "list.csv"
    path.write_bytes(_csv([_row(held)], bom=True))
    call_command("import_certificates", "--source", "市场监管局", "--file", path)
    assert "已导入 1 行，匹配已持证书 1 本" in capsys.readouterr().out
    record = ExchangeImport.objects.get()
    assert record.created_by.username == "root"


def test_import_command_error_names_row_and_column(held, tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(_csv([_row(held).replace("SAMR-WELD", "NOPE")]))
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_certificates", "--source", "X", "--file", path, "--actor", "exchange-coord"
        )
    assert str(caught.value) == (
        "导入失败，未写入任何数据：\n第 2 行「certificate_type」：未知的证书类型代码「NOPE」"
    )
    assert ExchangeImport.objects.count() == 0
