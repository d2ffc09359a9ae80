"""Bulk registration from XLSX (cases.imports, cases.tasks, the pages and the API)."""

import time
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import BytesIO

import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from openpyxl import Workbook, load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._reader import WorkSheetParser
from stdnum.cn import ric

from audit.models import AuditEvent
from cases import imports, services
from cases.imports import COLUMNS, NOT_XLSX, RowError, candidate_import
from cases.models import Candidate, HeldCertificate, ImportJob, ImportJobStatus, WorkExperience
from cases.tasks import candidate_import_run

from .factories import UserFactory, coordinator, make_id_number, register

pytestmark = pytest.mark.django_db

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\0" * 40


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def person(id_number=None, *, certs=(), **cells):
    """One data row as {column: value}; `certs` fill the 证书1…/证书2… groups."""
    row = {
        "姓名": "张三",
        "身份证号码": id_number or make_id_number(),
        "联系电话": "13800138000",
        "文化程度": "高中/中专/技校",
        "电工从业年限": 3,
        "焊工从业年限": None,
    }
    for slot, cert in enumerate(certs, start=1):
        for part, value in cert.items():
            row[f"证书{slot}{part}"] = value
    row.update(cells)
    return row


def mem_cert(id_number, code="MEM-ELEC-LV", **parts):
    return {
        "类型代码": code,
        "编号": f"T{id_number}",
        "发证机关": "北京市应急管理局",
        "发证日期": datetime(2024, 3, 15),
        **parts,
    }


def xlsx(rows, *, columns=COLUMNS, title="考生", write_only=False) -> bytes:
    wb = Workbook(write_only=write_only)
    ws = wb.create_sheet(title) if write_only else wb.active
    if not write_only:
        ws.title = title
    ws.append(list(columns))
    for row in rows:
        ws.append([row.get(column) for column in columns])
    buffer = BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def errors_of(result):
    return [(e.row, e.column, e.message) for e in result.errors]


def assert_nothing_written():
    assert Candidate.objects.count() == 0
    assert HeldCertificate.objects.count() == 0
    assert WorkExperience.objects.count() == 0
    assert AuditEvent.objects.count() == 0


# A clean file -------------------------------------------------------------------------


def test_clean_file_registers_every_row_with_held_certificates_and_audit_events(coord):
    first, second, third = (make_id_number(date(1990, 5, 17), s) for s in ("M", "F", "M"))
    samr = {"类型代码": "SAMR-WELD", "编号": "TS20240001", "发证机关": "山西省市场监督管理局"}
    rows = [
        person(
            first, certs=[mem_cert(first), {**samr, "发证日期": "2023-06-01"}], 焊工从业年限=2.5
        ),
        person(second, 姓名=" 欧阳娜娜 ", 文化程度="大专", certs=[mem_cert(second, "MEM-WELD-FC")]),
        person(third, 电工从业年限=None, 联系电话=13900001111),
    ]

    result = candidate_import(actor=coord, file=xlsx(rows))

    assert result.errors == []
    assert (result.total_rows, result.created, result.held_created) == (3, 3, 3)
    nana = Candidate.objects.get(id_number=second)
    assert (nana.name, nana.sex, nana.birth_date, nana.education) == (
        "欧阳娜娜",
        "F",
        date(1990, 5, 17),
        "college",
    )
    assert nana.created_by == coord
    assert Candidate.objects.get(id_number=third).phone == "13900001111"
    held = HeldCertificate.objects.get(number=f"T{first}")
    # The expiry defaults to the type's validity (6 years for MEM) as in the service.
    assert (held.issue_date, held.expiry_date) == (date(2024, 3, 15), date(2030, 3, 14))
    assert HeldCertificate.objects.get(number="TS20240001").issue_date == date(2023, 6, 1)
    years = {
        (w.candidate.id_number, w.occupation.code): w.years
        for w in WorkExperience.objects.select_related("candidate", "occupation")
    }
    assert years == {
        (first, "6-31-01-03"): Decimal("3.0"),
        (first, "6-18-02-04"): Decimal("2.5"),
        (second, "6-31-01-03"): Decimal("3.0"),
    }
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions == [
        "candidate.create",
        "held_certificate.create",
        "held_certificate.create",
        "candidate.create",
        "held_certificate.create",
        "candidate.create",
    ]
    call_command("audit_verify")


def test_audit_changes_match_the_single_create_services(coord):
    single = register(coord, work_years={"6-31-01-03": "3"})
    services.held_certificate_create(
        actor=coord,
        candidate=single,
        qualification_type="MEM-ELEC-LV",
        number=f"T{single.id_number}",
        issuer_name="北京市应急管理局",
        issue_date=date(2024, 3, 15),
    )
    number = make_id_number()
    candidate_import(actor=coord, file=xlsx([person(number, certs=[mem_cert(number)])]))
    imported = Candidate.objects.get(id_number=number)

    def changes(action, instance_filter):
        return AuditEvent.objects.get(action=action, **instance_filter).changes

    one = changes("candidate.create", {"object_id": str(single.pk)})
    bulk = changes("candidate.create", {"object_id": str(imported.pk)})
    assert sorted(bulk) == sorted(one)
    assert bulk["id_number"] == {"before": None, "after": number}
    assert bulk["work_years"] == {"before": None, "after": {"6-31-01-03": "3"}}
    held_one, held_bulk = (
        AuditEvent.objects.filter(action="held_certificate.create")
        .order_by("seq")
        .values_list("changes", flat=True)
    )
    assert sorted(held_bulk) == sorted(held_one)
    assert held_bulk["expiry_date"] == {"before": None, "after": "2030-03-14"}
    assert held_bulk["verification"] == {"before": None, "after": "unverified"}


def test_template_has_every_column_and_dropdowns_and_imports_once_filled(coord):
    wb = load_workbook(BytesIO(imports.template_workbook()))
    assert wb.sheetnames == ["考生", "说明"]
    ws = wb["考生"]
    assert [cell.value for cell in ws[1]] == COLUMNS
    assert ws.max_row == 1
    sqrefs = sorted(str(rule.sqref) for rule in ws.data_validations.dataValidation)
    assert sqrefs == ["D2:D20001", "G2:G20001 M2:M20001"]
    number = make_id_number()
    for column, value in person(number, certs=[mem_cert(number)]).items():
        ws.cell(row=2, column=COLUMNS.index(column) + 1, value=value)
    buffer = BytesIO()
    wb.save(buffer)

    result = candidate_import(actor=coord, file=buffer.getvalue())

    assert (result.errors, result.created, result.held_created) == ([], 1, 1)


def test_template_download_is_an_xlsx_attachment(client, coord):
    client.force_login(coord)
    response = client.get(reverse("cases:candidate-import-template"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert response["Content-Disposition"].startswith("attachment; filename*=utf-8''")
    assert load_workbook(BytesIO(response.content)).sheetnames == ["考生", "说明"]


def test_blank_rows_are_skipped_and_row_numbers_are_excels(coord):
    good = make_id_number()
    rows = [person(good), {}, person("110105199001011234")]

    result = candidate_import(actor=coord, file=xlsx(rows))

    assert errors_of(result) == [(4, "身份证号码", "身份证号码校验位错误")]
    assert result.total_rows == 2


# Bad input: nothing written ------------------------------------------------------------


def test_missing_columns_are_named_and_nothing_written(coord):
    columns = [c for c in COLUMNS if c not in {"联系电话", "证书2发证日期"}]

    result = candidate_import(actor=coord, file=xlsx([person()], columns=columns))

    assert errors_of(result) == [
        (1, "联系电话", "缺少必需的列「联系电话」（请使用系统提供的模板）"),
        (1, "证书2发证日期", "缺少必需的列「证书2发证日期」（请使用系统提供的模板）"),
    ]
    assert_nothing_written()


def test_wrong_types_are_reported_by_row_and_column_and_nothing_written(coord):
    number, fourth = make_id_number(), make_id_number()
    rows = [
        person(number),  # a good row: written only if the whole file is good
        person(110105199005170011.0),
        person(电工从业年限="三年", 文化程度="博士"),
        person(fourth, certs=[mem_cert(fourth, 发证日期="昨天")]),
    ]

    result = candidate_import(actor=coord, file=xlsx(rows))

    assert errors_of(result) == [
        (3, "身份证号码", "身份证号码须以文本格式填写（数字格式会丢失末几位）"),
        (4, "文化程度", "文化程度应为以下之一：小学、初中、高中/中专/技校、大专、本科、研究生"),
        (4, "电工从业年限", "应为数字（年），如 3 或 2.5"),
        (5, "证书1发证日期", "应为日期，如 2024-03-15"),
    ]
    assert result.created == 0
    assert_nothing_written()


def test_field_rules_of_the_models_and_services_apply(coord):
    number, other = make_id_number(), make_id_number()
    rows = [
        person(number, 姓名="", 联系电话="12345", 电工从业年限=-1),
        person(
            other,
            certs=[
                mem_cert(number),  # holder mismatch
                {"类型代码": "XYZ", "编号": "1", "发证机关": "某局", "发证日期": "2024-01-01"},
            ],
        ),
        person(
            certs=[
                {
                    "类型代码": "SAMR-WELD",
                    "编号": "TS20240002",
                    "发证日期": "2024-02-30",
                    "有效期至": "2020-01-01",
                },
                {
                    "类型代码": "SAMR-WELD",
                    "编号": "TS20240003",
                    "发证机关": "某局",
                    "发证日期": "2024-01-01",
                    "有效期至": "2023-12-31",
                },
            ]
        ),
    ]

    result = candidate_import(actor=coord, file=xlsx(rows))

    assert errors_of(result) == [
        (2, "姓名", "请填写姓名"),
        (2, "联系电话", "请输入11位手机号码或带区号的固定电话"),
        (2, "电工从业年限", "确保该值大于或等于0。"),
        (3, "证书1编号", "特种作业操作证 · 低压电工作业的编号应为 T + 持证人身份证号码"),
        (3, "证书2类型代码", "未知的证书类型代码：XYZ"),
        (4, "证书1发证机关", "请填写证书1发证机关"),
        (4, "证书1发证日期", "2024-02-30 不是有效的日期"),
        (4, "证书2有效期至", "有效期至不能早于发证日期"),
    ]
    assert_nothing_written()


def test_duplicate_id_numbers_within_the_file(coord):
    number = make_id_number()

    result = candidate_import(
        actor=coord, file=xlsx([person(number), person(), person(number.lower())])
    )

    assert errors_of(result) == [(4, "身份证号码", "身份证号码与第 2 行重复")]
    assert_nothing_written()


def test_id_numbers_already_registered(coord):
    existing = register(coord)
    events = AuditEvent.objects.count()

    result = candidate_import(actor=coord, file=xlsx([person(), person(existing.id_number)]))

    assert errors_of(result) == [(3, "身份证号码", "该身份证号码已登记")]
    assert Candidate.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_duplicate_certificate_numbers_within_the_file_and_registered(coord):
    existing = register(coord)
    services.held_certificate_create(
        actor=coord,
        candidate=existing,
        qualification_type="SAMR-WELD",
        number="TS00000001",
        issuer_name="山西省市场监督管理局",
        issue_date=date(2024, 1, 1),
    )
    samr = {"类型代码": "SAMR-WELD", "发证机关": "山西省市场监督管理局", "发证日期": "2024-01-01"}
    rows = [
        person(certs=[{**samr, "编号": "TS00000002"}, {**samr, "编号": "ts00000002"}]),
        person(certs=[{**samr, "编号": "TS00000003"}]),
        person(certs=[{**samr, "编号": "TS00000003"}, {**samr, "编号": "TS00000001"}]),
    ]

    result = candidate_import(actor=coord, file=xlsx(rows))

    assert errors_of(result) == [
        (2, "证书2编号", "证书编号 TS00000002 与本行「证书1编号」重复"),
        (4, "证书1编号", "证书编号 TS00000003 与第 3 行重复"),
        (4, "证书2编号", "证书编号 TS00000001 已登记"),
    ]
    assert Candidate.objects.count() == 1
    assert HeldCertificate.objects.count() == 1


def test_error_report_masks_id_numbers_inside_mem_certificate_numbers(coord):
    existing = register(coord)
    number = existing.id_number
    services.held_certificate_create(
        actor=coord,
        candidate=existing,
        qualification_type="MEM-ELEC-LV",
        number=f"T{number}",
        issuer_name="北京市应急管理局",
        issue_date=date(2025, 1, 1),
    )
    result = candidate_import(actor=coord, file=xlsx([person(certs=[mem_cert(number)])]))
    masked = "T" + number[:3] + "*" * 11 + number[-4:]
    assert (2, "证书1编号", f"证书编号 {masked} 已登记") in errors_of(result)
    assert number not in str(errors_of(result))


def test_file_over_the_row_limit_is_refused(coord, settings):
    settings.IMPORT_MAX_ROWS = 3

    result = candidate_import(actor=coord, file=xlsx([person() for _ in range(4)]))

    assert errors_of(result) == [
        (
            None,
            "",
            "工作表共 5 行（含表头），超过单次导入上限 3 行；请删除多余的空行或拆分后分批导入",
        )
    ]
    assert_nothing_written()


def test_file_over_the_row_limit_without_a_recorded_dimension_is_refused(coord, settings):
    # openpyxl's write-only mode records no <dimension>: rows are counted while read.
    settings.IMPORT_MAX_ROWS = 3

    data = xlsx([person() for _ in range(4)], write_only=True)
    result = candidate_import(actor=coord, file=data)

    assert load_workbook(BytesIO(data), read_only=True)["考生"].max_row is None
    assert errors_of(result) == [(None, "", "数据行超过单次导入上限 3 行；请拆分后分批导入")]
    assert_nothing_written()


def test_a_recorded_dimension_that_is_too_small_does_not_drop_rows(coord):
    # A writer that records fewer rows than it wrote must not make us import part of it.
    data = xlsx([person(), person()])
    last = get_column_letter(len(COLUMNS)).encode()
    data = _rewrite_sheet(
        data, b'<dimension ref="A1:' + last + b'3"', b'<dimension ref="A1:' + last + b'2"'
    )
    assert load_workbook(BytesIO(data), read_only=True)["考生"].max_row == 2

    result = candidate_import(actor=coord, file=data)

    assert (result.errors, result.created) == ([], 2)


def _rewrite_sheet(data: bytes, old: bytes, new: bytes) -> bytes:
    source = zipfile.ZipFile(BytesIO(data))
    out = BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                assert old in content
                content = content.replace(old, new)
            target.writestr(info, content)
    return out.getvalue()


@pytest.fixture(scope="module")
def fifty_thousand_rows():
    """A real 50,000-row workbook, its sheet XML written directly (openpyxl takes seconds)."""
    data = xlsx([])
    rows = "".join(
        f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>张三</t></is></c>'
        f'<c r="B{n}" t="inlineStr"><is><t>{n:018d}</t></is></c></row>'
        for n in range(2, 50_002)
    ).encode()
    last = get_column_letter(len(COLUMNS)).encode()
    data = _rewrite_sheet(
        data, b'<dimension ref="A1:' + last + b'1"', b'<dimension ref="A1:' + last + b'50001"'
    )
    data = _rewrite_sheet(data, b"</row></sheetData>", b"</row>" + rows + b"</sheetData>")
    sheet = load_workbook(BytesIO(data), read_only=True)["考生"]
    assert sheet.max_row == 50_001
    assert list(sheet.iter_rows(min_row=2, max_row=3, max_col=2, values_only=True)) == [
        ("张三", "000000000000000002"),
        ("张三", "000000000000000003"),
    ]
    return data


def test_a_50000_row_file_is_refused_quickly_without_parsing_its_rows(
    coord, fifty_thousand_rows, monkeypatch
):
    def no_parsing(self):
        raise AssertionError("rows were parsed")

    monkeypatch.setattr(WorkSheetParser, "parse", no_parsing)
    started = time.perf_counter()

    result = candidate_import(actor=coord, file=fifty_thousand_rows)

    assert time.perf_counter() - started < 2
    assert errors_of(result) == [
        (
            None,
            "",
            "工作表共 50001 行（含表头），超过单次导入上限 20000 行；"
            "请删除多余的空行或拆分后分批导入",
        )
    ]
    assert_nothing_written()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("姓名,身份证号码\n张三,110105199005170011\n".encode(), id="text"),
        pytest.param(PNG, id="png"),
        pytest.param(b"", id="empty"),
        pytest.param(b"PK\x03\x04 truncated zip", id="broken-zip"),
    ],
)
def test_a_file_that_is_not_xlsx_is_refused(coord, content):
    result = candidate_import(actor=coord, file=SimpleUploadedFile("名单.xlsx", content))

    assert errors_of(result) == [(None, "", NOT_XLSX)]
    assert_nothing_written()


def test_a_zip_that_is_not_a_workbook_is_refused(coord):
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")

    result = candidate_import(actor=coord, file=buffer.getvalue())

    assert errors_of(result) == [(None, "", NOT_XLSX)]


def test_a_file_over_the_size_limit_is_refused(coord, settings):
    settings.IMPORT_MAX_BYTES = 1024 * 1024
    result = candidate_import(actor=coord, file=b"PK" + b"\0" * (1024 * 1024))

    assert errors_of(result) == [(None, "", "文件不能超过 1 MB")]


def test_a_sheet_without_data_rows_is_refused(coord):
    result = candidate_import(actor=coord, file=xlsx([]))

    assert errors_of(result) == [(None, "", "文件中没有考生数据（自第 2 行起每行填写一名考生）")]


def test_a_non_coordinator_may_not_import(coord):
    grader = UserFactory(username="grader", roles=["grader"])
    with pytest.raises(PermissionDenied):
        candidate_import(actor=grader, file=xlsx([person()]))
    with pytest.raises(PermissionDenied):
        imports.import_job_create(actor=grader, file=xlsx([person()]), name="a.xlsx")
    assert_nothing_written()
    assert ImportJob.objects.count() == 0


def test_progress_is_reported_while_validating(coord, monkeypatch):
    monkeypatch.setattr(imports, "PROGRESS_EVERY", 2)
    seen = []

    candidate_import(
        actor=coord,
        file=xlsx([person() for _ in range(5)]),
        on_progress=lambda done, total: seen.append((done, total)),
    )

    assert seen == [(2, 5), (4, 5), (5, 5)]


# Jobs and the task ---------------------------------------------------------------------


def job_for(user, rows, name="名单.xlsx"):
    return imports.import_job_create(actor=user, file=xlsx(rows), name=name)


def test_job_is_queued_on_commit_and_runs_to_success(coord, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = job_for(coord, [person(), person()])
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.status == ImportJobStatus.SUCCEEDED
    assert (job.total_rows, job.processed_rows, job.created_count) == (2, 2, 2)
    assert job.errors == []
    assert job.started_at <= job.finished_at
    assert job.original_name == "名单.xlsx"
    assert job.file.name.startswith("imports/")
    assert Candidate.objects.count() == 2


def test_job_with_errors_fails_with_the_report_and_progress_at_total(
    coord, django_capture_on_commit_callbacks
):
    number = make_id_number()
    with django_capture_on_commit_callbacks(execute=True):
        job = job_for(coord, [person(number), person(number)])
    job.refresh_from_db()
    assert job.status == ImportJobStatus.FAILED
    assert job.errors == [{"row": 3, "column": "身份证号码", "message": "身份证号码与第 2 行重复"}]
    assert (job.total_rows, job.processed_rows, job.created_count) == (2, 2, 0)
    assert job.finished_at is not None
    assert_nothing_written()


def test_task_run_twice_does_nothing_the_second_time(coord, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_for(coord, [person()])

    assert candidate_import_run(job.pk) is True
    events = AuditEvent.objects.count()
    assert candidate_import_run(job.pk) is False

    job.refresh_from_db()
    assert (job.status, job.created_count) == (ImportJobStatus.SUCCEEDED, 1)
    assert Candidate.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_a_running_job_is_not_claimed_again_until_it_is_stale(
    coord, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_for(coord, [person()])
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJobStatus.RUNNING, started_at=timezone.now()
    )
    assert candidate_import_run(job.pk) is False
    assert Candidate.objects.count() == 0

    # A worker lost mid-run wrote nothing (one transaction): the job may run again.
    ImportJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(hours=1))
    assert candidate_import_run(job.pk) is True
    job.refresh_from_db()
    assert (job.status, job.created_count) == (ImportJobStatus.SUCCEEDED, 1)


def test_sweep_runs_jobs_whose_dispatch_was_lost_or_whose_worker_died(
    coord, django_capture_on_commit_callbacks
):
    from cases.tasks import candidate_import_sweep

    with django_capture_on_commit_callbacks(execute=False):  # dispatch "lost"
        lost = job_for(coord, [person()])
        fresh = job_for(coord, [person()])
        stranded = job_for(coord, [person()])
    hour_ago = timezone.now() - timedelta(hours=1)
    ImportJob.objects.filter(pk=lost.pk).update(created_at=hour_ago)
    ImportJob.objects.filter(pk=stranded.pk).update(
        status=ImportJobStatus.RUNNING, started_at=hour_ago, created_at=hour_ago
    )

    assert sorted(candidate_import_sweep()) == sorted([lost.pk, stranded.pk])

    statuses = dict(ImportJob.objects.values_list("pk", "status"))
    assert statuses == {
        lost.pk: ImportJobStatus.SUCCEEDED,
        fresh.pk: ImportJobStatus.PENDING,
        stranded.pk: ImportJobStatus.SUCCEEDED,
    }
    assert candidate_import_sweep() == []


def test_uploader_who_lost_the_role_gets_a_failed_job(coord, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_for(coord, [person()])
    coord.groups.clear()

    candidate_import_run(job.pk)

    job.refresh_from_db()
    assert job.status == ImportJobStatus.FAILED
    assert job.errors == [{"row": None, "column": "", "message": "需要以下角色之一：考务人员"}]
    assert_nothing_written()


# Pages -------------------------------------------------------------------------------


def test_upload_page_lists_recent_jobs_and_links_the_template(client, coord):
    job = ImportJob.objects.create(uploaded_by=coord, original_name="旧名单.xlsx", file="x.xlsx")
    client.force_login(coord)

    response = client.get(reverse("cases:candidate-import"))

    assert response.status_code == 200
    page = response.content.decode()
    assert reverse("cases:candidate-import-template") in page
    assert reverse("cases:import-job-detail", args=[job.pk]) in page
    assert "旧名单.xlsx" in page


def test_upload_page_runs_the_import_and_shows_the_error_table(
    client, coord, django_capture_on_commit_callbacks
):
    client.force_login(coord)
    upload = SimpleUploadedFile("名单.xlsx", xlsx([person("110105199001011234")]))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("cases:candidate-import"), {"file": upload})

    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("cases:import-job-detail", args=[job.pk])
    page = client.get(response["Location"]).content.decode()
    assert "导入失败：发现 1 个问题，未写入任何数据" in page
    assert '<td class="num">2</td><td>身份证号码</td><td>身份证号码校验位错误</td>' in page
    assert "js/jobs.js" not in page  # finished: nothing to poll


def test_job_page_of_a_running_job_polls_the_progress_endpoint(client, coord):
    job = ImportJob.objects.create(
        uploaded_by=coord, file="x.xlsx", status=ImportJobStatus.RUNNING, total_rows=4000
    )
    ImportJob.objects.filter(pk=job.pk).update(processed_rows=1500)
    client.force_login(coord)
    progress_url = reverse("cases:import-job-progress", args=[job.pk])

    page = client.get(reverse("cases:import-job-detail", args=[job.pk])).content.decode()
    data = client.get(progress_url).json()

    assert f'data-job-progress="{progress_url}"' in page
    assert "js/jobs.js" in page
    assert data == {
        "id": job.pk,
        "status": "running",
        "status_display": "处理中",
        "total_rows": 4000,
        "processed_rows": 1500,
        "done": 1500,
        "total": 4000,
        "percent": 37,
        "created_count": 0,
        "error_count": 0,
        "finished": False,
        "message": "正在校验：1500 / 4000 行",
    }


@pytest.mark.parametrize("name", ["cases:candidate-import", "cases:candidate-import-template"])
def test_pages_refuse_a_non_coordinator(client, name):
    client.force_login(UserFactory(username="grader", roles=["grader"]))
    assert client.get(reverse(name)).status_code == 403


# API ---------------------------------------------------------------------------------


def test_api_upload_returns_202_and_then_the_finished_job(
    client, coord, django_capture_on_commit_callbacks
):
    client.force_login(coord)
    number = make_id_number()
    upload = SimpleUploadedFile("名单.xlsx", xlsx([person(number, certs=[mem_cert(number)])]))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/candidate-imports/", {"file": upload})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert response["Location"] == body["url"] == f"/api/v1/candidate-imports/{body['id']}/"
    finished = client.get(body["url"]).json()
    assert finished["status"] == "succeeded"
    assert (finished["total_rows"], finished["processed_rows"], finished["progress"]) == (1, 1, 100)
    assert (finished["created_count"], finished["errors"]) == (1, [])
    assert HeldCertificate.objects.get().number == f"T{number}"


def test_api_job_reports_errors(client, coord, django_capture_on_commit_callbacks):
    client.force_login(coord)
    upload = SimpleUploadedFile("名单.xlsx", PNG)
    with django_capture_on_commit_callbacks(execute=True):
        job_id = client.post("/api/v1/candidate-imports/", {"file": upload}).json()["id"]

    body = client.get(f"/api/v1/candidate-imports/{job_id}/").json()

    assert body["status"] == "failed"
    assert body["errors"] == [{"row": None, "column": "", "message": NOT_XLSX}]


def test_api_refuses_a_non_coordinator(client):
    client.force_login(UserFactory(username="grader", roles=["grader"]))
    upload = SimpleUploadedFile("名单.xlsx", xlsx([person()]))

    response = client.post("/api/v1/candidate-imports/", {"file": upload})

    assert response.status_code == 403
    assert ImportJob.objects.count() == 0


def test_api_refuses_a_request_without_a_file(client, coord):
    client.force_login(coord)
    response = client.post("/api/v1/candidate-imports/", {})
    assert response.status_code == 400
    assert "file" in response.json()


def test_row_error_as_dict():
    assert RowError(3, "姓名", "请填写姓名").as_dict() == {
        "row": 3,
        "column": "姓名",
        "message": "请填写姓名",
    }


# Reading, validating and writing at scale (bench/bench_import.py) ----------------------

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _workbook_from_parts(sheet_xml: str, shared_strings: str | None = None) -> bytes:
    """A one-sheet workbook from openpyxl with its sheet (and shared strings) replaced:
    to hold cells openpyxl itself never writes (shared strings, rich text, phonetic
    runs, errors, ISO dates, rows and cells without references, gaps)."""
    book = Workbook()
    sheet = book.active
    sheet["A1"] = "x"
    sheet["B1"] = date(2024, 3, 15)  # a date style in the stylesheet (style id 1)
    sheet["C1"] = timedelta(hours=30)  # a duration style (style id 2)
    sheet["D1"] = datetime(2024, 3, 15, 8, 30)  # a date-time style (style id 3)
    buffer = BytesIO()
    book.save(buffer)
    source = zipfile.ZipFile(BytesIO(buffer.getvalue()))
    out = BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = sheet_xml.encode()
            elif info.filename == "[Content_Types].xml" and shared_strings is not None:
                content = content.replace(
                    b"</Types>",
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
                    b"</Types>",
                )
            elif info.filename == "xl/_rels/workbook.xml.rels" and shared_strings is not None:
                content = content.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdSS" Type="http://schemas.openxmlformats.org/'
                    b'officeDocument/2006/relationships/sharedStrings" '
                    b'Target="sharedStrings.xml"/></Relationships>',
                )
            target.writestr(info, content)
        if shared_strings is not None:
            target.writestr("xl/sharedStrings.xml", shared_strings)
    return out.getvalue()


def _openpyxl_rows(data: bytes) -> list[tuple[int, list]]:
    sheet = load_workbook(BytesIO(data), read_only=True, data_only=True).worksheets[0]
    rows = []
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        values = list(values)
        while values and values[-1] is None:
            values.pop()
        rows.append((number, values))
    return rows


def _fast_rows(data: bytes) -> list[tuple[int, list]]:
    from config.xlsx import open_workbook, sheet_rows

    return list(sheet_rows(open_workbook(data).worksheets[0]))


def test_cells_are_read_as_openpyxl_reads_them():
    shared = (
        f'<sst xmlns="{MAIN_NS}" count="4" uniqueCount="4">'
        "<si><t>张三</t></si>"
        '<si><t xml:space="preserve"> 前后空格 </t></si>'
        "<si><r><t>欧阳</t></r><r><rPr><b/></rPr><t>娜娜</t></r>"
        '<rPh sb="0" eb="1"><t>ouyang</t></rPh></si>'
        "<si><t>a_x005F_x000D_b &amp; &lt;c&gt;</t></si>"
        "</sst>"
    )
    sheet = (
        f'<worksheet xmlns="{MAIN_NS}"><sheetData>'
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1" t="s"><v>1</v></c>'
        '<c r="D1" t="s"><v>2</v></c><c r="E1" t="s"><v>3</v></c></row>'
        # numbers, a formula's cached value, a date, a duration, a date-time, booleans
        '<row r="2"><c r="A2"><v>42</v></c><c r="B2"><v>2.5</v></c><c r="C2"><v>1E3</v></c>'
        '<c r="D2"><f>A2*2</f><v>84</v></c><c r="E2" s="1"><v>45366</v></c>'
        '<c r="F2" s="2"><v>1.25</v></c><c r="G2" s="3"><v>45366.5</v></c>'
        '<c r="H2" t="b"><v>1</v></c><c r="I2" t="b"><v>0</v></c></row>'
        # errors, formula text, ISO dates, inline strings (plain and rich), empty values
        '<row r="4"><c r="A4" t="e"><v>#N/A</v></c><c r="B4" t="str"><f>"a"</f><v>ab</v></c>'
        '<c r="C4" t="d"><v>2024-03-15T00:00:00</v></c>'
        '<c r="D4" t="inlineStr"><is><t>内联</t></is></c>'
        '<c r="E4" t="inlineStr"><is><r><t>富</t></r><r><t>文本</t></r></is></c>'
        '<c r="F4"><v></v></c><c r="G4" s="1"/><c r="AB4"><v>7</v></c></row>'
        # cells and rows without references
        '<row><c><v>1</v></c><c t="s"><v>0</v></c></row>'
        '<row r="9" spans="1:3"><c r="B9"><v>-0.5</v></c></row>'
        "</sheetData></worksheet>"
    )
    data = _workbook_from_parts(sheet, shared)

    rows = _fast_rows(data)

    assert rows == _openpyxl_rows(data)
    # openpyxl drops the escape of a literal "_x" and leaves other _xHHHH_ escapes.
    assert rows[0] == (1, ["张三", None, " 前后空格 ", "欧阳娜娜", "a_x000D_b & <c>"])
    assert rows[1][1][4] == datetime(2024, 3, 15)
    assert rows[1][1][5] == timedelta(hours=30)
    assert [number for number, _ in rows] == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_a_workbook_written_by_openpyxl_reads_the_same():
    number = make_id_number()
    data = xlsx(
        [
            person(number, certs=[mem_cert(number)], 焊工从业年限=2.5),
            {},
            person(联系电话=13900001111, 文化程度="大专"),
        ]
    )
    assert _fast_rows(data) == _openpyxl_rows(data)


def test_entity_declarations_are_refused(coord):
    sheet = (
        '<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY a "张三">]>'
        f'<worksheet xmlns="{MAIN_NS}"><sheetData>'
        '<row r="1"><c r="A1" t="inlineStr"><is><t>&a;</t></is></c></row>'
        "</sheetData></worksheet>"
    )
    result = candidate_import(actor=coord, file=_workbook_from_parts(sheet))

    assert errors_of(result) == [(None, "", NOT_XLSX)]
    assert_nothing_written()


def test_a_sheet_that_breaks_off_is_refused_as_a_whole(coord):
    number = make_id_number()
    data = xlsx([person(number), person()])
    data = _rewrite_sheet(data, b"</sheetData>", b'<row r="9"><c r="A9"></sheetData>')

    result = candidate_import(actor=coord, file=data)

    assert errors_of(result) == [(None, "", NOT_XLSX)]
    assert_nothing_written()


@pytest.mark.parametrize(
    "raw",
    [
        "110105199005170011",  # valid
        "11010519900517001x",  # lower-case X
        " 110105199005170011 ",
        "1101 0519 9005 1700 11",  # spaces stdnum compacts away: parse_id_number's way
        "110105199005170012",  # check digit
        "110105199002300011",  # no such day
        "990105199005170011",  # no such province
        "11010520990517001X",  # born in the future
        "11010519900517001",  # 17 digits
        "11010519900517001Y",
        "１１０１０５１９９００５１７００１１",  # full-width digits
    ],
)
def test_the_fast_id_check_agrees_with_parse_id_number(raw):
    from django.core.exceptions import ValidationError

    from cases.validators import parse_id_number

    fast = imports.parse_id_number_fast(raw.strip(), timezone.localdate())
    try:
        slow = parse_id_number(raw.strip())
    except ValidationError:
        slow = None
    assert fast is None or fast == slow


def test_the_fast_id_check_agrees_on_random_numbers():
    from django.core.exceptions import ValidationError
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from cases.validators import parse_id_number

    today = timezone.localdate()

    @settings(max_examples=400, deadline=None)
    @given(
        st.sampled_from(["11", "14", "31", "65", "71", "81", "82", "83", "99", "00"]),
        st.sampled_from(["0105", "0000", "9999"]),
        st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)),
        st.integers(0, 999),
        st.sampled_from([*"0123456789X", None]),
    )
    def check(province, county, born, order, check_digit):
        first17 = f"{province}{county}{born:%Y%m%d}{order:03d}"
        number = first17 + (check_digit or ric.calc_check_digit(first17 + "0"))
        try:
            slow = parse_id_number(number)
        except ValidationError:
            slow = None
        fast = imports.parse_id_number_fast(number, today)
        assert fast is None or fast == slow
        # The fast check passes every number parse_id_number accepts in a known province.
        if slow is not None and province != "83":
            assert fast == slow

    check()


GOOD_CANDIDATE = {
    "id_number": "110105199005170011",
    "name": "张三",
    "sex": "M",
    "birth_date": date(1990, 5, 17),
    "phone": "13800138000",
    "education": "senior",
}


@pytest.mark.parametrize(
    "values",
    [
        GOOD_CANDIDATE,
        {"id_number": "1" * 19, "name": "", "sex": "X", "birth_date": None, "phone": "12345"},
        {**GOOD_CANDIDATE, "name": "名" * 65, "birth_date": "1990-02-30", "education": "phd"},
        {"id_number": "", "name": " ", "sex": "", "phone": "", "education": ""},
    ],
)
def test_model_rules_report_what_full_clean_reports(values):
    from django.core.exceptions import ValidationError

    rules = imports._ModelRules(Candidate, repeated={"sex"}, excluded={"created_by", "photo"})
    exclude = {"created_by", "photo"}
    try:
        Candidate(**values).full_clean(
            exclude=exclude, validate_unique=False, validate_constraints=False
        )
    except ValidationError as exc:
        expected = exc.message_dict
    else:
        expected = {}
    for _ in range(2):  # the second time from the remembered results
        problems = rules.problems(values, set())
        assert (problems.message_dict if problems else {}) == expected


@pytest.mark.parametrize(
    ("issue", "expiry", "expected"),
    [
        (date(2024, 1, 1), date(2023, 12, 31), {"expiry_date": ["有效期至不能早于发证日期"]}),
        (date(2024, 1, 1), date(2024, 1, 1), {}),
    ],
)
def test_model_rules_run_the_models_own_clean(issue, expiry, expected):
    rules = imports._ModelRules(
        HeldCertificate, repeated={"issue_date"}, excluded=imports.HELD_EXCLUDED
    )
    values = {"number": "TS1", "issuer_name": "某局", "issue_date": issue, "expiry_date": expiry}
    problems = rules.problems(values, set())
    assert (problems.message_dict if problems else {}) == expected


def test_imported_rows_are_audited_exactly_as_the_services_audit_them(coord):
    from audit.services import snapshot

    number = make_id_number()
    samr = {"类型代码": "SAMR-WELD", "编号": "TS20240001", "发证机关": "山西省市场监督管理局"}
    rows = [person(number, certs=[mem_cert(number), {**samr, "发证日期": "2023-06-01"}])]

    candidate_import(actor=coord, file=xlsx(rows))

    candidate = Candidate.objects.get(id_number=number)
    event = AuditEvent.objects.get(action="candidate.create")
    assert (event.object_type, event.object_id) == ("cases.candidate", str(candidate.pk))
    assert event.object_repr == str(candidate)
    assert event.actor == coord
    expected = {
        k: {"before": None, "after": v}
        for k, v in snapshot(candidate, services.CANDIDATE_FIELDS).items()
    }
    expected["work_years"] = {"before": None, "after": {"6-31-01-03": "3"}}
    assert event.changes == expected
    for held in HeldCertificate.objects.filter(candidate=candidate):
        event = AuditEvent.objects.get(action="held_certificate.create", object_id=str(held.pk))
        assert event.object_repr == str(held)
        assert event.changes == {
            k: {"before": None, "after": v} for k, v in snapshot(held, services.HELD_FIELDS).items()
        }
    assert (candidate.created_by, candidate.photo.name) == (coord, "")
    assert candidate.created_at == candidate.updated_at
    call_command("audit_verify")


def test_a_registration_between_validation_and_write_refuses_the_file(coord, monkeypatch):
    number = make_id_number()
    original = imports._validate

    def validate_then_someone_registers(*args, **kwargs):
        outcome = original(*args, **kwargs)
        services.candidate_create(
            actor=coord, id_number=number, name="李四", phone="13800138000", education="senior"
        )
        return outcome

    monkeypatch.setattr(imports, "_validate", validate_then_someone_registers)
    events = AuditEvent.objects.count()

    result = candidate_import(actor=coord, file=xlsx([person(), person(number)]))

    assert errors_of(result) == [
        (
            None,
            "",
            "写入时发现身份证号码或证书编号已被其他操作登记，未写入任何数据；"
            "请重新导入以查看具体的行",
        )
    ]
    assert Candidate.objects.count() == 1
    assert AuditEvent.objects.count() == events + 1  # the one registration
    call_command("audit_verify")


def test_bulk_audit_rows_hash_and_read_back_as_audit_record_many_writes_them(coord):
    from audit.services import Event, _normalise, audit_record_bulk, audit_record_many
    from cases.models import Education

    audit_record_many(actor=coord, events=[Event("test.before", "tests.thing", "0")])
    changes = [
        {"name": {"before": None, "after": "欧阳娜娜"}, "years": {"before": None, "after": 2}},
        {3: "int key", 10: "sorts after 3 only as a number", "x": [1, (2, 3)]},
        {"score": Decimal("88.5"), "on": date(2024, 3, 15), "ratio": 0.25, "none": None},
        {"education": Education.SENIOR, "flag": True, "nested": {"b": {"a": ["z", "y"]}}},
    ]
    events = [
        Event("test.bulk", "tests.thing", str(n), f"第{n}个", "a", "b", "原因", value)
        for n, value in enumerate(changes, start=1)
    ]

    assert audit_record_bulk(actor=coord, events=events) == 4

    rows = list(AuditEvent.objects.filter(action="test.bulk").order_by("seq"))
    assert [row.seq for row in rows] == [2, 3, 4, 5]
    assert [row.changes for row in rows] == [_normalise(c) for c in changes]
    assert rows[0].prev_hash == AuditEvent.objects.get(seq=1).hash
    assert all(row.hash == row.compute_hash() for row in rows)
    assert (rows[3].actor, rows[3].object_repr, rows[3].reason) == (coord, "第4个", "原因")
    audit_record_many(actor=coord, events=[Event("test.after", "tests.thing", "9")])
    call_command("audit_verify")


def test_bulk_audit_writes_nothing_if_its_hashes_differ_from_the_models(coord, monkeypatch):
    from django.db import transaction

    from audit.services import Event, audit_record_bulk

    canonical = AuditEvent.canonical
    monkeypatch.setattr(AuditEvent, "canonical", lambda self: canonical(self) + " ")

    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record_bulk(actor=coord, events=[Event("test.bulk", "tests.thing", "1")])

    assert AuditEvent.objects.count() == 0


def test_bulk_audit_records_the_requests_client_ip(coord):
    from audit.context import _client_ip
    from audit.services import Event, audit_record_bulk

    token = _client_ip.set("203.0.113.5")
    try:
        audit_record_bulk(actor=coord, events=[Event("test.bulk", "tests.thing", "1")])
    finally:
        _client_ip.reset(token)

    assert AuditEvent.objects.get().client_ip == "203.0.113.5"
    call_command("audit_verify")


# Validation spread over two processes ----------------------------------------------------


def messy_rows(coord):
    """Rows with problems of every kind, duplicates far apart (in other parts of the
    file when it is validated three rows at a time) and numbers already registered."""
    existing = register(coord)
    services.held_certificate_create(
        actor=coord,
        candidate=existing,
        qualification_type="SAMR-WELD",
        number="TS00000001",
        issuer_name="山西省市场监督管理局",
        issue_date=date(2024, 1, 1),
    )
    samr = {"类型代码": "SAMR-WELD", "发证机关": "山西省市场监督管理局", "发证日期": "2024-01-01"}
    twice, thrice = make_id_number(), make_id_number()
    rows = [person() for _ in range(30)]
    rows[0] = person(twice, certs=[{**samr, "编号": "TS00000009"}])
    rows[4] = person(thrice)
    rows[5] = person(existing.id_number, 文化程度="博士后")
    rows[7] = person(twice, 联系电话="12", certs=[{**samr, "编号": "ts00000009"}])
    rows[8] = person(certs=[{**samr, "编号": "TS00000001"}, {**samr, "编号": "TS00000001"}])
    rows[13] = person(thrice.lower(), certs=[{**samr, "编号": "TS00000009"}])
    rows[14] = person("110105199013327890", 电工从业年限="三年")
    rows[20] = person(thrice, certs=[mem_cert(make_id_number())])
    rows[26] = person(certs=[{**samr, "编号": "TS00000009"}, {**samr, "编号": "TS00000009"}])
    return rows


@pytest.fixture
def helpers_started(monkeypatch):
    """Validate in parts of three rows, with a helper process from the first part on;
    counts the helpers started."""
    started = []
    helper_init = imports._Helper.__init__

    def init(self, *args, **kwargs):
        started.append(self)
        helper_init(self, *args, **kwargs)

    monkeypatch.setattr(imports, "PART_ROWS", 3)
    monkeypatch.setattr(imports, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(imports._Helper, "__init__", init)
    return started


def test_validation_in_two_processes_reports_what_one_process_reports(
    coord, monkeypatch, helpers_started
):
    data = xlsx(messy_rows(coord))
    with monkeypatch.context() as alone:
        alone.setattr(imports, "PARALLEL_MIN_ROWS", 10**9)
        expected = errors_of(candidate_import(actor=coord, file=data))
    assert helpers_started == []

    result = candidate_import(actor=coord, file=data)

    assert len(helpers_started) == 1
    assert errors_of(result) == expected
    assert (9, "身份证号码", "身份证号码与第 2 行重复") in expected
    assert (15, "身份证号码", "身份证号码与第 6 行重复") in expected
    assert (22, "身份证号码", "身份证号码与第 6 行重复") in expected
    assert (15, "证书1编号", "证书编号 TS00000009 与第 2 行重复") in expected
    assert (28, "证书2编号", "证书编号 TS00000009 与第 2 行重复") in expected
    assert (10, "证书2编号", "证书编号 TS00000001 与本行「证书1编号」重复") in expected
    assert (10, "证书1编号", "证书编号 TS00000001 已登记") in expected
    assert (7, "身份证号码", "该身份证号码已登记") in expected
    assert Candidate.objects.count() == 1


def test_a_clean_file_validated_in_two_processes_is_written_and_audited(coord, helpers_started):
    numbers = [make_id_number() for _ in range(20)]
    rows = [person(number, certs=[mem_cert(number)]) for number in numbers]
    seen = []

    result = candidate_import(
        actor=coord, file=xlsx(rows), on_progress=lambda done, total: seen.append((done, total))
    )

    assert len(helpers_started) == 1
    assert (result.ok, result.created, result.held_created) == (True, 20, 20)
    assert seen[-1] == (20, 20)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert Candidate.objects.count() == 20
    assert AuditEvent.objects.filter(action="candidate.create").count() == 20
    assert AuditEvent.objects.filter(action="held_certificate.create").count() == 20
    call_command("audit_verify")


def _helper_that_dies(validator, indexes, connection):
    import os

    os._exit(1)


def test_rows_sent_to_a_helper_that_dies_are_validated_here(coord, monkeypatch, helpers_started):
    data = xlsx(messy_rows(coord))
    with monkeypatch.context() as alone:
        alone.setattr(imports, "PARALLEL_MIN_ROWS", 10**9)
        expected = errors_of(candidate_import(actor=coord, file=data))
    monkeypatch.setattr(imports, "_helper_main", _helper_that_dies)

    result = candidate_import(actor=coord, file=data)

    assert len(helpers_started) == 1
    assert errors_of(result) == expected


def test_no_helper_is_forked_from_a_threaded_process(monkeypatch):
    import threading

    assert imports._may_fork() is True
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert imports._may_fork() is False
