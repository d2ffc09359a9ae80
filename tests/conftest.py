import pytest
from django.db.backends.signals import connection_created

from config.celery import app as celery_app


def _allow_audit_purge(sender, connection, **kwargs):
    # pytest-django flushes with TRUNCATE between transactional tests; the audit
    # trigger allows that only where the session opts in (audit migration 0002).
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET audit.allow_purge = 'on'")


connection_created.connect(_allow_audit_purge, weak=False)


def pytest_configure(config):
    from django.conf import settings

    # Hashing passwords properly costs ~200 ms per user; tests need no protection.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _eager_celery(request):
    """Unit tests run tasks in-process; tests/integration runs a real worker."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def on_postgresql(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL; .ci/run does)")


@pytest.fixture(scope="session")
def browser_type_launch_args():
    """Playwright drives Debian's chromium (never `playwright install`; RECIPES.md)."""
    return {
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }
