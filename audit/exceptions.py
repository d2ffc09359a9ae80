"""Exceptions shared by every app's services (audit is the one app all may import)."""


class DomainError(Exception):
    """A rule of the domain refused the action. Rendered as HTTP 400."""

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, **extra):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra


class StateConflict(DomainError):
    """The object is not in a state that allows the action. Rendered as HTTP 409."""

    code = "state_conflict"
