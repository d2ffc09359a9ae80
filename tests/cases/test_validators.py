"""cases.validators.parse_id_number: which region codes an ID number may carry, and that
it refuses anything else with a ValidationError (never a crash, which was a 500)."""

from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from stdnum.cn import ric

from audit.models import AuditEvent
from cases.models import Candidate
from cases.validators import parse_id_number, region_codes

from .factories import coordinator

REGION_REFUSED = "身份证号码中的地区码无效"


def id_number(region: str, born: date = date(1990, 5, 17), order: str = "013") -> str:
    """An ID number of `region` with the right check digit (so only the region is wrong)."""
    first17 = f"{region}{born:%Y%m%d}{order}"
    return first17 + ric.calc_check_digit(first17 + "0")  # stdnum ignores the last digit


def refusal(value) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_id_number(value)
    return info.value.messages


def test_hong_kong_county_style_code_with_a_right_check_digit_is_refused():
    # python-stdnum 2.2 raises KeyError('county') on 810105: it lists 81 without counties.
    number = id_number("810105")
    # GB 11643 by hand: weighted sum of the first 17 digits 255, 255 mod 11 = 2 -> X.
    assert number == "81010519900517013X"

    assert refusal(number) == [REGION_REFUSED]


@pytest.mark.parametrize("born", [date(1975, 3, 10), date(2001, 12, 31)])
def test_hong_kong_county_style_code_is_refused_whatever_the_birth_year(born):
    assert refusal(id_number("810105", born)) == [REGION_REFUSED]


@pytest.mark.parametrize(
    "region",
    [
        "710101",  # under 台湾省: stdnum lists only 710000
        "820101",  # under 澳门: stdnum lists only 820000
        "830101",  # 83 is a residence-permit code only, with no counties
        "119999",  # a county stdnum does not list under a province it does (KeyError too)
        "990202",  # no such province
    ],
)
def test_unknown_region_codes_are_refused_like_any_other(region):
    assert refusal(id_number(region)) == [REGION_REFUSED]


@pytest.mark.parametrize(
    ("region", "born"),
    [
        ("810000", date(1990, 5, 17)),  # Hong Kong; stdnum lists 810000 from 1997 only
        ("820000", date(1990, 5, 17)),  # Macao; stdnum lists 820000 from 1999 only
        ("830000", date(1990, 5, 17)),  # Taiwan; stdnum does not list 83 at all
        ("710000", date(1990, 5, 17)),  # GB/T 2260's 台湾省, in stdnum for every year
    ],
)
def test_residence_permit_region_codes_are_accepted(region, born):
    number = id_number(region, born)

    assert parse_id_number(number) == (number, born, "M")


def test_a_county_code_newer_than_the_birth_year_is_accepted():
    # 140202 (大同城区) dates from 1983 in GB/T 2260; people born earlier carry it too.
    number = id_number("140202", date(1975, 3, 10), order="014")

    assert parse_id_number(number) == (number, date(1975, 3, 10), "F")


def test_a_retired_county_code_is_accepted():
    # 110103 崇文区 was merged into 东城区 in 2010; cards issued before keep it.
    number = id_number("110103", date(2012, 1, 1))

    assert parse_id_number(number) == (number, date(2012, 1, 1), "M")


def test_region_codes_are_the_stdnum_table_plus_the_residence_permit_codes():
    codes = region_codes()

    assert {"110105", "110103", "710000", "810000", "820000", "830000"} <= codes
    assert codes.isdisjoint({"810105", "710101", "820101", "830101", "119999", "990202"})
    assert {code[:2] for code in codes} == {
        *("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35"),
        *("36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54"),
        *("61", "62", "63", "64", "65", "71", "81", "82", "83"),
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("11010519900517001", "身份证号码应为18位"),
        ("1101051990051700X1", "身份证号码格式错误（前17位须为数字，末位为数字或X）"),
        ("110105199005170012", "身份证号码校验位错误"),
        (None, "身份证号码应为18位"),
    ],
)
def test_other_broken_numbers_keep_their_messages(value, message):
    assert refusal(value) == [message]


def test_an_impossible_birth_date_with_a_right_check_digit_is_named():
    first17 = "110105" + "19900230" + "013"
    number = first17 + ric.calc_check_digit(first17 + "0")

    assert refusal(number) == ["身份证号码中的出生日期无效"]


# Never anything but a ValidationError ------------------------------------------------

_REGIONS = st.sampled_from(
    ["110105", "810105", "810000", "820101", "830000", "830101", "710000", "710101", "119999"]
) | st.text("0123456789", min_size=6, max_size=6)


@st.composite
def _checked_numbers(draw):
    """17 digits (a region worth trying, then any date and sequence digits) and their
    right check digit: numbers that get past the checksum to the date and region."""
    first17 = draw(_REGIONS) + draw(st.text("0123456789", min_size=11, max_size=11))
    return first17 + ric.calc_check_digit(first17 + "0")


KNOWN_REFUSALS = {
    "身份证号码格式错误（前17位须为数字，末位为数字或X）",
    "身份证号码校验位错误",
    "身份证号码中的出生日期无效",
    REGION_REFUSED,
}


def _outcome(value):
    """parse_id_number's result, or the messages of its ValidationError (any other
    exception escapes and fails the test)."""
    try:
        return parse_id_number(value)
    except ValidationError as exc:
        return exc.messages


@settings(max_examples=600, deadline=None)
@given(st.text("0123456789X", min_size=18, max_size=18) | _checked_numbers())
def test_parse_id_number_raises_only_validation_error_on_18_digits_or_x(value):
    outcome = _outcome(value)

    if isinstance(outcome, list):
        assert len(outcome) == 1
        assert outcome[0] in KNOWN_REFUSALS or outcome[0].endswith("晚于今天")
    else:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        assert outcome == (value, born, "M" if int(value[16]) % 2 else "F")


# Registration answers 400 / the form error, never 500 ---------------------------------


@pytest.mark.django_db
def test_api_candidate_create_refuses_a_hong_kong_county_style_code_on_the_field():
    client = APIClient()
    client.force_authenticate(coordinator())

    response = client.post(
        "/api/v1/candidates/",
        {
            "id_number": id_number("810105"),
            "name": "陈大文",
            "phone": "13812345678",
            "education": "senior",
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"id_number": [REGION_REFUSED]}
    assert Candidate.objects.count() == 0
    assert AuditEvent.objects.filter(action="candidate.create").count() == 0


@pytest.mark.django_db
def test_candidate_create_page_shows_the_region_error_on_the_field(client):
    client.force_login(coordinator())

    response = client.post(
        reverse("cases:candidate-create"),
        {
            "id_number": id_number("810105"),
            "name": "陈大文",
            "phone": "13812345678",
            "education": "senior",
            "sex": "",
            "birth_date": "",
        },
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {"id_number": [REGION_REFUSED]}
    assert Candidate.objects.count() == 0


@pytest.mark.django_db
def test_api_candidate_create_accepts_a_hong_kong_residence_permit_number():
    client = APIClient()
    client.force_authenticate(coordinator())
    number = id_number("810000", date(1990, 5, 17))

    response = client.post(
        "/api/v1/candidates/",
        {"id_number": number, "name": "陈大文", "phone": "13812345678", "education": "senior"},
        format="json",
    )

    assert response.status_code == 201
    assert Candidate.objects.get().id_number == number
