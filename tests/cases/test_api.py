from datetime import date

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from cases import services
from cases.models import Candidate

from .factories import PlanFactory, UserFactory, coordinator, hold, make_id_number, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def api(coord):
    client = APIClient()
    client.force_authenticate(coord)
    return client


def client_for(*roles):
    client = APIClient()
    client.force_authenticate(UserFactory(roles=list(roles)))
    return client


def test_register_candidate_returns_masked_id(api):
    number = make_id_number(date(1985, 7, 1), "M")
    response = api.post(
        "/api/v1/candidates/",
        {
            "id_number": number,
            "name": "王五",
            "phone": "13812345678",
            "education": "senior",
            "work_years": {"6-18-02-04": "3"},
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id_number_masked"] == number[:3] + "*" * 11 + number[-4:]
    assert "id_number" not in body
    assert body["birth_date"] == "1985-07-01"
    assert body["work_years"] == {"6-18-02-04": "3.0"}


def test_bad_id_checksum_is_a_field_error_and_nothing_is_written(api):
    number = make_id_number()
    wrong = number[:-1] + ("1" if number[-1] == "0" else "0")
    response = api.post(
        "/api/v1/candidates/",
        {"id_number": wrong, "name": "王五", "phone": "13812345678", "education": "senior"},
    )
    assert response.status_code == 400
    assert response.json() == {"id_number": ["身份证号码校验位错误"]}
    assert Candidate.objects.count() == 0


def test_reveal_id_number_returns_it_and_audits(api, coord):
    candidate = register(coord)
    response = api.post(f"/api/v1/candidates/{candidate.pk}/reveal-id-number/")
    assert response.json() == {"id_number": candidate.id_number}
    assert AuditEvent.objects.filter(action="candidate.reveal_id_number").count() == 1


def test_candidate_search_by_name_id_and_phone(api, coord):
    zhang = register(coord, name="张三丰")
    register(coord, name="李四")
    for q in ["三丰", zhang.id_number[-6:], "13800138000"]:
        names = [c["name"] for c in api.get("/api/v1/candidates/", {"q": q}).json()["results"]]
        assert "张三丰" in names
    assert [c["name"] for c in api.get("/api/v1/candidates/", {"q": "三丰"}).json()["results"]] == [
        "张三丰"
    ]


def test_held_certificate_wrong_number_format_is_400(api, coord):
    candidate = register(coord)
    response = api.post(
        "/api/v1/held-certificates/",
        {
            "candidate": candidate.pk,
            "qualification_type": "SAMR-WELD",
            "number": "ab",
            "issuer_name": "市场监管局",
            "issue_date": "2025-01-01",
        },
    )
    assert response.status_code == 400
    assert response.json()["number"][0].startswith(
        "证书编号 AB 不符合特种设备作业人员证 · 焊接操作的编号格式"
    )


def test_full_workflow_through_the_api(api, coord):
    plan = PlanFactory()
    candidate = register(coord)
    held = api.post(
        "/api/v1/held-certificates/",
        {
            "candidate": candidate.pk,
            "qualification_type": "SAMR-WELD",
            "number": "TS20240001",
            "issuer_name": "山西省市场监督管理局",
            "issue_date": "2025-01-01",
        },
    ).json()
    assert (
        api.post(
            f"/api/v1/held-certificates/{held['id']}/verify/", {"verification": "registry"}
        ).status_code
        == 200
    )
    case = api.post("/api/v1/cases/", {"candidate": candidate.pk, "plan": plan.pk}).json()
    assert case["status"] == "draft"
    submitted = api.post(f"/api/v1/cases/{case['id']}/submit/").json()
    assert submitted["status"] == "submitted"
    assert sorted((e["component"], e["row"]) for e in submitted["exemptions"]) == [
        ("theory", 7),
        ("training", 7),
    ]
    approved = api.post(f"/api/v1/cases/{case['id']}/approve/")
    assert approved.status_code == 200
    assert approved.json()["status"] == "eligible"
    audit = api.get(f"/api/v1/cases/{case['id']}/audit/").json()
    assert [e["action"] for e in audit] == [
        "candidate.create",
        "held_certificate.create",
        "held_certificate.verify",
        "case.create",
        "case.submit",
        "case.approve",
    ]


def test_transition_from_the_wrong_state_is_409_naming_both_states(api, coord):
    case = services.case_create(actor=coord, candidate=register(coord), plan=PlanFactory())
    response = api.post(f"/api/v1/cases/{case.pk}/approve/")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "案件当前状态为「草稿」，不能变为「资格审核通过」",
        "code": "state_conflict",
        "current_state": "draft",
        "target_state": "eligible",
    }


def test_transition_by_a_reviewer_is_403(coord):
    case = services.case_create(actor=coord, candidate=register(coord), plan=PlanFactory())
    response = client_for("reviewer").post(f"/api/v1/cases/{case.pk}/submit/")
    assert response.status_code == 403
    case.refresh_from_db()
    assert case.status == "draft"


def test_grader_cannot_read_candidates():
    assert client_for("grader").get("/api/v1/candidates/").status_code == 403


def test_anonymous_is_refused():
    assert APIClient().get("/api/v1/cases/").status_code == 403


@pytest.mark.parametrize("role", ["reviewer", "grader", "issuer_officer"])
def test_registration_data_is_for_coordinators_only(role):
    client = client_for(role)
    for url in ["/api/v1/candidates/", "/api/v1/held-certificates/", "/api/v1/cases/"]:
        assert client.get(url).status_code == 403


def test_submit_with_problems_is_400_listing_them(api, coord):
    case = services.case_create(
        actor=coord, candidate=register(coord, birth=date(2009, 1, 1)), plan=PlanFactory()
    )
    response = api.post(f"/api/v1/cases/{case.pk}/submit/")
    assert response.status_code == 400
    assert response.json()["problems"] == ["考试日期 2026-09-15 时未满18周岁（17岁）"]


def test_return_for_correction_requires_reason(api, coord):
    case = services.case_create(actor=coord, candidate=register(coord), plan=PlanFactory())
    api.post(f"/api/v1/cases/{case.pk}/submit/")
    response = api.post(f"/api/v1/cases/{case.pk}/return_for_correction/", {"reason": ""})
    assert response.status_code == 400
    assert response.json() == {"reason": ["请填写理由"]}


def test_expired_held_certificate_reason_shown_on_case(api, coord):
    candidate = register(coord)
    hold(coord, candidate, "SAMR-WELD", issue_date=date(2020, 1, 1))
    case = services.case_create(actor=coord, candidate=candidate, plan=PlanFactory())
    body = api.post(f"/api/v1/cases/{case.pk}/submit/").json()
    assert body["exemptions"] == []
    assert body["not_counted"][0]["reason"].startswith("证书已过期")


def test_openapi_schema_is_served(api):
    response = api.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/cases/{id}/approve/" in response.content


def test_openapi_schema_validates_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))
    assert (tmp_path / "s.yaml").read_text().startswith("openapi: 3")


def test_audit_history_never_shows_a_full_id_number(api, coord):
    candidate = register(coord)
    hold(coord, candidate, "MEM-WELD-FC", issue_date=date(2025, 1, 1))
    case = api.post("/api/v1/cases/", {"candidate": candidate.pk, "plan": PlanFactory().pk}).json()
    response = api.get(f"/api/v1/cases/{case['id']}/audit/")
    body = response.content.decode()
    assert candidate.id_number not in body
    assert candidate.masked_id_number in body
    assert len(response.json()) == 4


def test_held_certificate_api_masks_the_id_inside_mem_numbers(api, coord):
    candidate = register(coord)
    hold(coord, candidate, "MEM-WELD-FC", issue_date=date(2025, 1, 1))
    body = api.get("/api/v1/held-certificates/").content.decode()
    assert candidate.id_number not in body
    assert "T" + candidate.masked_id_number in body
