import functools
from datetime import date

import filetype
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import InvalidComponent
from stdnum.util import isdigits

# Residence permits of Hong Kong, Macao and Taiwan residents (港澳台居民居住证申领发放办法,
# 2018, art. 5) carry an ID number in the resident format with these region codes.
RESIDENCE_PERMIT_CODES = frozenset({"810000", "820000", "830000"})
PHOTO_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}


def validate_photo(file) -> None:
    """JPEG or PNG by content (not by name), at most PHOTO_MAX_BYTES."""
    if not file:
        return
    limit = settings.PHOTO_MAX_BYTES
    if file.size > limit:
        raise ValidationError(f"照片不能超过 {limit // 1024} KB（当前 {file.size // 1024} KB）")
    position = file.tell() if hasattr(file, "tell") else 0
    file.seek(0)
    head = file.read(261)
    file.seek(position)
    kind = filetype.guess(head)
    if kind is None or kind.mime not in PHOTO_TYPES:
        raise ValidationError("照片须为 JPEG 或 PNG 图片")


def region_codes() -> frozenset[str]:
    """The region codes (first six digits) an ID number may carry: every county code
    python-stdnum's GB/T 2260 table (`cn/loc`) lists, whenever it was in use, and
    RESIDENCE_PERMIT_CODES. Read once per process."""
    return _region_codes()


@functools.cache
def _region_codes() -> frozenset[str]:
    # NumDB.prefixes has the layout numdb.py documents: (length, low, high, properties,
    # children) per province, its children the four-digit county ranges.
    codes = set(RESIDENCE_PERMIT_CODES)
    for _, low, high, _, counties in numdb.get("cn/loc").prefixes:
        for province in range(int(low), int(high) + 1):
            for _, first, last, properties, _ in counties:
                if "county" in properties:
                    codes.update(
                        f"{province:02d}{county:04d}" for county in range(int(first), int(last) + 1)
                    )
    return frozenset(codes)


def parse_id_number(value: str) -> tuple[str, date, str]:
    """Validate a resident ID number (python-stdnum `cn.ric`) and return
    (normalised number, birth date, sex "M"/"F").

    Raises ValidationError with a Chinese message naming what is wrong, and nothing
    else whatever the input.
    """
    # ric.validate's checks in its order, except the region: stdnum's get_birth_place
    # (python-stdnum 2.2) is not used, for two reasons.
    # - It requires the county code to have existed in the birth year, which refuses
    #   real cards: codes were assigned at first registration (1984 onwards), not at
    #   birth, and retired codes stay on valid cards (python-stdnum issue #442). Here a
    #   code stdnum lists at any time is accepted.
    # - It raises KeyError('county') for a code under a province it lists but a county
    #   it does not (810105, 710101, 820101, 119999): it reads info["county"] when only
    #   the province matched. Those codes exist on no card; they are refused here.
    # The special provinces in its table: 71, 81 and 82 list one code each, 710000 台湾省
    # (any year), 810000 (from 1997) and 820000 (from 1999), so validate() refuses a
    # Hong Kong or Macao permit holder born earlier; 83 is not listed at all, so it
    # refuses every Taiwan resident's permit (830000). GB/T 2260 has no county codes
    # under 71, 81 or 82. Accepted here: the table's codes in any year, plus the three
    # residence-permit codes; every other code (810105, 710101, 830101...) is refused.
    number = ric.compact((value or "").strip().upper())
    if len(number) != 18:
        raise ValidationError("身份证号码应为18位")
    if not isdigits(number[:-1]):
        raise ValidationError("身份证号码格式错误（前17位须为数字，末位为数字或X）")
    if number[-1] != ric.calc_check_digit(number):
        raise ValidationError("身份证号码校验位错误")
    try:
        birth = ric.get_birth_date(number)
    except InvalidComponent:
        raise ValidationError("身份证号码中的出生日期无效") from None
    if number[:6] not in region_codes():
        raise ValidationError("身份证号码中的地区码无效")
    if birth > timezone.localdate():
        raise ValidationError(f"身份证号码中的出生日期 {birth} 晚于今天")
    sex = "M" if int(number[16]) % 2 == 1 else "F"
    return number, birth, sex
