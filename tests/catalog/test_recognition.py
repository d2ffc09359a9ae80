"""The recognition engine against every row of the notice's attachment."""

import json
from datetime import date

import pytest
from django.core.management import call_command

from catalog.recognition import HeldFacts, UnknownCertificateType, catalog_snapshot, recognize

pytestmark = pytest.mark.django_db
ON = date(2026, 6, 1)
ELEC, WELD = "6-31-01-03", "6-18-02-04"
TYPES = ["MEM-ELEC-LV", "MEM-ELEC-HV", "MEM-WELD-FC", "MOHURD-ELEC", "MOHURD-WELD", "SAMR-WELD"]
ROWS = {
    ("MEM-ELEC-LV", "MOHURD-ELEC"): (1, ["training"]),
    ("MEM-ELEC-HV", "MOHURD-ELEC"): (2, ["training"]),
    ("MOHURD-ELEC", "MEM-ELEC-LV"): (3, ["training"]),
    ("MEM-WELD-FC", "MOHURD-WELD"): (4, ["training"]),
    ("MEM-WELD-FC", "SAMR-WELD"): (5, ["hot_work"]),
    ("MOHURD-WELD", "MEM-WELD-FC"): (6, ["training"]),
    ("SAMR-WELD", "MEM-WELD-FC"): (7, ["theory", "training"]),
}
EQUIVALENT = {
    "MEM-ELEC-LV": (ELEC, 5),
    "MOHURD-ELEC": (ELEC, 5),
    "MEM-ELEC-HV": (ELEC, 4),
    "MEM-WELD-FC": (WELD, 5),
    "MOHURD-WELD": (WELD, 5),
    "SAMR-WELD": (WELD, 4),
}


def run(*held, target, on=ON, **kwargs):
    facts = [h if isinstance(h, HeldFacts) else HeldFacts(type_code=h) for h in held]
    return recognize(held=facts, target=target, on=on, **kwargs)


@pytest.mark.parametrize(("held", "target"), sorted(ROWS))
def test_each_attachment_row_exempts_its_components(held, target):
    row, exempt = ROWS[held, target]
    occupation, level = EQUIVALENT[held]
    assert run(held, target=target).as_json() == {
        "target": target,
        "rows": [row],
        "exempt": exempt,
        "equivalent": [{"occupation": occupation, "level": level, "may_apply": level - 1}],
    }


@pytest.mark.parametrize(
    ("held", "target"),
    [(h, t) for h in TYPES for t in TYPES if (h, t) not in ROWS],
)
def test_pair_without_a_row_earns_no_exemption(held, target):
    result = run(held, target=target)
    assert result.rows == []
    assert result.exempt == []


def test_samr_weld_towards_mem_weld_is_row_7_with_welder_level_4():
    assert run("SAMR-WELD", target="MEM-WELD-FC").as_json() == {
        "target": "MEM-WELD-FC",
        "rows": [7],
        "exempt": ["theory", "training"],
        "equivalent": [{"occupation": WELD, "level": 4, "may_apply": 3}],
    }


def test_two_held_certificates_give_both_rows_and_the_higher_equivalence():
    result = run("MEM-ELEC-LV", "MEM-ELEC-HV", target="MOHURD-ELEC")
    assert result.rows == [1, 2]
    assert result.exempt == ["training"]
    assert result.as_json()["equivalent"] == [{"occupation": ELEC, "level": 4, "may_apply": 3}]


def test_equivalences_of_two_occupations_are_sorted_by_occupation_code():
    result = run("MEM-ELEC-LV", "SAMR-WELD", target="MEM-WELD-FC")
    assert result.as_json()["equivalent"] == [
        {"occupation": WELD, "level": 4, "may_apply": 3},
        {"occupation": ELEC, "level": 5, "may_apply": 4},
    ]


def test_expired_certificate_earns_nothing_and_says_why():
    # MOHURD: valid 2 years.
    held = HeldFacts("MOHURD-ELEC", issue_date=date(2024, 1, 10), ref=9)
    result = run(held, target="MEM-ELEC-LV")
    assert result.as_json() == {"target": "MEM-ELEC-LV", "rows": [], "exempt": [], "equivalent": []}
    assert [(n.held_code, n.reason, n.ref) for n in result.not_counted] == [
        ("MOHURD-ELEC", "证书已过期（有效期至 2026-01-09）", 9)
    ]


def test_certificate_valid_on_its_last_day_counts():
    held = HeldFacts("MOHURD-ELEC", issue_date=date(2024, 6, 2))
    assert run(held, target="MEM-ELEC-LV", on=date(2026, 6, 1)).rows == [3]


def test_revoked_certificate_earns_nothing():
    result = run(HeldFacts("SAMR-WELD", revoked=True), target="MEM-WELD-FC")
    assert result.rows == []
    assert result.equivalences == []
    assert result.not_counted[0].reason == "证书已被吊销或注销"


def test_mem_certificate_overdue_for_review_earns_nothing():
    held = HeldFacts("MEM-ELEC-LV", issue_date=date(2022, 1, 1))
    result = run(held, target="MOHURD-ELEC")
    assert result.rows == []
    assert result.not_counted[0].reason == "证书逾期未复审（应于 2025-01-01 前复审）"


def test_mem_certificate_reviewed_on_time_counts():
    held = HeldFacts("MEM-ELEC-LV", issue_date=date(2022, 1, 1), review_due_date=date(2028, 1, 1))
    assert run(held, target="MOHURD-ELEC").rows == [1]


def test_certificate_issued_after_the_application_date_earns_nothing():
    held = HeldFacts("SAMR-WELD", issue_date=date(2026, 7, 1))
    assert run(held, target="MEM-WELD-FC").rows == []


def test_rules_do_not_apply_before_the_notice():
    result = run("SAMR-WELD", target="MEM-WELD-FC", on=date(2025, 12, 31))
    assert result.as_json()["rows"] == []
    assert result.as_json()["equivalent"] == []


def test_plan_may_switch_a_row_off():
    result = run("SAMR-WELD", target="MEM-WELD-FC", disabled_rows={7})
    assert result.rows == []
    assert result.equivalences[0].level == 4


def test_unknown_code_is_refused():
    with pytest.raises(UnknownCertificateType, match="未知的证书类型代码：NOPE"):
        run("NOPE", target="MEM-WELD-FC")


def test_recognize_command_prints_design_json(capsys):
    call_command(
        "recognize", "--held", "SAMR-WELD", "--target", "MEM-WELD-FC", "--on", "2026-06-01"
    )
    assert json.loads(capsys.readouterr().out) == {
        "target": "MEM-WELD-FC",
        "rows": [7],
        "exempt": ["theory", "training"],
        "equivalent": [{"occupation": WELD, "level": 4, "may_apply": 3}],
    }


def test_recognize_command_with_expired_issue_date_earns_nothing(capsys):
    call_command(
        "recognize",
        "--held",
        "SAMR-WELD:2020-01-01",
        "--target",
        "MEM-WELD-FC",
        "--on",
        "2026-06-01",
    )
    out = capsys.readouterr()
    assert json.loads(out.out)["rows"] == []
    assert "SAMR-WELD: 证书已过期（有效期至 2023-12-31）" in out.err


def test_recognize_command_exits_2_on_unknown_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command("recognize", "--held", "NOPE", "--target", "MEM-WELD-FC")
    assert exit_info.value.code == 2
    assert "未知的证书类型代码：NOPE" in capsys.readouterr().err


def test_a_catalog_snapshot_gives_the_same_answers_as_reading_afresh():
    cases = [
        (HeldFacts(type_code=h), HeldFacts(type_code=h2), t)
        for h in TYPES
        for h2 in TYPES
        for t in TYPES
    ]
    fresh = [run(a, b, target=t, disabled_rows=[5]).as_json() for a, b, t in cases]
    with catalog_snapshot():
        snapped = [run(a, b, target=t, disabled_rows=[5]).as_json() for a, b, t in cases]
    assert snapped == fresh


def test_within_a_snapshot_the_catalog_is_read_once(django_assert_num_queries):
    with catalog_snapshot():
        run("SAMR-WELD", target="MEM-WELD-FC")
        with django_assert_num_queries(0):
            for held in TYPES:
                run(held, "MEM-ELEC-HV", target="MOHURD-ELEC")


def test_a_snapshot_still_refuses_unknown_codes():
    with catalog_snapshot(), pytest.raises(UnknownCertificateType):
        run("NOPE", target="MEM-ELEC-LV")
