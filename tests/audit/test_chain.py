import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from audit.models import AppendOnlyError, AuditEvent
from audit.services import Event, audit_record_many

pytestmark = pytest.mark.django_db


def record(n=1, actor=None, **kwargs):
    events = [
        Event(action="test.action", object_type="tests.thing", object_id=str(i), **kwargs)
        for i in range(n)
    ]
    return audit_record_many(actor=actor, events=events)


def test_events_are_chained_by_hash():
    first, second = record(2)
    assert first.prev_hash == AuditEvent.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert [first.seq, second.seq] == [1, 2]
    assert second.hash == second.compute_hash()


def test_audit_verify_passes_on_an_intact_chain(capsys):
    record(3, changes={"name": {"before": "张三", "after": "李四"}})
    call_command("audit_verify")
    assert capsys.readouterr().out.strip() == "audit chain intact: 3 events"


def test_model_refuses_update_and_delete():
    (event,) = record()
    event.reason = "changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(reason="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


def _raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def tamper(sql, params=()):
    """Alter rows as an attacker with database access would: on PostgreSQL by
    disabling the trigger first (after firing the pending deferred FK checks)."""
    if connection.vendor != "postgresql":
        _raw(sql, params)
        return
    _raw("SET CONSTRAINTS ALL IMMEDIATE")
    _raw("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update_delete")
    _raw(sql, params)
    _raw("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_update_delete")


def test_audit_verify_names_a_row_altered_behind_the_application():
    events = record(3)
    tamper("UPDATE audit_auditevent SET reason = %s WHERE id = %s", ["tampered", events[1].pk])
    with pytest.raises(
        CommandError, match=rf"broken at event #2 \(id {events[1].pk}\): its content"
    ):
        call_command("audit_verify")


def test_audit_verify_finds_a_removed_event():
    events = record(3)
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError, match="broken at event #2: event #2 is missing"):
        call_command("audit_verify")


def test_audit_verify_finds_events_removed_from_the_end():
    events = record(3)
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    with pytest.raises(CommandError, match="chain head names #3 but the chain ends at #2"):
        call_command("audit_verify")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET reason = 'x'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent CASCADE",
    ],
)
def test_postgresql_trigger_refuses_changes(on_postgresql, sql):
    from django.db.utils import DatabaseError

    record()
    with transaction.atomic():
        # The suite's database has the TRUNCATE trigger off (conftest); as deployed it is on.
        _raw("SET CONSTRAINTS ALL IMMEDIATE")
        _raw("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_truncate")
        with (
            pytest.raises(DatabaseError, match="audit events are append-only"),
            transaction.atomic(),
        ):
            _raw(sql)
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_writers_do_not_fork_the_chain(on_postgresql_transactional):
    user = get_user_model().objects.create(username="writer")
    errors = []

    def write():
        try:
            for _ in range(10):
                with transaction.atomic():
                    record(2, actor=user)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AuditEvent.objects.count() == 80
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, 81))
    call_command("audit_verify")


@pytest.fixture
def on_postgresql_transactional(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL; .ci/run does)")


@pytest.mark.parametrize(
    ("remote_addr", "stored"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:10.1.2.3", "::ffff:10.1.2.3"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ],
)
def test_client_ip_is_recorded_as_stored_and_the_chain_verifies(rf, remote_addr, stored):
    from audit.context import AuditContextMiddleware

    request = rf.get("/", REMOTE_ADDR=remote_addr)
    AuditContextMiddleware(lambda request: record())(request)
    event = AuditEvent.objects.get()
    assert event.client_ip == stored
    call_command("audit_verify")


def test_forwarded_address_is_used_only_behind_trusted_proxies(rf, settings):
    from audit.context import client_ip_from_request

    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.2")
    assert client_ip_from_request(request) == "127.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip_from_request(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip_from_request(request) == "203.0.113.9"
