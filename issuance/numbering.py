"""Certificate numbers in DESIGN.md's formats, with gap-free serials.

- MEM types: "T" + the holder's 18-character ID number (no serial).
- MOHURD types: province abbreviation + city letter + 2-digit category + 4-digit year +
  6-digit serial, 14 characters (晋A012026000001). The category is `01` for 建筑电工 and
  set per province for other types (NumberSeries.category).
- SAMR: the issuer's configured series: prefix + 4-digit year + serial of its width.
- Skill level: Y/S + 4-digit institution code + 2-digit province code + 6-digit site
  sequence + 2-digit year + level digit + 6-digit serial, 22 characters. The serial runs
  per institution, year and level (our reading: the number names all three, so a serial
  per combination keeps each readable block self-contained).

Serials come from a SerialCounter row locked with SELECT ... FOR UPDATE inside the
issuing transaction: a rolled-back issue gives its serial back, concurrent issuers queue
on the row, so serials are unique and gap-free. Every number is checked against its
type's catalog pattern before it is used. A batch of issues takes its serials through
one `Numbering` (each counter row locked and written once per batch, not per number).
"""

import re
from datetime import date

from django.core.exceptions import ValidationError

from catalog.models import SkillCertificateRule

from .models import Certificate, Issuer, NumberSeries, SerialCounter

# GB/T 2260 province code -> the one-character abbreviation used in MOHURD numbers.
PROVINCE_ABBREVIATIONS = {
    "11": "京", "12": "津", "13": "冀", "14": "晋", "15": "蒙", "21": "辽", "22": "吉",
    "23": "黑", "31": "沪", "32": "苏", "33": "浙", "34": "皖", "35": "闽", "36": "赣",
    "37": "鲁", "41": "豫", "42": "鄂", "43": "湘", "44": "粤", "45": "桂", "46": "琼",
    "50": "渝", "51": "川", "52": "贵", "53": "云", "54": "藏", "61": "陕", "62": "甘",
    "63": "青", "64": "宁", "65": "新",
}  # fmt: skip

SKILL = "SKILL"


def next_serial(issuer: Issuer, type_code: str, period: str) -> int:
    """The next serial of (issuer, type, period), taken under a row lock. Must run inside
    the transaction that uses it (atomic). The counter row is created first with
    INSERT ... ON CONFLICT DO NOTHING so two first issuers do not both insert."""
    SerialCounter.objects.bulk_create(
        [SerialCounter(issuer=issuer, type_code=type_code, period=period, last=0)],
        ignore_conflicts=True,
    )
    counter = SerialCounter.objects.select_for_update().get(
        issuer=issuer, type_code=type_code, period=period
    )
    counter.last += 1
    SerialCounter.objects.filter(pk=counter.pk).update(last=counter.last)
    return counter.last


class Numbering:
    """The numbering state of one issuing transaction, for a batch of issues:
    `with Numbering() as numbering:` then `certificate_number(..., numbering=numbering)`
    for each certificate in serial order. Each counter row is created if missing and
    locked (SELECT ... FOR UPDATE) on its first use, exactly as `next_serial` does, and
    its new last serial written back once when the block exits normally (on an
    exception the transaction is rolled back anyway); the series and the skill rule are
    read once. Serials stay gap-free and unique: the lock is held to the commit."""

    def __init__(self) -> None:
        self._counters: dict[tuple[int, str, str], list[int]] = {}  # key -> [pk, last, first]
        self._series: dict[tuple[int, str], NumberSeries | None] = {}
        self._rules: dict[date, SkillCertificateRule | None] = {}

    def __enter__(self) -> "Numbering":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.save()

    def next_serial(self, issuer: Issuer, type_code: str, period: str) -> int:
        key = (issuer.pk, type_code, period)
        counter = self._counters.get(key)
        if counter is None:
            SerialCounter.objects.bulk_create(
                [SerialCounter(issuer=issuer, type_code=type_code, period=period, last=0)],
                ignore_conflicts=True,
            )
            row = SerialCounter.objects.select_for_update().get(
                issuer=issuer, type_code=type_code, period=period
            )
            counter = self._counters[key] = [row.pk, row.last, row.last]
        counter[1] += 1
        return counter[1]

    def series(self, issuer: Issuer, type_code: str) -> NumberSeries | None:
        key = (issuer.pk, type_code)
        if key not in self._series:
            self._series[key] = NumberSeries.objects.filter(
                issuer=issuer, type_code=type_code
            ).first()
        return self._series[key]

    def skill_rule(self, on: date) -> SkillCertificateRule | None:
        if on not in self._rules:
            self._rules[on] = SkillCertificateRule.objects.effective_on(on).first()
        return self._rules[on]

    def save(self) -> None:
        """Write each counter's last serial taken (one UPDATE per counter used)."""
        for pk, last, first in self._counters.values():
            if last != first:
                SerialCounter.objects.filter(pk=pk).update(last=last)
        for counter in self._counters.values():
            counter[2] = counter[1]


def _series(issuer: Issuer, type_code: str, numbering: Numbering | None = None) -> NumberSeries:
    series = (
        numbering.series(issuer, type_code)
        if numbering is not None
        else NumberSeries.objects.filter(issuer=issuer, type_code=type_code).first()
    )
    if series is None:
        raise ValidationError(
            {"issuer": [f"{issuer.name}未配置「{type_code}」证书的编号规则，请管理员先配置"]}
        )
    return series


def _serial(value: int, width: int, what: str) -> str:
    if value >= 10**width:
        raise ValidationError({"number": [f"{what}流水号已用尽（{width}位）"]})
    return f"{value:0{width}d}"


def certificate_number(
    certificate: Certificate, on: date, numbering: Numbering | None = None
) -> str:
    """The number `certificate` gets when issued on `on` (takes a serial: call only
    inside the issuing transaction; through `numbering` for a batch)."""
    issuer = certificate.issuer
    take = numbering.next_serial if numbering is not None else next_serial
    if certificate.kind == "skill":
        rule = (
            numbering.skill_rule(on)
            if numbering is not None
            else SkillCertificateRule.objects.effective_on(on).first()
        )
        level = certificate.level
        serial = take(issuer, SKILL, f"{on:%Y}-{level}")
        number = (
            f"{issuer.institution_type}{issuer.institution_code}{issuer.province}"
            f"{issuer.site_sequence or '000000'}{on:%y}{level}{_serial(serial, 6, '技能等级证书')}"
        )
        pattern = rule.number_pattern if rule else r"[YS]\d{21}"
    else:
        qtype = certificate.qualification_type
        department = qtype.department.code
        if qtype.number_is_holder_id:
            number = "T" + certificate.holder_id_number.upper()
        elif department == "mohurd":
            series = _series(issuer, qtype.code, numbering)
            if not issuer.city_letter:
                raise ValidationError({"issuer": [f"{issuer.name}未设置城市代码字母"]})
            # 建筑电工 is category 01 everywhere; other types' categories are set per province.
            category = series.category or ("01" if qtype.code == "MOHURD-ELEC" else "")
            if not category:
                raise ValidationError({"issuer": [f"{issuer.name}未配置「{qtype.code}」的类别码"]})
            serial = take(issuer, qtype.code, f"{on:%Y}")
            number = (
                f"{PROVINCE_ABBREVIATIONS[issuer.province]}{issuer.city_letter}"
                f"{category}{on:%Y}{_serial(serial, 6, qtype.name)}"
            )
        else:
            series = _series(issuer, qtype.code, numbering)
            serial = take(issuer, qtype.code, f"{on:%Y}")
            number = f"{series.prefix}{on:%Y}{_serial(serial, series.width, qtype.name)}"
        pattern = qtype.number_pattern
    if re.fullmatch(pattern, number) is None:
        raise ValidationError({"number": [f"生成的证书编号 {number} 不符合该类证书的编号格式"]})
    return number
