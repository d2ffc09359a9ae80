import os

import pytest

# Playwright's sync API runs an event loop in the test thread; Django would otherwise
# refuse database access from it (RECIPES.md). Set here so a bare `pytest` works too.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # The UI's default language is Chinese; send a Chinese Accept-Language like a
    # coordinator's browser would (chromium otherwise asks for en-US).
    return {**browser_context_args, "locale": "zh-CN"}


@pytest.fixture(scope="session")
def _django_connections(django_db_setup):
    from django.db import connections

    return {alias: connections[alias] for alias in connections}


@pytest.fixture(scope="session", autouse=True)
def _keep_django_connections(_django_connections, playwright):
    """Starting Playwright's sync API leaves the test code in a fresh contextvars
    context, where Django's (context-local) `connections` would hand out new wrappers
    without the test database's serialized contents, so `serialized_rollback` would
    silently restore nothing. Put the suite's wrappers back."""
    from django.db import connections

    for alias, connection in _django_connections.items():
        connections[alias] = connection
