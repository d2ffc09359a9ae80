from rest_framework.permissions import BasePermission

from cases.roles import Role, has_role


class HasRole(BasePermission):
    """Allow users holding any of `roles` (admin holds all). Object scope and the
    finer rules are the services' job; this keeps other roles out of the data."""

    roles: tuple[str, ...] = ()
    message = "您的角色无权访问此资源"

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, *self.roles)


class CaseReaders(HasRole):
    """Registration data is the coordinators' (the pages give others 403 as well);
    quality supervisors get their own, session-scoped reads with the exams stage."""

    roles = (Role.COORDINATOR,)
