"""The one masking rule for personal data shown outside authorised views (DESIGN.md).

ID number: the first 3 and last 4 characters, the rest as `*` (110***********002X).
Name: the first character, the rest as `*` (张*, 欧阳**).
"""


def mask_id_number(value: str) -> str:
    if not value:
        return ""
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_name(value: str) -> str:
    if not value:
        return ""
    return value[0] + "*" * (len(value) - 1)
