from datetime import date

import filetype
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from stdnum.cn import ric
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength

# GB/T 2260 province-level codes (the first two digits of an ID number), including
# 71 台湾, 81 香港, 82 澳门 as issued on residence permits in the same format.
PROVINCE_CODES = {
    "11",
    "12",
    "13",
    "14",
    "15",
    "21",
    "22",
    "23",
    "31",
    "32",
    "33",
    "34",
    "35",
    "36",
    "37",
    "41",
    "42",
    "43",
    "44",
    "45",
    "46",
    "50",
    "51",
    "52",
    "53",
    "54",
    "61",
    "62",
    "63",
    "64",
    "65",
    "71",
    "81",
    "82",
}
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


def parse_id_number(value: str) -> tuple[str, date, str]:
    """Validate a resident ID number (python-stdnum `cn.ric`) and return
    (normalised number, birth date, sex "M"/"F").

    Raises ValidationError with a Chinese message naming what is wrong.
    """
    number = ric.compact((value or "").strip().upper())
    try:
        number = ric.validate(number)
    except InvalidLength:
        raise ValidationError("身份证号码应为18位") from None
    except InvalidChecksum:
        raise ValidationError("身份证号码校验位错误") from None
    except InvalidFormat:
        raise ValidationError("身份证号码格式错误（前17位须为数字，末位为数字或X）") from None
    except InvalidComponent:
        # validate() has checked length, format and checksum by now; what failed is the
        # birth date or the county code. stdnum also requires the county code to have
        # existed in the birth year, which refuses real cards: codes were assigned at
        # first registration (1984 onwards), not at birth, and retired codes stay on
        # valid cards (python-stdnum issue #442). So only the province is checked here.
        try:
            ric.get_birth_date(number)
        except InvalidComponent:
            raise ValidationError("身份证号码中的出生日期无效") from None
        if number[:2] not in PROVINCE_CODES:
            raise ValidationError("身份证号码中的地区码无效") from None
    birth = ric.get_birth_date(number)
    if birth > timezone.localdate():
        raise ValidationError(f"身份证号码中的出生日期 {birth} 晚于今天")
    sex = "M" if int(number[16]) % 2 == 1 else "F"
    return number, birth, sex
