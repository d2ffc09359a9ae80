import threading
from datetime import date

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from stdnum.cn import ric

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from cases import services
from cases.exceptions import EligibilityError
from cases.models import Candidate, Case, CaseStatus, HeldCertificate, Verification
from cases.retirement import retirement_date
from catalog.models import QualificationType

from .factories import PlanFactory, UserFactory, coordinator, hold, make_id_number, register

pytestmark = pytest.mark.django_db
TODAY = date(2026, 6, 1)


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def plan():
    return PlanFactory()


def submitted(coord, plan, candidate=None, **kwargs):
    candidate = candidate or register(coord, **kwargs)
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    return services.case_submit(actor=coord, case=case, on=TODAY)


# Registration ------------------------------------------------------------------------


def test_candidate_create_derives_birth_date_and_sex_and_audits(coord):
    number = make_id_number(date(1988, 2, 29), "F")
    candidate = services.candidate_create(
        actor=coord,
        id_number=number.lower(),
        name=" 欧阳娜娜 ",
        phone="13900001111",
        education="college",
        work_years={"6-18-02-04": "6.5"},
    )
    assert (candidate.id_number, candidate.birth_date, candidate.sex) == (
        number,
        date(1988, 2, 29),
        "F",
    )
    assert candidate.name == "欧阳娜娜"
    event = AuditEvent.objects.get(action="candidate.create")
    assert event.object_id == str(candidate.pk)
    assert event.changes["name"] == {"before": None, "after": "欧阳娜娜"}
    assert event.changes["work_years"] == {"before": None, "after": {"6-18-02-04": "6.5"}}


def test_candidate_with_bad_checksum_is_refused_and_nothing_written(coord):
    number = make_id_number()
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    with pytest.raises(ValidationError) as info:
        services.candidate_create(
            actor=coord, id_number=wrong, name="张三", phone="13800138000", education="senior"
        )
    assert info.value.message_dict == {"id_number": ["身份证号码校验位错误"]}
    assert Candidate.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_candidate_with_birth_date_in_the_future_is_refused(coord):
    first17 = "110105" + "20991231" + "001"
    number = first17 + ric.calc_check_digit(first17 + "0")
    with pytest.raises(ValidationError) as info:
        services.candidate_create(
            actor=coord, id_number=number, name="张三", phone="13800138000", education="senior"
        )
    assert info.value.message_dict == {"id_number": ["身份证号码中的出生日期 2099-12-31 晚于今天"]}


def test_entered_birth_date_and_sex_must_match_the_id_number(coord):
    with pytest.raises(ValidationError) as info:
        services.candidate_create(
            actor=coord,
            id_number=make_id_number(date(1990, 5, 17), "M"),
            name="张三",
            phone="13800138000",
            education="senior",
            sex="F",
            birth_date=date(1990, 5, 18),
        )
    assert info.value.message_dict == {
        "birth_date": ["出生日期与身份证号码不符（身份证为 1990-05-17）"],
        "sex": ["性别与身份证号码不符（身份证为男）"],
    }


def test_duplicate_id_number_is_refused(coord):
    candidate = register(coord)
    with pytest.raises(ValidationError) as info:
        services.candidate_create(
            actor=coord,
            id_number=candidate.id_number,
            name="李四",
            phone="13800138000",
            education="senior",
        )
    assert info.value.message_dict == {"id_number": ["该身份证号码已登记"]}


def test_photo_must_be_an_image(coord):
    fake = SimpleUploadedFile("photo.jpg", b"not really a jpeg" * 10, content_type="image/jpeg")
    with pytest.raises(ValidationError) as info:
        register(coord, photo=fake)
    assert info.value.message_dict == {"photo": ["照片须为 JPEG 或 PNG 图片"]}


def test_photo_size_is_limited(coord, settings):
    settings.PHOTO_MAX_BYTES = 1024
    big = SimpleUploadedFile("p.png", b"\x89PNG\r\n\x1a\n" + b"0" * 4096, content_type="image/png")
    with pytest.raises(ValidationError) as info:
        register(coord, photo=big)
    assert info.value.message_dict == {"photo": ["照片不能超过 1 KB（当前 4 KB）"]}


def test_candidate_update_audits_changed_fields_only(coord):
    candidate = register(coord)
    services.candidate_update(actor=coord, candidate=candidate, phone="13700001234", name="张三")
    event = AuditEvent.objects.get(action="candidate.update")
    assert event.changes == {"phone": {"before": "13800138000", "after": "13700001234"}}


def test_only_coordinators_register(db):
    grader = UserFactory(roles=["grader"])
    with pytest.raises(PermissionDenied):
        register(grader)


def test_reveal_id_number_is_audited(coord):
    candidate = register(coord)
    assert (
        services.candidate_reveal_id_number(actor=coord, candidate=candidate) == candidate.id_number
    )
    assert (
        AuditEvent.objects.filter(
            action="candidate.reveal_id_number", object_id=str(candidate.pk)
        ).count()
        == 1
    )


# Held certificates -------------------------------------------------------------------


def test_held_certificate_number_must_match_its_type(coord):
    candidate = register(coord)
    with pytest.raises(ValidationError) as info:
        services.held_certificate_create(
            actor=coord,
            candidate=candidate,
            qualification_type="MOHURD-ELEC",
            number="晋A0120261",
            issuer_name="山西省住房和城乡建设厅",
            issue_date=date(2026, 1, 1),
        )
    assert info.value.message_dict["number"][0].startswith("证书编号 晋A0120261 不符合")
    assert HeldCertificate.objects.count() == 0


def test_mem_certificate_number_is_t_plus_the_holders_id(coord):
    candidate = register(coord)
    other = make_id_number()
    with pytest.raises(ValidationError) as info:
        services.held_certificate_create(
            actor=coord,
            candidate=candidate,
            qualification_type="MEM-ELEC-LV",
            number="T" + other,
            issuer_name="应急管理厅",
            issue_date=date(2025, 1, 1),
        )
    assert info.value.message_dict == {
        "number": ["特种作业操作证 · 低压电工作业的编号应为 T + 持证人身份证号码"]
    }


def test_held_certificate_expiry_defaults_to_type_validity(coord):
    candidate = register(coord)
    held = hold(coord, candidate, "MOHURD-ELEC", issue_date=date(2025, 3, 1), verified=False)
    assert held.expiry_date == date(2027, 2, 28)


def test_coordinator_verification_needs_a_note(coord):
    held = hold(coord, register(coord), verified=False)
    with pytest.raises(ValidationError) as info:
        services.held_certificate_verify(actor=coord, held=held, verification="coordinator")
    assert info.value.message_dict == {"note": ["人工核验或核验未通过时须填写说明"]}
    held = services.held_certificate_verify(
        actor=coord, held=held, verification="coordinator", note="电话核实原件"
    )
    assert held.verification == Verification.COORDINATOR
    assert held.verified_by == coord


# Submit ------------------------------------------------------------------------------


def test_submit_moves_draft_to_submitted_and_snapshots_exemptions(coord, plan):
    candidate = register(coord)
    held = hold(coord, candidate, "SAMR-WELD")
    case = submitted(coord, plan, candidate)
    assert case.status == CaseStatus.SUBMITTED
    assert case.application_date == TODAY
    assert [
        (e.component.code, e.row, e.basis_id) for e in case.exemptions.order_by("component__code")
    ] == [("theory", 7, held.pk), ("training", 7, held.pk)]
    assert (case.equivalent_level, case.equivalence_basis_id) == (4, held.pk)
    event = AuditEvent.objects.get(action="case.submit")
    assert (event.from_state, event.to_state, event.actor_id) == ("draft", "submitted", coord.pk)


def test_expired_held_certificate_earns_nothing_with_the_reason_on_the_case(coord, plan):
    candidate = register(coord)
    hold(coord, candidate, "SAMR-WELD", issue_date=date(2020, 1, 1))
    case = submitted(coord, plan, candidate)
    assert case.exemptions.count() == 0
    assert [n["reason"] for n in case.not_counted] == ["证书已过期（有效期至 2023-12-31）"]


def test_revoked_held_certificate_earns_nothing(coord, plan):
    candidate = register(coord)
    hold(coord, candidate, "SAMR-WELD", revoked_on=date(2025, 1, 1))
    case = submitted(coord, plan, candidate)
    assert case.exemptions.count() == 0
    assert [n["reason"] for n in case.not_counted] == ["证书已被吊销或注销"]


def test_mem_certificate_overdue_for_review_earns_nothing(coord):
    plan = PlanFactory(qualification_type=QualificationType.objects.get(code="MOHURD-WELD"))
    candidate = register(coord)
    hold(coord, candidate, "MEM-WELD-FC", issue_date=date(2022, 1, 1))
    case = submitted(coord, plan, candidate)
    assert case.exemptions.count() == 0
    assert [n["reason"] for n in case.not_counted] == ["证书逾期未复审（应于 2025-01-01 前复审）"]


def test_under_18_on_the_exam_date_is_refused(coord, plan):
    candidate = register(coord, birth=date(2008, 9, 16))
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    with pytest.raises(EligibilityError) as info:
        services.case_submit(actor=coord, case=case, on=TODAY)
    assert info.value.problems == ["考试日期 2026-09-15 时未满18周岁（17岁）"]
    case.refresh_from_db()
    assert case.status == CaseStatus.DRAFT
    assert AuditEvent.objects.filter(action="case.submit").count() == 0


def test_past_retirement_age_is_refused(coord, plan):
    candidate = register(coord, birth=date(1966, 1, 10), sex="M")
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    with pytest.raises(EligibilityError) as info:
        services.case_submit(actor=coord, case=case, on=TODAY)
    assert info.value.problems == ["考试日期 2026-09-15 时已达到法定退休年龄（2026-05-10 退休）"]


@pytest.mark.parametrize(
    ("birth", "sex", "base", "expected"),
    [
        (date(1964, 12, 5), "M", 50, date(2024, 12, 5)),  # before the reform: 60
        (date(1965, 1, 5), "M", 50, date(2025, 2, 5)),  # 60 + 1 month
        (date(1965, 5, 5), "M", 50, date(2025, 7, 5)),  # 60 + 2 months
        (date(1980, 1, 1), "M", 50, date(2043, 1, 1)),  # capped at 63
        (date(1975, 3, 1), "F", 50, date(2025, 5, 1)),  # 50 + 2 months
        (date(1990, 1, 1), "F", 50, date(2045, 1, 1)),  # capped at 55
        (date(1970, 4, 1), "F", 55, date(2025, 5, 1)),  # 55 + 1 month
    ],
)
def test_statutory_retirement_date(birth, sex, base, expected):
    assert retirement_date(birth, sex, base) == expected


def test_plan_education_and_work_years_rules(coord):
    plan = PlanFactory(min_education="college", min_work_years=2)
    candidate = register(coord, work_years={"6-18-02-04": "1.5"})
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    with pytest.raises(EligibilityError) as info:
        services.case_submit(actor=coord, case=case, on=TODAY)
    assert info.value.problems == [
        "文化程度高中/中专/技校低于本计划要求的大专",
        "焊工从业年限 1.5 年，不足本计划要求的 2.0 年",
    ]


def test_level_4_needs_equivalence(coord):
    plan = PlanFactory(level=4)
    case = services.case_create(actor=coord, candidate=register(coord), plan=plan)
    with pytest.raises(EligibilityError) as info:
        services.case_submit(actor=coord, case=case, on=TODAY)
    assert info.value.problems == ["申报焊工4级须达到5级水平：未持有可比照认定的有效证书"]


def test_level_4_through_mem_weld_equivalence(coord):
    plan = PlanFactory(level=4, qualification_type=QualificationType.objects.get(code="SAMR-WELD"))
    candidate = register(coord)
    hold(coord, candidate, "MEM-WELD-FC", issue_date=date(2025, 1, 1))
    case = submitted(coord, plan, candidate)
    assert case.equivalent_level == 5
    assert [e.row for e in case.exemptions.all()] == [5]


def test_level_3_is_not_reached_from_level_5(coord):
    plan = PlanFactory(level=3)
    candidate = register(coord)
    hold(coord, candidate, "MEM-WELD-FC", issue_date=date(2025, 1, 1))
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    with pytest.raises(EligibilityError) as info:
        services.case_submit(actor=coord, case=case, on=TODAY)
    assert info.value.problems == ["申报焊工3级须达到4级水平：现比照认定为5级，可申报4级"]


def test_plan_switching_a_row_off_removes_the_exemption(coord):
    from catalog.models import RecognitionRule

    plan = PlanFactory()
    plan.disabled_rules.add(RecognitionRule.objects.get(row=7))
    candidate = register(coord)
    hold(coord, candidate, "SAMR-WELD")
    assert submitted(coord, plan, candidate).exemptions.count() == 0


# Review ------------------------------------------------------------------------------


def test_approve_moves_submitted_to_eligible(coord, plan):
    candidate = register(coord)
    hold(coord, candidate, "SAMR-WELD")
    case = services.case_approve(actor=coord, case=submitted(coord, plan, candidate))
    assert case.status == CaseStatus.ELIGIBLE


def test_approve_requires_basis_certificates_verified(coord, plan):
    candidate = register(coord)
    held = hold(coord, candidate, "SAMR-WELD", verified=False)
    case = submitted(coord, plan, candidate)
    with pytest.raises(EligibilityError) as info:
        services.case_approve(actor=coord, case=case)
    assert info.value.problems == [f"证书 SAMR-WELD {held.number} 尚未核验（未核验）"]
    case.refresh_from_db()
    assert case.status == CaseStatus.SUBMITTED


def test_approve_from_draft_is_a_conflict_naming_both_states(coord, plan):
    case = services.case_create(actor=coord, candidate=register(coord), plan=plan)
    with pytest.raises(StateConflict) as info:
        services.case_approve(actor=coord, case=case)
    assert info.value.message == "案件当前状态为「草稿」，不能变为「资格审核通过」"
    assert info.value.extra == {"current_state": "draft", "target_state": "eligible"}


def test_approve_by_a_grader_is_refused(coord, plan):
    case = submitted(coord, plan)
    with pytest.raises(PermissionDenied):
        services.case_approve(actor=UserFactory(roles=["grader"]), case=case)


def test_return_for_correction_needs_a_reason_then_resubmit(coord, plan):
    case = submitted(coord, plan)
    with pytest.raises(ValidationError):
        services.case_return_for_correction(actor=coord, case=case, reason="  ")
    case = services.case_return_for_correction(actor=coord, case=case, reason="照片不清晰")
    assert (case.status, case.status_reason) == (CaseStatus.RETURNED, "照片不清晰")
    case = services.case_submit(actor=coord, case=case, on=TODAY)
    assert (case.status, case.status_reason) == (CaseStatus.SUBMITTED, "")


def test_reject_ends_the_case_and_allows_a_new_application(coord, plan):
    case = submitted(coord, plan)
    case = services.case_reject(actor=coord, case=case, reason="材料虚假")
    assert case.status == CaseStatus.REJECTED
    again = services.case_create(actor=coord, candidate=case.candidate, plan=plan)
    assert again.status == CaseStatus.DRAFT


def test_second_open_case_for_the_same_plan_is_refused(coord, plan):
    case = services.case_create(actor=coord, candidate=register(coord), plan=plan)
    with pytest.raises(ValidationError) as info:
        services.case_create(actor=coord, candidate=case.candidate, plan=plan)
    assert info.value.message_dict == {"plan": ["该考生已报名此评价计划"]}


@pytest.mark.parametrize("state", ["draft", "submitted", "returned", "eligible"])
def test_withdraw_from_each_open_state(coord, plan, state):
    candidate = register(coord)
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    if state != "draft":
        case = services.case_submit(actor=coord, case=case, on=TODAY)
    if state == "returned":
        case = services.case_return_for_correction(actor=coord, case=case, reason="补材料")
    if state == "eligible":
        case = services.case_approve(actor=coord, case=case)
    case = services.case_withdraw(actor=coord, case=case, reason="本人申请")
    assert case.status == CaseStatus.WITHDRAWN


def test_withdrawn_case_cannot_be_submitted(coord, plan):
    case = services.case_create(actor=coord, candidate=register(coord), plan=plan)
    case = services.case_withdraw(actor=coord, case=case)
    with pytest.raises(StateConflict, match="案件当前状态为「已撤回」，不能变为「已提交」"):
        services.case_submit(actor=coord, case=case, on=TODAY)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_approvals_approve_once(db_vendor_postgresql):
    coord = coordinator()
    case = submitted(coord, PlanFactory())
    results = []

    def approve():
        try:
            services.case_approve(actor=coord, case=Case.objects.get(pk=case.pk))
            results.append("ok")
        except StateConflict:
            results.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "conflict", "conflict", "ok"]
    assert AuditEvent.objects.filter(action="case.approve").count() == 1


@pytest.fixture
def db_vendor_postgresql(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL; .ci/run does)")


def test_id_with_a_county_code_newer_than_the_birth_year_is_accepted(coord):
    # 140202 (大同城区) dates from 1983 in GB/T 2260; people born earlier carry it too.
    first17 = "140202" + "19750310" + "013"
    number = first17 + ric.calc_check_digit(first17 + "0")
    candidate = services.candidate_create(
        actor=coord, id_number=number, name="赵六", phone="13800138000", education="senior"
    )
    assert candidate.birth_date == date(1975, 3, 10)


def test_id_with_an_unknown_province_is_refused(coord):
    first17 = "990202" + "19750310" + "013"
    number = first17 + ric.calc_check_digit(first17 + "0")
    with pytest.raises(ValidationError) as info:
        services.candidate_create(
            actor=coord, id_number=number, name="赵六", phone="13800138000", education="senior"
        )
    assert info.value.message_dict == {"id_number": ["身份证号码中的地区码无效"]}


def test_id_with_an_impossible_birth_date_is_refused(coord):
    first17 = "110105" + "19750230" + "013"
    number = first17 + ric.calc_check_digit(first17 + "0")
    with pytest.raises(ValidationError) as info:
        services.candidate_create(
            actor=coord, id_number=number, name="赵六", phone="13800138000", education="senior"
        )
    assert info.value.message_dict == {"id_number": ["身份证号码中的出生日期无效"]}


def test_expiry_before_issue_is_refused(coord):
    candidate = register(coord)
    with pytest.raises(ValidationError) as info:
        services.held_certificate_create(
            actor=coord,
            candidate=candidate,
            qualification_type="SAMR-WELD",
            number="TS12345678",
            issuer_name="市场监管局",
            issue_date=date(2025, 1, 1),
            expiry_date=date(2024, 1, 1),
        )
    assert info.value.message_dict == {"expiry_date": ["有效期至不能早于发证日期"]}


def test_unverified_mem_basis_is_named_with_the_holders_id_masked(coord):
    plan = PlanFactory(qualification_type=QualificationType.objects.get(code="MOHURD-WELD"))
    candidate = register(coord)
    hold(coord, candidate, "MEM-WELD-FC", issue_date=date(2025, 1, 1), verified=False)
    case = submitted(coord, plan, candidate)
    with pytest.raises(EligibilityError) as info:
        services.case_approve(actor=coord, case=case)
    masked = "T" + candidate.id_number[:3] + "*" * 11 + candidate.id_number[-4:]
    assert info.value.problems == [f"证书 MEM-WELD-FC {masked} 尚未核验（未核验）"]


@pytest.mark.parametrize("name", ["return_for_correction", "reject", "withdraw"])
def test_reason_taking_transitions_refuse_a_grader_before_asking_for_a_reason(coord, plan, name):
    case = submitted(coord, plan)
    with pytest.raises(PermissionDenied):
        getattr(services, f"case_{name}")(actor=UserFactory(roles=["grader"]), case=case, reason="")


@pytest.mark.parametrize(
    ("name", "label"), [("return_for_correction", "退回修改"), ("reject", "不予受理")]
)
def test_reason_taking_transitions_from_draft_are_conflicts(coord, plan, name, label):
    case = services.case_create(actor=coord, candidate=register(coord), plan=plan)
    with pytest.raises(StateConflict) as info:
        getattr(services, f"case_{name}")(actor=coord, case=case, reason="")
    assert info.value.message == f"案件当前状态为「草稿」，不能变为「{label}」"


def test_withdrawn_case_cannot_be_withdrawn_again(coord, plan):
    case = services.case_withdraw(
        actor=coord, case=services.case_create(actor=coord, candidate=register(coord), plan=plan)
    )
    with pytest.raises(StateConflict, match="案件当前状态为「已撤回」，不能变为「已撤回」"):
        services.case_withdraw(actor=coord, case=case)


def _png(size=(300, 400), extra=b"") -> SimpleUploadedFile:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 210, 240)).save(buffer, "PNG")
    return SimpleUploadedFile(
        "../../evil.html", buffer.getvalue() + extra, content_type="image/png"
    )


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def test_photo_is_reencoded_as_jpeg_under_a_random_name(coord, media):
    candidate = register(coord, photo=_png(size=(1200, 1600), extra=b"<script>alert(1)</script>"))
    name = candidate.photo.name
    assert name.startswith("photos/")
    assert name.endswith(".jpg")
    assert "evil" not in name
    data = (media / name).read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    assert b"<script>" not in data
    from PIL import Image

    with Image.open(media / name) as image:
        assert image.size == (600, 800)


def test_failed_registration_leaves_no_photo_behind(coord, media):
    number = make_id_number()
    with pytest.raises(ValidationError):
        services.candidate_create(
            actor=coord,
            id_number=number[:-1] + "Z",
            name="张三",
            phone="13800138000",
            education="senior",
            photo=_png(),
        )
    assert list(media.rglob("*.jpg")) == []


def test_replacing_a_photo_deletes_the_old_file_after_commit(
    coord, media, django_capture_on_commit_callbacks
):
    candidate = register(coord, photo=_png())
    old = candidate.photo.name
    with django_capture_on_commit_callbacks(execute=True):
        candidate = services.candidate_update(actor=coord, candidate=candidate, photo=_png())
    assert candidate.photo.name != old
    assert not (media / old).exists()
    assert (media / candidate.photo.name).exists()


def test_id_number_cannot_change_once_a_case_is_submitted(coord, plan):
    case = submitted(coord, plan)
    with pytest.raises(ValidationError) as info:
        services.candidate_update(actor=coord, candidate=case.candidate, id_number=make_id_number())
    assert info.value.message_dict == {
        "id_number": ["该考生有已提交或已审核通过的报名，不能修改身份证号码"]
    }


def test_id_number_cannot_change_under_a_certificate_that_embeds_it(coord):
    candidate = register(coord)
    hold(coord, candidate, "MEM-WELD-FC", issue_date=date(2025, 1, 1))
    with pytest.raises(ValidationError) as info:
        services.candidate_update(actor=coord, candidate=candidate, id_number=make_id_number())
    assert info.value.message_dict == {
        "id_number": ["该考生登记了编号含身份证号码的证书，请先核对并更正证书后再修改"]
    }


def test_id_number_change_of_a_draft_candidate_rederives_birth_date(coord):
    candidate = register(coord)
    new = make_id_number(date(1980, 2, 3), "F")
    candidate = services.candidate_update(actor=coord, candidate=candidate, id_number=new)
    assert (candidate.id_number, candidate.birth_date, candidate.sex) == (
        new,
        date(1980, 2, 3),
        "F",
    )


def test_basis_certificate_revoked_after_submit_blocks_approval(coord, plan):
    from cases.models import HeldCertificate

    candidate = register(coord)
    held = hold(coord, candidate, "SAMR-WELD")
    case = submitted(coord, plan, candidate)
    # The registry later reports a revocation dated before the application.
    HeldCertificate.objects.filter(pk=held.pk).update(revoked_on=date(2026, 5, 1))
    with pytest.raises(EligibilityError) as info:
        services.case_approve(actor=coord, case=case)
    assert info.value.problems == [f"证书 SAMR-WELD {held.number} 已于 2026-05-01 被吊销或注销"]


def test_equivalence_basis_need_not_be_verified_for_a_level_5_plan(coord):
    from catalog.models import Occupation

    plan = PlanFactory(
        qualification_type=QualificationType.objects.get(code="MEM-ELEC-LV"),
        occupation=Occupation.objects.get(code="6-31-01-03"),
    )
    candidate = register(coord)
    hold(
        coord, candidate, "MEM-ELEC-HV", issue_date=date(2025, 1, 1), verified=False
    )  # no row to LV
    case = submitted(coord, plan, candidate)
    assert case.equivalent_level == 4
    assert services.case_approve(actor=coord, case=case).status == CaseStatus.ELIGIBLE


def test_batch_submit_of_many_different_snapshots_stores_each_as_case_submit_does(coord, plan):
    # Each case relies on its own certificate: more distinct snapshots than
    # services.SAVE_MANY_GROUPS, so the batch writes them row by row in one go.
    on = date(2026, 6, 1)
    count = services.SAVE_MANY_GROUPS + 5
    candidates = [register(coord) for _ in range(count + 1)]
    for candidate in candidates:
        hold(coord, candidate, "SAMR-WELD")
    reference = services.case_submit(
        actor=coord,
        case=services.case_create(actor=coord, candidate=candidates[0], plan=plan),
        on=on,
    )
    cases = services.cases_create(actor=coord, plan=plan, candidates=candidates[1:])

    outcome = services.cases_submit(actor=coord, cases=[c.pk for c in cases], on=on)

    assert len(outcome.submitted) == count
    fields = [
        "status",
        "application_date",
        "status_reason",
        "equivalent_level",
        "equivalence_source",
        "not_counted",
    ]
    expected = {f: getattr(Case.objects.get(pk=reference.pk), f) for f in fields}
    for case in Case.objects.filter(pk__in=[c.pk for c in cases]).select_related("candidate"):
        assert {f: getattr(case, f) for f in fields} == expected
        assert case.equivalence_basis.candidate_id == case.candidate_id
    assert Case.objects.get(pk=cases[0].pk).equivalent_level is not None
