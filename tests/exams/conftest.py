"""Fixtures shared by the exam-stage tests: a coordinator and a plan built by the plan
services (a test file may define its own, e.g. a plan with a particular name)."""

import pytest

from .factories import PlanFactory, coordinator


@pytest.fixture
def coord():
    return coordinator()


@pytest.fixture
def plan():
    return PlanFactory()
