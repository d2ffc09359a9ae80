"""Roles are Django groups created by migration (cases 0002). A superuser acts as admin."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    COORDINATOR = "coordinator", _("考务人员")
    GRADER = "grader", _("考评员")
    REVIEWER = "reviewer", _("质量督导员")
    ISSUER_OFFICER = "issuer_officer", _("发证机关人员")
    ADMIN = "admin", _("系统管理员")


def user_roles(user) -> set[str]:
    if not user or not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_role_cache", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached.add(Role.ADMIN)
        user._role_cache = cached
    return cached


def has_role(user, *roles: str) -> bool:
    """True when the user holds any of `roles`; admin holds every role."""
    held = user_roles(user)
    return Role.ADMIN in held or bool(held.intersection(roles))


def require_role(actor, *roles: str) -> None:
    """Raise PermissionDenied naming the roles needed unless `actor` holds one."""
    from django.core.exceptions import PermissionDenied

    if not has_role(actor, *roles):
        labels = "、".join(str(Role(r).label) for r in roles)
        raise PermissionDenied(f"需要以下角色之一：{labels}")
