"""The kinds of job, registered by the apps that own the work (in their AppConfig.ready).

A kind knows how to check a request before anything is queued (`prepare`: the same
field-level errors a synchronous form or API would give, raised in the request), how to
run the batch in a worker (`run`: one service call, all or nothing, reporting progress),
and how the job page shows its outcome.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

# progress(done, total), called by a service as it goes.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Prepared:
    """A request checked by a kind: the job's parameters (JSON) and its size."""

    params: dict[str, Any]
    total: int


@dataclass(frozen=True)
class JobKind:
    code: str
    label: str
    # (actor, data) -> Prepared; raises ValidationError / PermissionDenied.
    prepare: Callable[..., Prepared]
    # (job, progress) -> result (JSON); raises what the service raises.
    run: Callable[..., dict[str, Any]]
    # The job page's outcome, rendered with {"job": job, "result": job.result}.
    result_template: str = ""
    # (job) -> (url, label): where the user goes back to.
    back: Callable[..., tuple[str, str]] | None = None
    # (job) -> one line shown when the job succeeded.
    summary: Callable[..., str] | None = None
    # (job) -> figures that keep changing after the job (e.g. PDFs rendered).
    follow_up: Callable[..., dict[str, Any]] | None = None


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Register `kind` (idempotent for the same code: AppConfig.ready may run twice in
    tests that reload apps)."""
    _KINDS[kind.code] = kind
    return kind


def kind_get(code: str) -> JobKind:
    try:
        return _KINDS[code]
    except KeyError:
        known = "、".join(sorted(_KINDS)) or "—"
        raise ValidationError({"kind": [f"未知的任务类型「{code}」；可用：{known}"]}) from None


def kinds() -> dict[str, JobKind]:
    return dict(sorted(_KINDS.items()))
