import pytest

from config.celery import app as celery_app


def pytest_configure(config):
    from django.conf import settings

    # Hashing passwords properly costs ~200 ms per user; tests need no protection.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django flushes with TRUNCATE between transactional tests, which the audit
    trigger refuses; on this throwaway database only, the TRUNCATE trigger is off
    (tests/audit turns it back on inside a transaction to check it)."""
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_truncate"
                )


@pytest.fixture(scope="session")
def _files_root(tmp_path_factory):
    return tmp_path_factory.mktemp("files")


@pytest.fixture(autouse=True)
def _files_outside_the_checkout(settings, _files_root):
    """Uploads, PDFs, signing keys and exchange files go to a throwaway folder, never to
    the developer's var/ (one folder per run: keys made once are reused by later tests)."""
    settings.MEDIA_ROOT = _files_root / "media"
    settings.SIGNING_KEYS_DIR = _files_root / "keys"
    settings.EXCHANGE_DIR = _files_root / "exchange"


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
