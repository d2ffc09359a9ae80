from datetime import date

import filetype
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from stdnum.cn import ric
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength

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
    number = (value or "").strip().upper()
    try:
        number = ric.validate(number)
    except InvalidLength:
        raise ValidationError("身份证号码应为18位") from None
    except InvalidChecksum:
        raise ValidationError("身份证号码校验位错误") from None
    except InvalidComponent:
        raise ValidationError("身份证号码中的出生日期或地区码无效") from None
    except InvalidFormat:
        raise ValidationError("身份证号码格式错误（前17位须为数字，末位为数字或X）") from None
    birth = ric.get_birth_date(number)
    if birth > timezone.localdate():
        raise ValidationError(f"身份证号码中的出生日期 {birth} 晚于今天")
    sex = "M" if int(number[16]) % 2 == 1 else "F"
    return number, birth, sex
