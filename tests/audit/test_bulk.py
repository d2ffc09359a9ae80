"""audit_record_bulk with changes given as pre-encoded CanonicalJSON text."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction

from audit.models import AuditEvent
from audit.services import CanonicalJSON, Event, audit_record_bulk, audit_record_many, json_text

pytestmark = pytest.mark.django_db


def canonical(value) -> str:
    # AuditEvent.canonical's encoding.
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    ["张三", 'quote " and \\ back', "tab\tnew\nline\x01", "", 0, -12, 10**20, None, True, 0.25],
)
def test_json_text_encodes_a_value_as_the_canonical_json_does(value):
    assert json_text(value) == canonical(value)


def test_json_text_encodes_dates_and_decimals_as_the_audit_stores_them():
    assert json_text(date(2024, 3, 15)) == '"2024-03-15"'
    assert json_text(datetime(2024, 3, 15, 8, 30, tzinfo=UTC)) == '"2024-03-15T08:30:00+00:00"'
    assert json_text(Decimal("88.5")) == '"88.5"'


def test_canonical_changes_are_stored_and_hashed_as_the_same_dict_would_be():
    changes = {
        "name": {"before": None, "after": "欧阳娜娜"},
        "birth_date": {"before": None, "after": "1990-05-17"},
        "years": {"before": None, "after": 2},
    }
    audit_record_many(actor=None, events=[Event("test.dict", "tests.thing", "1", changes=changes)])
    text = CanonicalJSON(canonical(changes))

    count = audit_record_bulk(
        actor=None,
        events=[Event("test.text", "tests.thing", str(n), changes=text) for n in (2, 3)],
    )

    assert count == 2
    rows = list(AuditEvent.objects.order_by("seq"))
    assert [row.changes for row in rows] == [changes, changes, changes]
    assert all(row.hash == row.compute_hash() for row in rows)
    call_command("audit_verify")


def test_changes_text_that_is_not_canonical_is_refused_and_nothing_written():
    unsorted = CanonicalJSON('{"name":{"before":null,"after":"张三"}}')

    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record_bulk(
            actor=None, events=[Event("test.text", "tests.thing", "1", changes=unsorted)]
        )

    assert AuditEvent.objects.count() == 0
