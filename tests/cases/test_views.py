"""The registration and eligibility-review pages: roles, forms, and how service errors
are shown. Rules themselves are tested in test_services.py."""

from datetime import date, timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from cases import services
from cases.models import Candidate, Case, CaseStatus, HeldCertificate, Verification

from .factories import PlanFactory, UserFactory, coordinator, hold, make_id_number, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def grader():
    return UserFactory(username="grader", roles=["grader"])


@pytest.fixture
def plan():
    return PlanFactory(exam_date=timezone.localdate() + timedelta(days=60))


@pytest.fixture
def coord_client(client, coord):
    client.force_login(coord)
    return client


@pytest.fixture
def grader_client(client, grader):
    client.force_login(grader)
    return client


@pytest.fixture
def candidate(coord):
    return register(coord, name="李焊工")


@pytest.fixture
def submitted_case(coord, plan, candidate):
    hold(coord, candidate, "SAMR-WELD", verified=False)
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    return services.case_submit(actor=coord, case=case)


def page_urls(case):
    candidate_pk = case.candidate_id
    return [
        reverse("cases:dashboard"),
        reverse("cases:candidate-list"),
        reverse("cases:candidate-create"),
        reverse("cases:candidate-detail", args=[candidate_pk]),
        reverse("cases:candidate-edit", args=[candidate_pk]),
        reverse("cases:case-list"),
        reverse("cases:review-queue"),
        reverse("cases:case-detail", args=[case.pk]),
        reverse("cases:case-audit", args=[case.pk]),
    ]


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# Access ------------------------------------------------------------------------------


def test_every_page_renders_for_a_coordinator(coord_client, submitted_case):
    for url in page_urls(submitted_case):
        response = coord_client.get(url)
        assert response.status_code == 200, url
        assert "一试多证联合评价系统" in response.content.decode(), url


def test_grader_gets_403_on_coordinator_pages(grader_client, submitted_case):
    for url in page_urls(submitted_case)[1:]:  # the dashboard is everyone's landing page
        assert grader_client.get(url).status_code == 403, url


def test_grader_dashboard_shows_no_registration_data(grader_client, submitted_case):
    response = grader_client.get(reverse("cases:dashboard"))
    content = response.content.decode()
    assert response.status_code == 200
    assert "报名与资格审核页面仅限考务人员使用" in content
    assert reverse("cases:candidate-list") not in content  # nav link hidden


def test_anonymous_user_is_sent_to_login(client):
    response = client.get(reverse("cases:candidate-list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert "登录" in response.content.decode()


def test_login_and_logout(client, coord):
    response = client.post(reverse("login"), {"username": "coord", "password": "pass-Word-123"})
    assert response.status_code == 302
    assert response["Location"] == reverse("cases:dashboard")
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("cases:candidate-list")).status_code == 302


def test_language_switch_shows_english(coord_client):
    coord_client.post(reverse("set_language"), {"language": "en", "next": "/"})
    content = coord_client.get(reverse("cases:candidate-list")).content.decode()
    assert "Candidates" in content
    assert "Register candidate" in content


# Candidate list ------------------------------------------------------------------------


@pytest.fixture
def three_candidates(coord):
    return [
        services.candidate_create(
            actor=coord, id_number=make_id_number(), name=name, phone=phone, education=education
        )
        for name, phone, education in [
            ("王电工", "13911112222", "junior"),
            ("赵焊工", "13733334444", "college"),
            ("钱考生", "13555556666", "senior"),
        ]
    ]


def listed_names(client, **params) -> list[str]:
    response = client.get(reverse("cases:candidate-list"), params)
    assert response.status_code == 200
    return sorted(c.name for c in response.context["page"])


def test_search_finds_by_name(coord_client, three_candidates):
    assert listed_names(coord_client, q="赵焊") == ["赵焊工"]


def test_search_finds_by_id_number(coord_client, three_candidates):
    number = three_candidates[2].id_number
    assert listed_names(coord_client, q=number) == ["钱考生"]
    assert listed_names(coord_client, q=number[-6:].lower()) == ["钱考生"]


def test_search_finds_by_phone(coord_client, three_candidates):
    assert listed_names(coord_client, q="139111") == ["王电工"]


def test_filters_by_education_held_certificate_and_case_status(
    coord, coord_client, three_candidates, plan
):
    wang, zhao, _ = three_candidates
    hold(coord, zhao, "SAMR-WELD")
    services.case_create(actor=coord, candidate=wang, plan=plan)
    assert listed_names(coord_client, education="college") == ["赵焊工"]
    assert listed_names(coord_client, has_held="yes") == ["赵焊工"]
    assert listed_names(coord_client, has_held="no") == ["王电工", "钱考生"]
    assert listed_names(coord_client, status="draft") == ["王电工"]
    assert listed_names(coord_client, status="submitted") == []


def test_list_shows_the_id_number_masked(coord_client, three_candidates):
    content = coord_client.get(reverse("cases:candidate-list")).content.decode()
    for candidate in three_candidates:
        assert candidate.masked_id_number in content
        assert candidate.id_number not in content


def test_list_query_count_does_not_grow_with_rows(
    coord, coord_client, plan, django_assert_max_num_queries
):
    for i in range(12):
        candidate = register(coord, name=f"考生{i}")
        hold(coord, candidate, "SAMR-WELD", verified=False)
        services.case_create(actor=coord, candidate=candidate, plan=plan)
    with django_assert_max_num_queries(8):
        coord_client.get(reverse("cases:candidate-list"))


# Candidate create / edit / reveal --------------------------------------------------------


def candidate_post(**overrides):
    data = {
        "id_number": make_id_number(date(1992, 3, 4), "F"),
        "name": "孙丽",
        "phone": "13812345678",
        "education": "college",
        "sex": "",
        "birth_date": "",
        "years_6_18_02_04": "3.5",
        "years_6_31_01_03": "",
    }
    data.update(overrides)
    return data


def test_candidate_create_registers_and_redirects(coord_client):
    data = candidate_post()
    response = coord_client.post(reverse("cases:candidate-create"), data)
    candidate = Candidate.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("cases:candidate-detail", args=[candidate.pk])
    assert (candidate.id_number, candidate.birth_date, candidate.sex) == (
        data["id_number"],
        date(1992, 3, 4),
        "F",
    )
    assert [(w.occupation.code, str(w.years)) for w in candidate.work_experience.all()] == [
        ("6-18-02-04", "3.5")
    ]
    assert AuditEvent.objects.filter(action="candidate.create").count() == 1


def test_candidate_create_with_bad_checksum_shows_the_field_error_and_writes_nothing(
    coord_client,
):
    number = make_id_number()
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    response = coord_client.post(reverse("cases:candidate-create"), candidate_post(id_number=wrong))
    assert response.status_code == 200
    assert response.context["form"].errors == {"id_number": ["身份证号码校验位错误"]}
    assert "身份证号码校验位错误" in response.content.decode()
    assert Candidate.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_candidate_create_with_mismatched_birth_date_shows_it_on_the_field(coord_client):
    response = coord_client.post(
        reverse("cases:candidate-create"), candidate_post(birth_date="1992-03-05")
    )
    assert response.context["form"].errors == {
        "birth_date": ["出生日期与身份证号码不符（身份证为 1992-03-04）"]
    }
    assert Candidate.objects.count() == 0


def test_candidate_edit_keeps_the_id_number_when_left_blank(coord_client, candidate):
    response = coord_client.get(reverse("cases:candidate-edit", args=[candidate.pk]))
    assert candidate.id_number not in response.content.decode()
    response = coord_client.post(
        reverse("cases:candidate-edit", args=[candidate.pk]),
        candidate_post(id_number="", name="李焊工二", years_6_18_02_04="8"),
    )
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.name == "李焊工二"
    assert candidate.work_experience.get().years == 8
    event = AuditEvent.objects.get(action="candidate.update")
    assert event.changes["name"] == {"before": "李焊工", "after": "李焊工二"}


def test_detail_shows_the_id_number_masked(coord_client, candidate):
    content = coord_client.get(reverse("cases:candidate-detail", args=[candidate.pk])).content
    assert candidate.masked_id_number in content.decode()
    assert candidate.id_number not in content.decode()


def test_reveal_id_number_shows_it_and_writes_an_audit_event(coord, coord_client, candidate):
    response = coord_client.post(reverse("cases:candidate-reveal-id", args=[candidate.pk]))
    assert response.status_code == 200
    assert candidate.id_number in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    event = AuditEvent.objects.get(action="candidate.reveal_id_number")
    assert (event.object_type, event.object_id, event.actor) == (
        "cases.candidate",
        str(candidate.pk),
        coord,
    )


def test_reveal_id_number_by_a_grader_is_refused_and_not_audited(grader_client, candidate):
    response = grader_client.post(reverse("cases:candidate-reveal-id", args=[candidate.pk]))
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="candidate.reveal_id_number").count() == 0


def test_reveal_id_number_needs_post(coord_client, candidate):
    response = coord_client.get(reverse("cases:candidate-reveal-id", args=[candidate.pk]))
    assert response.status_code == 405


# Held certificates -------------------------------------------------------------------------


def test_held_certificate_create_from_the_page(coord_client, candidate):
    from catalog.models import QualificationType

    samr = QualificationType.objects.get(code="SAMR-WELD")
    response = coord_client.post(
        reverse("cases:held-create", args=[candidate.pk]),
        {
            "qualification_type": samr.pk,
            "number": "TS20240001",
            "issuer_name": "山西省市场监督管理局",
            "issue_date": "2024-03-01",
        },
    )
    assert response.status_code == 302
    held = HeldCertificate.objects.get()
    assert (held.number, held.expiry_date, held.verification) == (
        "TS20240001",
        date(2028, 2, 29),
        Verification.UNVERIFIED,
    )


def test_held_certificate_with_a_wrong_number_shows_the_field_error(coord_client, candidate):
    from catalog.models import QualificationType

    mem = QualificationType.objects.get(code="MEM-WELD-FC")
    response = coord_client.post(
        reverse("cases:held-create", args=[candidate.pk]),
        {
            "qualification_type": mem.pk,
            "number": "T" + make_id_number(),
            "issuer_name": "应急管理局",
            "issue_date": "2024-03-01",
        },
    )
    assert response.status_code == 400
    assert response.context["held_form"].errors == {
        "number": ["特种作业操作证 · 熔化焊接与热切割作业的编号应为 T + 持证人身份证号码"]
    }
    assert HeldCertificate.objects.count() == 0


def test_held_certificate_number_embedding_the_id_is_masked_on_the_page(
    coord, coord_client, candidate
):
    hold(coord, candidate, "MEM-WELD-FC")
    content = coord_client.get(reverse("cases:candidate-detail", args=[candidate.pk])).content
    assert candidate.id_number not in content.decode()
    assert "T" + candidate.masked_id_number in content.decode()


def test_verify_held_certificate_from_the_page(coord, coord_client, candidate):
    held = hold(coord, candidate, "SAMR-WELD", verified=False)
    response = coord_client.post(
        reverse("cases:held-verify", args=[held.pk]),
        {"verification": "coordinator", "note": "原件已核对"},
    )
    assert response.status_code == 302
    held.refresh_from_db()
    assert (held.verification, held.verification_note, held.verified_by) == (
        Verification.COORDINATOR,
        "原件已核对",
        coord,
    )


def test_coordinator_verification_without_a_note_shows_the_error(coord, coord_client, candidate):
    held = hold(coord, candidate, "SAMR-WELD", verified=False)
    response = coord_client.post(
        reverse("cases:held-verify", args=[held.pk]), {"verification": "coordinator", "note": ""}
    )
    assert response.status_code == 400
    assert "人工核验或核验未通过时须填写说明" in response.content.decode()
    held.refresh_from_db()
    assert held.verification == Verification.UNVERIFIED


def test_candidate_page_previews_what_each_plan_earns(coord, coord_client, candidate, plan):
    hold(coord, candidate, "SAMR-WELD")
    response = coord_client.get(reverse("cases:candidate-detail", args=[candidate.pk]))
    [(previewed_plan, result)] = response.context["previews"]
    assert previewed_plan == plan
    assert (result.recognition.rows, result.recognition.exempt) == ([7], ["theory", "training"])


# Cases ----------------------------------------------------------------------------------


def test_case_create_from_the_candidate_page(coord_client, candidate, plan):
    response = coord_client.post(
        reverse("cases:case-create", args=[candidate.pk]), {"plan": plan.pk}
    )
    case = Case.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("cases:case-detail", args=[case.pk])
    assert (case.candidate, case.plan, case.status) == (candidate, plan, CaseStatus.DRAFT)


def test_second_case_for_the_same_plan_shows_the_service_error(
    coord, coord_client, candidate, plan
):
    services.case_create(actor=coord, candidate=candidate, plan=plan)
    response = coord_client.post(
        reverse("cases:case-create", args=[candidate.pk]), {"plan": plan.pk}
    )
    assert response.status_code == 400
    assert response.context["case_form"].errors == {"plan": ["该考生已报名此评价计划"]}
    assert Case.objects.count() == 1


def transition(client, case, name, **data):
    return client.post(reverse("cases:case-transition", args=[case.pk, name]), data)


def test_draft_case_offers_submit_and_withdraw_only(coord, coord_client, candidate, plan):
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    response = coord_client.get(reverse("cases:case-detail", args=[case.pk]))
    assert [t["name"] for t in response.context["transitions"]] == ["submit", "withdraw"]
    assert response.context["preview"].ok is True


def test_submit_then_approve_from_the_page(coord, coord_client, candidate, plan):
    held = hold(coord, candidate, "SAMR-WELD")
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    assert transition(coord_client, case, "submit").status_code == 302
    response = transition(coord_client, case, "approve")
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.status == CaseStatus.ELIGIBLE
    content = coord_client.get(reverse("cases:case-detail", args=[case.pk])).content.decode()
    assert "资格审核通过" in content
    assert "序号7" in content
    assert [(e.component.code, e.basis) for e in case.exemptions.order_by("component_id")] == [
        ("training", held),
        ("theory", held),
    ]


def test_approve_with_an_unverified_basis_shows_the_problem(coord_client, submitted_case):
    response = transition(coord_client, submitted_case, "approve")
    assert response.status_code == 400
    [message] = messages_of(response)
    assert message.startswith("证书 SAMR-WELD ")
    assert message.endswith("尚未核验（未核验）")
    submitted_case.refresh_from_db()
    assert submitted_case.status == CaseStatus.SUBMITTED


def test_reject_without_a_reason_shows_the_field_error(coord_client, submitted_case):
    response = transition(coord_client, submitted_case, "reject", reason="  ")
    assert response.status_code == 400
    [failed] = [t for t in response.context["transitions"] if t["name"] == "reject"]
    assert failed["form"].errors == {"reason": ["请填写理由"]}
    submitted_case.refresh_from_db()
    assert submitted_case.status == CaseStatus.SUBMITTED


def test_return_for_correction_records_the_reason(coord_client, submitted_case):
    response = transition(coord_client, submitted_case, "return_for_correction", reason="照片模糊")
    assert response.status_code == 302
    submitted_case.refresh_from_db()
    assert (submitted_case.status, submitted_case.status_reason) == (
        CaseStatus.RETURNED,
        "照片模糊",
    )


def test_transition_by_a_non_coordinator_is_refused(grader_client, submitted_case):
    before = AuditEvent.objects.count()
    response = transition(grader_client, submitted_case, "reject", reason="不符合条件")
    assert response.status_code == 403
    submitted_case.refresh_from_db()
    assert submitted_case.status == CaseStatus.SUBMITTED
    assert AuditEvent.objects.count() == before


def test_wrong_state_transition_shows_the_conflict_and_changes_nothing(
    coord, coord_client, candidate, plan
):
    case = services.case_create(actor=coord, candidate=candidate, plan=plan)
    before = AuditEvent.objects.count()
    response = transition(coord_client, case, "approve")
    assert response.status_code == 409
    assert messages_of(response) == ["案件当前状态为「草稿」，不能变为「资格审核通过」"]
    assert "案件当前状态为「草稿」，不能变为「资格审核通过」" in response.content.decode()
    case.refresh_from_db()
    assert case.status == CaseStatus.DRAFT
    assert AuditEvent.objects.count() == before


def test_unknown_transition_is_404(coord_client, submitted_case):
    assert transition(coord_client, submitted_case, "complete").status_code == 404


def test_review_queue_lists_submitted_cases_and_flags_unverified_basis(
    coord, coord_client, submitted_case, plan
):
    services.case_create(actor=coord, candidate=register(coord, name="草稿考生"), plan=plan)
    response = coord_client.get(reverse("cases:review-queue"))
    [queued] = response.context["page"]
    assert queued == submitted_case
    assert len(queued.approval_problems) == 1
    assert "尚未核验" in response.content.decode()


def test_case_list_filters_by_status_and_plan(coord, coord_client, submitted_case, plan):
    other_plan = PlanFactory(exam_date=plan.exam_date)
    draft = services.case_create(
        actor=coord, candidate=register(coord, name="草稿考生"), plan=other_plan
    )
    url = reverse("cases:case-list")
    assert list(coord_client.get(url, {"status": "submitted"}).context["page"]) == [submitted_case]
    assert list(coord_client.get(url, {"plan": other_plan.pk}).context["page"]) == [draft]


def test_case_audit_page_shows_events_with_ids_masked(coord_client, submitted_case):
    response = coord_client.get(reverse("cases:case-audit", args=[submitted_case.pk]))
    content = response.content.decode()
    actions = [e.action for e in response.context["events"]]
    assert actions == [
        "candidate.create",
        "held_certificate.create",
        "case.create",
        "case.submit",
    ]
    assert submitted_case.candidate.id_number not in content
    assert submitted_case.candidate.masked_id_number in content
    last = response.context["events"].last()
    assert last.hash[:12] in content


def test_dashboard_counts_cases_by_state(coord_client, submitted_case):
    response = coord_client.get(reverse("cases:dashboard"))
    counts = {status: n for status, _label, n in response.context["status_counts"]}
    assert counts == {s.value: (1 if s == CaseStatus.SUBMITTED else 0) for s in CaseStatus}
    assert f"{reverse('cases:case-list')}?status=eligible" in response.content.decode()


def test_case_states_are_translated_from_the_model_choices(coord_client):
    from django.utils import translation

    from cases.models import CaseStatus

    with translation.override("en"):
        assert str(CaseStatus.ELIGIBLE.label) == "Eligible"
    with translation.override("zh-hans"):
        assert str(CaseStatus.ELIGIBLE.label) == "资格审核通过"


def test_candidate_photo_is_served_to_coordinators_only(coord, coord_client, settings, tmp_path):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client
    from PIL import Image

    settings.MEDIA_ROOT = tmp_path
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (1, 2, 3)).save(buffer, "PNG")
    candidate = services.candidate_create(
        actor=coord,
        id_number=make_id_number(),
        name="王五",
        phone="13800138000",
        education="senior",
        photo=SimpleUploadedFile("p.png", buffer.getvalue()),
    )
    url = reverse("cases:candidate-photo", args=[candidate.pk])
    response = coord_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"
    anonymous = Client()
    assert anonymous.get(url).status_code == 302  # to the login page
    assert anonymous.get(f"/media/{candidate.photo.name}").status_code == 404
