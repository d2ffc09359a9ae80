"""Celery tasks of the exams app: thin wrappers that take ids and call one service."""

from celery import shared_task

from . import review


@shared_task(acks_late=True, reject_on_worker_lost=True)
def quality_warnings_send(session_id: int) -> int:
    """Send the session's new early warnings to the supervisors (generated -> sent).
    Idempotent: only warnings still `generated` are claimed; see review.warnings_send."""
    return review.warnings_send(session_id=session_id)


@shared_task
def quality_warnings_send_sweep() -> list[int]:
    """Re-dispatch sending for sessions whose warnings are still `generated` (an
    on_commit dispatch dies with its process). Returns the session ids dispatched."""
    session_ids = review.warnings_pending_sessions()
    for session_id in session_ids:
        quality_warnings_send.delay(session_id)
    return session_ids
