"""Score import from XLSX/CSV (computer-based exam exports): all-or-nothing with a
row/column error report in Chinese."""

from decimal import Decimal
from io import BytesIO

import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook
from rest_framework.test import APIClient

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from exams import scoring
from exams.models import Mark
from exams.scheduling import booking_create

from .factories import (
    PlanFactory,
    UserFactory,
    coordinator,
    eligible_case,
    exam_session,
    hold,
    marking_session,
)
from .factories import register as register_candidate

pytestmark = pytest.mark.django_db

HEADER = ["准考证号", "科目代码", "分数"]


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def graders():
    return {
        name: UserFactory(username=name, roles=["grader"])
        for name in ("theory1", "prac1", "prac2", "outsider")
    }


@pytest.fixture
def plan():
    return PlanFactory(double_marked=("practical",))


@pytest.fixture
def marking(coord, graders, plan):
    first = eligible_case(coord, plan, name="张三")
    second = eligible_case(coord, plan, name="李四")
    candidate = register_candidate(coord, name="王五")
    hold(coord, candidate, "SAMR-WELD")
    exempt = eligible_case(coord, plan, candidate=candidate)
    session, bookings = marking_session(
        coord,
        plan,
        [first, second, exempt],
        staff=[
            (graders["theory1"], "grader", "theory"),
            (graders["prac1"], "grader", "practical"),
            (graders["prac2"], "grader", "practical"),
        ],
    )
    return {
        "session": session,
        "first": bookings[first.pk].ticket_number,
        "second": bookings[second.pk].ticket_number,
        "exempt": bookings[exempt.pk].ticket_number,
    }


def csv_file(rows, header=HEADER, bom=True) -> bytes:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    text = "\r\n".join(lines) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def xlsx_file(rows, header=HEADER) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(list(row))
    buffer = BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def run(actor, marking, data, name="scores.csv", **kwargs):
    return scoring.scores_import(
        actor=actor, session=marking["session"], file=data, name=name, **kwargs
    )


def refused(actor, marking, data, name="scores.csv", **kwargs) -> list[dict]:
    with pytest.raises(scoring.ScoreImportError) as info:
        run(actor, marking, data, name, **kwargs)
    assert Mark.objects.count() == 0
    return info.value.errors


# Accepted files ------------------------------------------------------------------------


def test_csv_with_bom_is_imported_and_audited(marking, graders):
    data = csv_file([(marking["first"], "theory", 88), (marking["second"], "theory", "79.5")])
    counts = run(graders["theory1"], marking, data)
    assert counts == {"rows": 2, "entered": 2, "changed": 0, "unchanged": 0}
    assert sorted(Mark.objects.values_list("slot", "score")) == [
        ("single", Decimal("79.5")),
        ("single", Decimal("88.0")),
    ]
    assert AuditEvent.objects.filter(action="mark.enter").count() == 2
    event = AuditEvent.objects.get(action="session.scores_import")
    assert event.changes == {
        "import": {
            "before": None,
            "after": {"file": "scores.csv", "rows": 2, "entered": 2, "changed": 0, "unchanged": 0},
        }
    }


def test_csv_without_bom_is_imported(marking, graders):
    data = csv_file([(marking["first"], "theory", 88)], bom=False)
    assert run(graders["theory1"], marking, data)["entered"] == 1


def test_xlsx_is_imported(marking, graders):
    data = xlsx_file([(marking["first"], "theory", 91), (marking["second"], "theory", 64.5)])
    counts = run(graders["theory1"], marking, data, name="机考成绩.xlsx")
    assert counts["entered"] == 2
    assert Mark.objects.get(booking__ticket_number=marking["second"]).score == Decimal("64.5")


def test_double_marked_component_with_slot_column(marking, graders):
    header = [*HEADER, "评次"]
    run(graders["prac1"], marking, csv_file([(marking["first"], "practical", 80, "一评")], header))
    run(
        graders["prac2"], marking, csv_file([(marking["first"], "practical", 82, "second")], header)
    )
    assert sorted(Mark.objects.values_list("slot", "grader__username")) == [
        ("first", "prac1"),
        ("second", "prac2"),
    ]


def test_coordinator_may_import_machine_marked_theory(marking, coord):
    counts = run(coord, marking, csv_file([(marking["first"], "theory", 86)]))
    assert counts["entered"] == 1
    assert Mark.objects.get().grader == coord


def test_reimport_with_changes_needs_a_reason(marking, graders):
    run(graders["theory1"], marking, csv_file([(marking["first"], "theory", 70)]))
    data = csv_file([(marking["first"], "theory", 75)])
    with pytest.raises(scoring.ScoreImportError) as info:
        run(graders["theory1"], marking, data)
    assert info.value.errors == [
        {"row": 2, "column": "分数", "message": "修改已录入的分数须填写理由"}
    ]
    counts = run(graders["theory1"], marking, data, reason="机考系统重新判分")
    assert counts == {"rows": 1, "entered": 0, "changed": 1, "unchanged": 0}


# Refused files -------------------------------------------------------------------------


def test_unknown_ticket_is_reported_and_nothing_imported(marking, graders):
    data = csv_file([(marking["first"], "theory", 88), ("99999999", "theory", 70)])
    assert refused(graders["theory1"], marking, data) == [
        {"row": 3, "column": "准考证号", "message": "准考证号 99999999 不存在"}
    ]


def test_ticket_of_another_session_is_reported(marking, graders, coord, plan):
    other = exam_session(coord, plan)
    booking = booking_create(actor=coord, session=other, case=eligible_case(coord, plan))
    data = csv_file([(booking.ticket_number, "theory", 70)])
    assert refused(graders["theory1"], marking, data) == [
        {
            "row": 2,
            "column": "准考证号",
            "message": f"准考证号 {booking.ticket_number} 属于场次 {other.code}，不是本场次",
        }
    ]


def test_duplicate_rows_are_reported(marking, graders):
    rows = [(marking["first"], "theory", 88), (marking["second"], "theory", 70)]
    data = csv_file([*rows, (marking["first"], "theory", 89)])
    assert refused(graders["theory1"], marking, data) == [
        {"row": 4, "column": "准考证号", "message": "与第 2 行重复（同一准考证号、科目、评次）"}
    ]


def test_wrong_components_are_reported(marking, graders):
    data = csv_file(
        [
            (marking["first"], "chemistry", 88),
            (marking["first"], "hot_work", 70),
            (marking["first"], "", 70),
        ]
    )
    assert refused(graders["theory1"], marking, data) == [
        {"row": 2, "column": "科目代码", "message": "科目代码 chemistry 不存在"},
        {"row": 3, "column": "科目代码", "message": "科目 hot_work 不是本场次的考试科目"},
        {"row": 4, "column": "科目代码", "message": "科目代码为空"},
    ]


def test_exempt_component_is_reported(marking, graders):
    data = csv_file([(marking["exempt"], "theory", 88)])
    assert refused(graders["theory1"], marking, data) == [
        {
            "row": 2,
            "column": "科目代码",
            "message": "考生免考「理论考试」（互认序号 7），不能录入成绩",
        }
    ]


def test_out_of_range_and_bad_scores_are_reported(marking, graders):
    data = csv_file(
        [
            (marking["first"], "theory", 101),
            (marking["second"], "theory", -3),
            (marking["exempt"], "practical", "缺"),
        ]
    )
    errors = refused(graders["prac1"], marking, data)
    assert errors == [
        {
            "row": 2,
            "column": "科目代码",
            "message": "您不是本场次「理论考试」的考评员，不能导入该科目成绩",
        },
        {
            "row": 3,
            "column": "科目代码",
            "message": "您不是本场次「理论考试」的考评员，不能导入该科目成绩",
        },
        {"row": 4, "column": "分数", "message": "分数须为数字"},
    ]
    errors = refused(
        graders["theory1"],
        marking,
        csv_file([(marking["first"], "theory", 101), (marking["second"], "theory", -3)]),
    )
    assert errors == [
        {"row": 2, "column": "分数", "message": "分数不能超过满分 100 分"},
        {"row": 3, "column": "分数", "message": "分数不能为负数"},
    ]


def test_unassigned_grader_is_reported_per_component(marking, graders):
    data = csv_file([(marking["first"], "theory", 88)])
    assert refused(graders["outsider"], marking, data) == [
        {
            "row": 2,
            "column": "科目代码",
            "message": "您不是本场次「理论考试」的考评员，不能导入该科目成绩",
        }
    ]


def test_coordinator_may_not_import_practical(marking, coord):
    data = csv_file([(marking["first"], "practical", 88)])
    assert refused(coord, marking, data) == [
        {
            "row": 2,
            "column": "科目代码",
            "message": "您不是本场次「实操考试」的考评员，不能导入该科目成绩"
            "（考务人员仅可导入单评的机考理论成绩）",
        }
    ]


def test_missing_columns_are_reported(marking, graders):
    data = csv_file([(marking["first"], 88)], header=["准考证号", "成绩"])
    assert refused(graders["theory1"], marking, data) == [
        {"row": 1, "column": "科目代码", "message": "缺少列「科目代码」"},
        {"row": 1, "column": "分数", "message": "缺少列「分数」"},
    ]


def test_bad_slot_is_reported(marking, graders):
    data = csv_file([(marking["first"], "practical", 80, "三评")], [*HEADER, "评次"])
    assert refused(graders["prac1"], marking, data) == [
        {"row": 2, "column": "评次", "message": "评次「三评」无效，应为单评、一评或二评"}
    ]


def test_other_file_types_are_refused(marking, graders):
    assert refused(graders["theory1"], marking, b"%PDF-1.4", name="scores.pdf") == [
        {"row": 0, "column": "", "message": "仅支持 XLSX 或 CSV 格式的成绩文件"}
    ]


def test_import_needs_the_grader_or_coordinator_role(marking):
    reviewer = UserFactory(username="reviewer", roles=["reviewer"])
    with pytest.raises(PermissionDenied):
        run(reviewer, marking, csv_file([(marking["first"], "theory", 88)]))


def test_import_into_a_locked_session_is_refused(marking, graders, coord):
    session = marking["session"]
    session.submit_for_review()  # test setup only: the review's own tests cover the service
    session.save()
    with pytest.raises(StateConflict):
        run(graders["theory1"], marking, csv_file([(marking["first"], "theory", 88)]))


# API -----------------------------------------------------------------------------------


def post(user, marking, data, name="scores.csv"):
    client = APIClient()
    client.force_authenticate(user)
    upload = SimpleUploadedFile(name, data, content_type="text/csv")
    return client.post(
        "/api/v1/marking/import/",
        {"session": marking["session"].pk, "file": upload},
        format="multipart",
    )


def test_api_import_returns_counts(marking, graders):
    response = post(graders["theory1"], marking, csv_file([(marking["first"], "theory", 88)]))
    assert response.status_code == 201
    assert response.json() == {"entered": 1, "changed": 0, "unchanged": 0, "rows": 1}


def test_api_import_returns_the_error_report(marking, graders):
    response = post(graders["theory1"], marking, csv_file([("123", "theory", 88)]))
    assert response.status_code == 400
    assert response.json() == {
        "detail": "成绩文件有 1 处错误，未导入任何成绩",
        "code": "import_invalid",
        "errors": [{"row": 2, "column": "准考证号", "message": "准考证号 123 不存在"}],
    }


def test_api_import_refuses_other_roles(marking):
    reviewer = UserFactory(username="reviewer", roles=["reviewer"])
    response = post(reviewer, marking, csv_file([(marking["first"], "theory", 88)]))
    assert response.status_code == 403


# Bulk path (bench/bench_scores.py) -------------------------------------------------------


def test_two_rows_reaching_the_same_mark_are_refused(marking, graders):
    # 评次 left empty on one row and given on the other: both are the single mark.
    data = csv_file(
        [(marking["first"], "theory", 88, ""), (marking["first"], "theory", 86, "单评")],
        [*HEADER, "评次"],
    )
    assert refused(graders["theory1"], marking, data) == [
        {"row": 3, "column": "准考证号", "message": "与第 2 行重复（同一准考证号、科目、评次）"}
    ]


def test_imported_marks_are_audited_as_mark_enter_audits_them(marking, graders):
    from django.core.management import call_command

    from exams.models import Booking

    scoring.mark_enter(
        actor=graders["theory1"],
        booking=Booking.objects.get(ticket_number=marking["second"]),
        component="theory",
        score="79.5",
    )
    run(graders["theory1"], marking, csv_file([(marking["first"], "theory", "88")]))

    entered, imported = AuditEvent.objects.filter(action="mark.enter").order_by("seq")
    mark = Mark.objects.get(booking__ticket_number=marking["first"])
    assert (imported.object_type, imported.object_id) == ("exams.mark", str(mark.pk))
    assert imported.object_repr == f"{marking['first']} theory single 88.0" == str(mark)
    assert imported.actor == graders["theory1"]
    assert sorted(imported.changes) == sorted(entered.changes)
    assert imported.changes == {
        "booking": {"before": None, "after": marking["first"]},
        "component": {"before": None, "after": "theory"},
        "slot": {"before": None, "after": "single"},
        "score": {"before": None, "after": "88.0"},
    }
    assert (mark.score, mark.grader, mark.slot) == (Decimal("88.0"), graders["theory1"], "single")
    call_command("audit_verify")


def test_a_reimport_enters_new_marks_and_changes_entered_ones_in_one_go(marking, graders):
    run(graders["theory1"], marking, csv_file([(marking["first"], "theory", 70)]))
    data = csv_file([(marking["second"], "theory", 81), (marking["first"], "theory", 75)])

    counts = run(graders["theory1"], marking, data, reason="机考系统重新判分")

    assert counts == {"rows": 2, "entered": 1, "changed": 1, "unchanged": 0}
    marks = Mark.objects.values_list("booking__ticket_number", "score")
    assert sorted(marks) == sorted(
        [(marking["first"], Decimal("75.0")), (marking["second"], Decimal("81.0"))]
    )
    last = list(AuditEvent.objects.order_by("-seq").values_list("action", "reason")[:3])
    assert last == [
        ("session.scores_import", "机考系统重新判分"),
        ("mark.change", "机考系统重新判分"),
        ("mark.enter", "机考系统重新判分"),
    ]


def test_a_broken_workbook_is_refused(marking, graders):
    data = xlsx_file([(marking["first"], "theory", 91)])
    assert refused(graders["theory1"], marking, data[: len(data) // 2], name="a.xlsx") == [
        {"row": 0, "column": "", "message": "无法读取 XLSX 文件，请确认文件格式"}
    ]


def test_a_workbook_that_unpacks_too_large_is_refused(marking, graders, monkeypatch):
    monkeypatch.setattr(scoring, "MAX_UNPACKED_BYTES", 10_000)
    data = xlsx_file([(marking["first"], "theory", 91)] * 200)
    assert refused(graders["theory1"], marking, data, name="a.xlsx") == [
        {"row": 0, "column": "", "message": "无法读取 XLSX 文件，请确认文件格式"}
    ]
