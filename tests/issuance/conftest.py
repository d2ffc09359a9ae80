"""Issuers and their officers shared by the issuance tests (tests/issuance/factories.py
builds them)."""

import pytest

from .factories import department, institution, officer


@pytest.fixture
def mem():
    return department()


@pytest.fixture
def inst():
    return institution()


@pytest.fixture
def mem_officer(mem):
    return officer(mem, "mem-officer")


@pytest.fixture
def inst_officer(inst):
    return officer(inst, "inst-officer")
