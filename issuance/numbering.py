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
type's catalog pattern before it is used.
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


def _series(issuer: Issuer, type_code: str) -> NumberSeries:
    series = NumberSeries.objects.filter(issuer=issuer, type_code=type_code).first()
    if series is None:
        raise ValidationError(
            {"issuer": [f"{issuer.name}未配置「{type_code}」证书的编号规则，请管理员先配置"]}
        )
    return series


def _serial(value: int, width: int, what: str) -> str:
    if value >= 10**width:
        raise ValidationError({"number": [f"{what}流水号已用尽（{width}位）"]})
    return f"{value:0{width}d}"


def certificate_number(certificate: Certificate, on: date) -> str:
    """The number `certificate` gets when issued on `on` (takes a serial: call only
    inside the issuing transaction)."""
    issuer = certificate.issuer
    if certificate.kind == "skill":
        rule = SkillCertificateRule.objects.effective_on(on).first()
        level = certificate.level
        serial = next_serial(issuer, SKILL, f"{on:%Y}-{level}")
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
            series = _series(issuer, qtype.code)
            if not issuer.city_letter:
                raise ValidationError({"issuer": [f"{issuer.name}未设置城市代码字母"]})
            # 建筑电工 is category 01 everywhere; other types' categories are set per province.
            category = series.category or ("01" if qtype.code == "MOHURD-ELEC" else "")
            if not category:
                raise ValidationError({"issuer": [f"{issuer.name}未配置「{qtype.code}」的类别码"]})
            serial = next_serial(issuer, qtype.code, f"{on:%Y}")
            number = (
                f"{PROVINCE_ABBREVIATIONS[issuer.province]}{issuer.city_letter}"
                f"{category}{on:%Y}{_serial(serial, 6, qtype.name)}"
            )
        else:
            series = _series(issuer, qtype.code)
            serial = next_serial(issuer, qtype.code, f"{on:%Y}")
            number = f"{series.prefix}{on:%Y}{_serial(serial, series.width, qtype.name)}"
        pattern = qtype.number_pattern
    if re.fullmatch(pattern, number) is None:
        raise ValidationError({"number": [f"生成的证书编号 {number} 不符合该类证书的编号格式"]})
    return number
