"""Statutory retirement age, for the age limit at submit ("18 to retirement age").

Reading: 《全国人民代表大会常务委员会关于实施渐进式延迟法定退休年龄的决定》(2024-09-13),
in force from 2025-01-01. Men: 60, raised by one month for every four months of birth
from January 1965, to at most 63. Women whose original age is 55: raised by one month
for every four months of birth from January 1970, to at most 58. Women whose original
age is 50 (most production-line workers, the usual case for electricians and welders):
raised by one month for every two months of birth from January 1975, to at most 55.
Which female base applies is a plan setting, defaulting to 50.
"""

from datetime import date

from dateutil.relativedelta import relativedelta

# sex -> (original age, first birth month affected, months of birth per month of delay, max delay)
SCHEDULES = {
    ("M", 60): (60, date(1965, 1, 1), 4, 36),
    ("F", 55): (55, date(1970, 1, 1), 4, 36),
    ("F", 50): (50, date(1975, 1, 1), 2, 60),
}


def retirement_date(birth_date: date, sex: str, female_base: int = 50) -> date:
    """The day a person reaches statutory retirement age."""
    base, start, step, cap = SCHEDULES[("M", 60) if sex == "M" else ("F", female_base)]
    months_after = (birth_date.year - start.year) * 12 + birth_date.month - start.month
    delay = 0 if months_after < 0 else min(cap, months_after // step + 1)
    return birth_date + relativedelta(years=base, months=delay)


def age_on(birth_date: date, on: date) -> int:
    return relativedelta(on, birth_date).years
