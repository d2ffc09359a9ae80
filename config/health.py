"""GET /healthz: the probe of docker-compose, systemd watchers and load balancers.

200 "ok" once the database answers `SELECT 1` and, when a Celery broker is configured,
the broker answers a ping: a web process that cannot reach either would accept requests
it cannot complete (writes fail, background work is never dispatched). 503 naming the
failing dependency otherwise; the exception text stays in the log, not in the answer
(the endpoint is public).
"""

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 2  # seconds: a probe must answer before the orchestrator's own timeout


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker(url: str) -> None:
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        client = redis.Redis.from_url(
            url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT
        )
        try:
            client.ping()
        finally:
            client.close()
        return
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT)


def _failure(name: str) -> HttpResponse:
    logger.exception("healthz: %s unavailable", name)
    return HttpResponse(f"{name} unavailable", status=503, content_type="text/plain")


@never_cache
@require_safe
def healthz(request):
    try:
        _database()
    except Exception:
        return _failure("database")
    if settings.CELERY_BROKER_URL:
        try:
            _broker(settings.CELERY_BROKER_URL)
        except Exception:
            return _failure("broker")
    return HttpResponse("ok", content_type="text/plain")
