import os

import pytest
from django.db import connection

from config.celery import app as celery_app


def _unavailable(reason: str):
    # CI provides PostgreSQL and Redis; there a missing service is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"integration tests need {reason} (CI must provide it)")
    pytest.skip(f"needs {reason}: set DATABASE_URL and CELERY_BROKER_URL (.ci/run does)")


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker consuming from the configured Redis broker, in a thread
    of this process (so it uses the test database), with eager mode off."""
    from celery.contrib.testing.worker import start_worker

    if connection.vendor != "postgresql":
        _unavailable("PostgreSQL")
    if not os.environ.get("CELERY_BROKER_URL"):
        _unavailable("Redis")
    celery_app.conf.task_always_eager = False
    celery_app.control.purge()  # leftovers of an interrupted run name rows that are gone
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker
