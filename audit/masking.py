"""The one masking rule for personal data shown outside authorised views (DESIGN.md).

ID number: the first 3 and last 4 characters, the rest as `*` (110***********002X).
Name: the first character, the rest as `*` (张*, 欧阳**).
"""

import re

# A resident ID number anywhere in a text (also inside MEM certificate numbers, T + ID).
ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")


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


def mask_ids_in(value):
    """`value` (text, or JSON-like lists and dicts) with every ID number in it masked."""
    if isinstance(value, str):
        return ID_NUMBER.sub(lambda match: mask_id_number(match.group(0)), value)
    if isinstance(value, dict):
        return {key: mask_ids_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_ids_in(item) for item in value]
    return value
