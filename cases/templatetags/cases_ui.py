"""Presentation helpers for the registration pages: role checks for hiding buttons,
translated labels of model choices, and masking of ID numbers in displayed text."""

import json

from django import template
from django.utils.translation import pgettext_lazy

from audit.masking import mask_ids_in
from cases.forms import (
    EDUCATION_LABELS,
    ROLE_LABELS,
    SEX_LABELS,
    STATUS_LABELS,
    TRANSITIONS,
    VERIFICATION_LABELS,
)
from cases.roles import has_role as _has_role
from cases.roles import user_roles

register = template.Library()

ACTION_LABELS = {
    "candidate.create": pgettext_lazy("audit action", "登记考生"),
    "candidate.update": pgettext_lazy("audit action", "修改考生信息"),
    "candidate.reveal_id_number": pgettext_lazy("audit action", "查看完整身份证号码"),
    "held_certificate.create": pgettext_lazy("audit action", "登记已持证书"),
    "held_certificate.verify": pgettext_lazy("audit action", "核验已持证书"),
    "case.create": pgettext_lazy("audit action", "创建报名"),
    "case.submit": pgettext_lazy("audit action", "提交审核"),
    "case.approve": pgettext_lazy("audit action", "审核通过"),
    "case.return_for_correction": pgettext_lazy("audit action", "退回修改"),
    "case.reject": pgettext_lazy("audit action", "不予受理"),
    "case.withdraw": pgettext_lazy("audit action", "撤回报名"),
}


@register.filter
def has_role(user, role: str) -> bool:
    return _has_role(user, role)


@register.simple_tag
def role_labels(user) -> list[str]:
    return [str(ROLE_LABELS.get(role, role)) for role in sorted(user_roles(user))]


@register.filter
def status_label(value: str) -> str:
    return STATUS_LABELS.get(value, value)


@register.filter
def education_label(value: str) -> str:
    return EDUCATION_LABELS.get(value, value)


@register.filter
def sex_label(value: str) -> str:
    return SEX_LABELS.get(value, value)


@register.filter
def verification_label(value: str) -> str:
    return VERIFICATION_LABELS.get(value, value)


@register.filter
def transition_label(name: str) -> str:
    return TRANSITIONS.get(name, (name, False))[0]


@register.filter
def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


@register.filter
def mask_ids(value) -> str:
    """`value` as display text with every ID number in it masked (DESIGN.md rule)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    return mask_ids_in(value)


@register.filter
def held_number(held) -> str:
    """A held certificate's number, masked where it embeds the holder's ID number."""
    return mask_ids(held.number)


@register.filter
def get_item(mapping, key):
    """`mapping[key]`, or the key itself when absent (for code -> name lookups)."""
    try:
        return mapping.get(key, key)
    except AttributeError:
        return key
