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


# The API's short ways (issue 5: DRF and most middleware skipped for a plain GET) ---------

SHORTCUT = "issuance.middleware.VerifyApiMiddleware"


@pytest.fixture
def shortcut(settings):
    """The middleware as settings.MIDDLEWARE installs it: right after SecurityMiddleware."""
    middleware = [m for m in settings.MIDDLEWARE if m != SHORTCUT]
    middleware.insert(
        middleware.index("django.middleware.security.SecurityMiddleware") + 1, SHORTCUT
    )
    settings.MIDDLEWARE = middleware


def _headers(response):
    """The headers that do not change from one second to the next."""
    return {k: v for k, v in response.headers.items() if k not in ("Expires", "Date")}


def _through_drf(client, query, **extra):
    """The same request answered by DRF: an Accept header that is not one of the plain
    ones but gets JSON all the same."""
    return client.get(API, query, HTTP_ACCEPT="application/json, */*", **extra)


QUERIES = {
    "hit": lambda c: {"number": c.number.lower(), "name": " 张三"},
    "code": lambda c: {"code": c.verification_code},
    "miss": lambda c: {"number": "T110105199001010000", "name": "张三"},
    "wrong name": lambda c: {"number": c.number, "name": "李四"},
    "unknown code": lambda c: {"code": "AAAAAAAAAAAAAAAA"},
    "malformed": lambda c: {"number": "ABC", "name": "张三"},
    "missing": lambda c: {},
}


@pytest.mark.parametrize("language", ["zh-hans", "en"])
@pytest.mark.parametrize("with_middleware", [False, True], ids=["view", "middleware"])
@pytest.mark.parametrize("query", QUERIES)
def test_plain_get_answers_exactly_as_drf_does(
    request, client, qualification, query, with_middleware, language
):
    """Also in English: the short way does not activate the request's language (nothing
    in the answer is translated); should a message become translatable, this fails."""
    if with_middleware:
        request.getfixturevalue("shortcut")
    params = QUERIES[query](qualification)
    plain = client.get(API, params, HTTP_ACCEPT_LANGUAGE=language)
    drf = _through_drf(client, params, HTTP_ACCEPT_LANGUAGE=language)
    assert plain.status_code == drf.status_code
    assert plain.content == drf.content
    assert _headers(plain) == _headers(drf)
    assert plain["Allow"] == "GET, HEAD, OPTIONS"
    assert plain["X-Frame-Options"] == "DENY"
    assert plain["X-Content-Type-Options"] == "nosniff"
    assert plain["Content-Language"] == language
    if plain.status_code != 400:
        assert plain["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
        assert "Expires" in plain


def test_plain_get_is_rate_limited_like_drf(client, settings, shortcut, qualification):
    settings.VERIFY_RATE = "2/h"
    query = {"number": qualification.number, "name": "张三"}
    flooder = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get(API, query, **flooder).status_code == 200
    assert _through_drf(client, query, **flooder).status_code == 200
    plain = client.get(API, query, **flooder)
    drf = _through_drf(client, query, **flooder)
    assert plain.status_code == drf.status_code == 429
    assert plain.content == drf.content
    assert plain.json() == {"detail": "查询过于频繁，请稍后再试"}
    assert int(plain["Retry-After"]) >= 1
    assert "no-store" in plain["Cache-Control"]


def test_the_middleware_still_refuses_a_host_not_allowed(client, shortcut, qualification):
    query = {"number": qualification.number, "name": "张三"}
    response = client.get(API, query, HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Language"] == "zh-hans"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_middleware_names_the_negotiated_language_as_before(client, shortcut, qualification):
    query = {"number": qualification.number, "name": "张三"}
    response = client.get(API, query, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert (response["Content-Language"], response["Vary"]) == ("en", "Accept-Language")


@pytest.mark.parametrize("with_middleware", [False, True], ids=["view", "middleware"])
def test_other_requests_still_go_through_drf(request, client, with_middleware):
    if with_middleware:
        request.getfixturevalue("shortcut")
    options = client.options(API)
    assert options.status_code == 200
    assert options.json()["renders"] == ["application/json"]
    assert client.post(API).status_code == 405
    assert client.get(API, HTTP_ACCEPT="text/html").status_code == 406
    # DRF's format parameter: an unknown format is DRF's own 404.
    response = client.get(API, {"number": "TS2026000001", "name": "张三", "format": "api"})
    assert response.status_code == 404
    assert response.json() == {"detail": "未找到。"}


def test_the_middleware_answers_without_sessions_or_csrf(client, shortcut, qualification):
    """Shown by a stale session cookie and a malformed CSRF cookie: the whole stack
    deletes the one and replaces the other; the short way neither reads nor sets them."""
    client.cookies["sessionid"] = "stale"
    client.cookies["csrftoken"] = "x"
    response = client.get(API, {"number": qualification.number, "name": "张三"})
    assert response.status_code == 200
    assert response.cookies == {}
    assert response["Vary"] == "Accept-Language"


def test_the_endpoint_stays_in_the_openapi_schema(client):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/verify/"]["get"]
    assert operation["operationId"] == "certificate_verify"
    assert {p["name"] for p in operation["parameters"]} == {"number", "name", "code"}
    assert set(operation["responses"]) == {"200", "400", "404", "429"}


@pytest.fixture
def redis_limiter():
    """The limiter's script (this thread's), where the cache is Redis."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    from issuance.verification import _count_script

    if not isinstance(caches["default"], RedisCache):
        pytest.skip("the rate limit counts in Redis only with CACHE_URL set")
    return _count_script(caches["default"]._cache)


def test_the_count_survives_redis_not_knowing_its_script(
    client, settings, redis_limiter, qualification
):
    """As after a Redis restart. Not by SCRIPT FLUSH, which would empty the script cache
    of every database on the shared server: the script is called by a SHA that Redis
    has never seen, and must be loaded again."""
    settings.VERIFY_RATE = "2/h"
    query = {"number": qualification.number, "name": "张三"}
    assert client.get(API, query).status_code == 200
    redis_limiter.sha = "0" * 40
    assert client.get(API, query).status_code == 200
    assert redis_limiter.sha != "0" * 40
    assert client.get(API, query).status_code == 429


def test_the_count_survives_a_dropped_redis_connection(
    client, settings, redis_limiter, qualification
):
    from django.core.cache import caches

    settings.VERIFY_RATE = "2/h"
    query = {"number": qualification.number, "name": "张三"}
    assert client.get(API, query).status_code == 200
    # Only the limiter's own connection (the Redis server is shared), from another one.
    other = caches["default"]._cache.get_client(write=True)
    killed = other.client_kill_filter(_id=redis_limiter.registered_client.client_id())
    assert killed == 1
    assert client.get(API, query).status_code == 200
    assert client.get(API, query).status_code == 429
