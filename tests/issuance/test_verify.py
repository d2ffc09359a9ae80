"""Public verification (issue 4 item 5; DESIGN.md "Public verification"): by number +
holder name or through the QR link, valid / revoked / expired, masked name and ID, a
miss and a wrong name byte-identical, malformed numbers refused, rate-limited per client,
no login, page and JSON."""

from datetime import date

import pytest
from django.core.cache import cache
from django.urls import reverse

from issuance import services
from issuance.models import Certificate
from issuance.verification import (
    certificate_by_code,
    certificate_lookup,
    number_is_well_formed,
    verification_answer,
)

from .factories import BOTH, department, institution, officer, passed_cases

pytestmark = pytest.mark.django_db

ON = date(2026, 11, 20)
PAGE = reverse("issuance:verify")
API = reverse("api-verify")
NOT_FOUND_JSON = {"detail": "未找到匹配的证书"}


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    """The rate limit counts in the cache: each test starts with a full budget."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def mem():
    return department()


@pytest.fixture
def mem_officer(mem):
    return officer(mem, "mem-officer")


@pytest.fixture
def inst():
    return institution()


@pytest.fixture
def inst_officer(inst):
    return officer(inst, "inst-officer")


def issue(actor, certificate, on=ON):
    services.certificate_approve(actor=actor, certificate=certificate)
    return services.certificate_issue(actor=actor, certificate=certificate, on=on)


@pytest.fixture
def case(mem, inst):
    (case,) = passed_cases((BOTH,))
    services.certificates_open(case_ids=[case.pk])
    return case


@pytest.fixture
def qualification(case, mem_officer):
    """The issued MEM-WELD-FC certificate (number T + the holder's ID)."""
    certificate = Certificate.objects.get(case=case, kind="qualification")
    return issue(mem_officer, certificate)


@pytest.fixture
def skill(case, inst_officer):
    certificate = Certificate.objects.get(case=case, kind="skill")
    return issue(inst_officer, certificate)


def masked_id(id_number):
    return id_number[:3] + "*" * 11 + id_number[-4:]


def expected_answer(certificate, **changes):
    holder_id = certificate.holder_id_number
    answer = {
        "status": "valid",
        "status_label": "有效",
        "certificate_type": "MEM-WELD-FC",
        "type_label": "特种作业操作证 · 熔化焊接与热切割作业",
        "occupation": "焊工",
        "level": None,
        "number": "T" + masked_id(holder_id),
        "issuer": "山西省应急管理厅",
        "issued_on": "2026-11-20",
        "valid_until": "2032-11-19",
        "review_due": "2029-11-20",
        "revoked_on": None,
        "holder_name": "张*",
        "id_number": masked_id(holder_id),
    }
    return {**answer, **changes}


def assert_no_personal_data(response, certificate):
    body = response.content.decode()
    assert certificate.holder_id_number not in body
    assert certificate.holder_id_number[:-1] not in body  # nor its first 17 digits
    assert certificate.holder_name not in body


# Look-ups ------------------------------------------------------------------------------


def test_lookup_matches_the_exact_number_and_name_after_strip_and_upper_case(qualification):
    number = qualification.number
    assert certificate_lookup(number=number, name="张三") == qualification
    assert certificate_lookup(number=f"  {number.lower()} ", name=" 张三 ") == qualification
    assert certificate_lookup(number=number, name="张") is None
    assert certificate_lookup(number=number, name="张三丰") is None
    assert certificate_lookup(number="T110105199001010000", name="张三") is None


def test_a_certificate_not_yet_issued_is_not_found(case, mem_officer):
    certificate = Certificate.objects.get(case=case, kind="qualification")
    services.certificate_approve(actor=mem_officer, certificate=certificate)
    assert certificate_lookup(number="T" + certificate.holder_id_number, name="张三") is None


def test_lookup_by_code_finds_the_issued_certificate(qualification, skill):
    assert len(qualification.verification_code) == 16
    assert certificate_by_code(qualification.verification_code) == qualification
    assert certificate_by_code(skill.verification_code) == skill
    assert certificate_by_code("no-such-code") is None
    assert certificate_by_code("../" + skill.verification_code) is None
    assert certificate_by_code("") is None


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("T11010519900517001X", True),  # MEM: T + ID
        ("t11010519900517001x", True),  # upper-cased first
        ("S123414000001265000001", True),  # skill level: 22 characters
        ("Y123414000001265000001", True),
        ("晋A012026000001", True),  # MOHURD
        ("晋a022026000001", True),
        ("TS2026000001", True),  # SAMR series
        ("特设焊2026000001", True),
        ("T123", False),
        ("", False),
        ("   ", False),
        ("AB-123456", False),
        ("T1101051990<script>", False),
        ("A" * 33, False),
    ],
)
def test_number_is_well_formed_follows_the_catalog_patterns(number, expected):
    assert number_is_well_formed(number) is expected


def test_answer_of_a_skill_certificate_has_its_level_and_no_expiry(skill):
    answer = verification_answer(skill, date(2026, 11, 22))
    assert answer["status"] == "valid"
    assert answer["certificate_type"] == "SKILL"
    assert answer["type_label"] == "职业技能等级证书 · 焊工 5级"
    assert answer["level"] == 5
    assert answer["number"] == skill.number  # no ID inside: shown as issued
    assert answer["issuer"] == "山西省技能人才评价中心"
    assert (answer["valid_until"], answer["review_due"]) == (None, None)


# Valid answer: page and JSON ------------------------------------------------------------


def test_page_answers_by_number_and_name_without_login(client, qualification):
    response = client.get(PAGE, {"number": qualification.number, "name": "张三"})
    assert response.status_code == 200
    assert response.context["answer"] == expected_answer(qualification)
    body = response.content.decode()
    assert 'class="pv-card pv-answer pv-valid"' in body
    assert "有效" in body
    assert "张*" in body
    assert masked_id(qualification.holder_id_number) in body
    assert "山西省应急管理厅" in body
    assert "2032-11-19" in body
    assert "csrfmiddlewaretoken" not in body
    assert "no-store" in response["Cache-Control"]
    assert_no_personal_data(response, qualification)


def test_api_answers_by_number_and_name_without_login(client, qualification):
    response = client.get(API, {"number": qualification.number.lower(), "name": " 张三"})
    assert response.status_code == 200
    assert response.json() == expected_answer(qualification)
    assert "no-store" in response["Cache-Control"]
    assert_no_personal_data(response, qualification)


def test_the_empty_form_needs_no_login(client):
    response = client.get(PAGE)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'method="get"' in body
    assert 'name="number"' in body
    assert 'name="name"' in body
    assert 'name="viewport"' in body
    assert "csrfmiddlewaretoken" not in body


def test_qr_link_shows_the_answer_without_a_name(client, qualification, skill):
    url = reverse("issuance:verify-code", args=[skill.verification_code])
    response = client.get(url)
    assert response.status_code == 200
    assert response.context["answer"]["number"] == skill.number
    assert response.context["answer"]["status"] == "valid"
    assert "职业技能等级证书 · 焊工 5级" in response.content.decode()
    assert_no_personal_data(response, skill)

    response = client.get(API, {"code": qualification.verification_code})
    assert response.status_code == 200
    assert response.json() == expected_answer(qualification)


def test_an_unknown_code_is_not_found(client, qualification):
    response = client.get(reverse("issuance:verify-code", args=["AAAAAAAAAAAAAAAA"]))
    assert response.status_code == 404
    assert "未找到匹配的证书" in response.content.decode()
    response = client.get(API, {"code": "AAAAAAAAAAAAAAAA"})
    assert response.status_code == 404
    assert response.json() == NOT_FOUND_JSON


# Revoked and expired --------------------------------------------------------------------


def test_revocation_shows_at_once_with_its_date(client, qualification, skill, mem_officer):
    services.certificate_revoke(
        actor=mem_officer, certificate=qualification, reason="提供虚假材料", on=date(2026, 11, 21)
    )
    response = client.get(PAGE, {"number": qualification.number, "name": "张三"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "已撤销（撤销日期 2026-11-21）" in body
    assert 'class="pv-card pv-answer pv-revoked"' in body
    assert "提供虚假材料" not in body  # the reason stays with the issuer

    response = client.get(API, {"code": qualification.verification_code})
    assert response.json() == expected_answer(
        qualification, status="revoked", status_label="已撤销", revoked_on="2026-11-21"
    )
    # The case's other certificate is untouched.
    response = client.get(API, {"code": skill.verification_code})
    assert response.json()["status"] == "valid"


def test_a_certificate_past_its_validity_shows_expired(client, case, mem_officer):
    certificate = Certificate.objects.get(case=case, kind="qualification")
    certificate = issue(mem_officer, certificate, on=date(2019, 3, 1))
    assert certificate.valid_until == date(2025, 2, 28)

    response = client.get(API, {"number": certificate.number, "name": "张三"})
    assert response.status_code == 200
    assert response.json() == expected_answer(
        certificate,
        status="expired",
        status_label="已过期",
        issued_on="2019-03-01",
        valid_until="2025-02-28",
        review_due="2022-03-01",
    )
    response = client.get(reverse("issuance:verify-code", args=[certificate.verification_code]))
    body = response.content.decode()
    assert 'class="pv-card pv-answer pv-expired"' in body
    assert "已过期" in body
    assert "有效期至 2025-02-28，已过期" in body


# A miss and a wrong name look identical ---------------------------------------------------


def test_page_miss_and_wrong_name_are_byte_identical(client, qualification):
    miss = client.get(PAGE, {"number": "T110105199001010000", "name": "张三"})
    wrong_name = client.get(PAGE, {"number": qualification.number, "name": "李四"})
    assert miss.status_code == wrong_name.status_code == 404
    assert miss.content == wrong_name.content
    body = miss.content.decode()
    assert "未找到匹配的证书" in body
    assert "T110105199001010000" not in body
    assert "李四" not in body


def test_api_miss_and_wrong_name_are_byte_identical(client, qualification):
    miss = client.get(API, {"number": "T110105199001010000", "name": "张三"})
    wrong_name = client.get(API, {"number": qualification.number, "name": "李四"})
    assert miss.status_code == wrong_name.status_code == 404
    assert miss.content == wrong_name.content
    assert miss.json() == NOT_FOUND_JSON


# Bad input ------------------------------------------------------------------------------


def test_api_refuses_a_malformed_number(client, qualification):
    response = client.get(API, {"number": "ABC", "name": "张三"})
    assert response.status_code == 400
    assert response.json() == {"number": ["证书编号格式不正确"]}


def test_api_names_the_missing_parameters(client):
    response = client.get(API)
    assert response.status_code == 400
    assert response.json() == {"number": ["请填写证书编号"], "name": ["请填写持证人姓名"]}
    response = client.get(API, {"number": "TS2026000001", "name": "  "})
    assert response.status_code == 400
    assert response.json() == {"name": ["请填写持证人姓名"]}


def test_page_explains_a_malformed_number(client):
    response = client.get(PAGE, {"number": "ABC", "name": "张三"})
    assert response.status_code == 400
    assert response.context["errors"] == {"number": ["证书编号格式不正确"]}
    body = response.content.decode()
    assert "证书编号格式不正确" in body
    assert 'aria-invalid="true"' in body


def test_page_refuses_a_post(client):
    assert client.post(PAGE, {"number": "TS2026000001", "name": "张三"}).status_code == 405


# Rate limit -----------------------------------------------------------------------------


def test_a_flood_from_one_client_gets_429_while_another_client_still_gets_answers(
    client, settings, qualification
):
    # An hour window: the budget cannot roll over while the test runs.
    settings.VERIFY_RATE = "3/h"
    query = {"number": qualification.number, "name": "张三"}
    flooder = {"REMOTE_ADDR": "203.0.113.7"}
    # One budget across the page, the QR page and the API.
    assert client.get(PAGE, query, **flooder).status_code == 200
    assert client.get(API, query, **flooder).status_code == 200
    code_url = reverse("issuance:verify-code", args=[qualification.verification_code])
    assert client.get(code_url, **flooder).status_code == 200

    page = client.get(PAGE, query, **flooder)
    assert page.status_code == 429
    assert "查询过于频繁，请稍后再试" in page.content.decode()
    assert "answer" not in page.context
    assert int(page["Retry-After"]) >= 1
    api = client.get(API, query, **flooder)
    assert api.status_code == 429
    assert api.json() == {"detail": "查询过于频繁，请稍后再试"}

    other = {"REMOTE_ADDR": "198.51.100.20"}
    assert client.get(PAGE, query, **other).status_code == 200
    assert client.get(API, query, **other).json()["status"] == "valid"


def test_behind_a_trusted_proxy_clients_are_told_apart_by_forwarded_address(
    client, settings, qualification
):
    settings.VERIFY_RATE = "1/h"
    settings.TRUSTED_PROXY_COUNT = 1
    query = {"number": qualification.number, "name": "张三"}
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    first = client.get(API, query, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
    again = client.get(API, query, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
    other = client.get(API, query, HTTP_X_FORWARDED_FOR="198.51.100.20", **proxy)
    assert (first.status_code, again.status_code, other.status_code) == (200, 429, 200)
