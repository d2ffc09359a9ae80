"""Writing audit events. Every app records through `audit_record` in the same
transaction as the change it describes, so history cannot drift from state."""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from config.bulk import insert_rows

from .context import get_client_ip
from .models import AuditEvent, ChainHead


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    if hasattr(value, "name") and hasattr(value, "storage"):  # FieldFile
        return value.name or ""
    return value


def _normalise(data: dict) -> dict:
    # Round-trip through JSON so the hash is computed over exactly what the database
    # will hand back to audit_verify.
    return json.loads(json.dumps(data, default=_json_value, ensure_ascii=False))


def snapshot(instance: models.Model, fields: list[str]) -> dict[str, Any]:
    """The values of `fields` on `instance`, JSON-ready (FKs as their ids). Every
    concrete field value maps to a JSON scalar, so no JSON round trip is needed here."""
    meta = instance._meta
    return {name: _json_value(getattr(instance, meta.get_field(name).attname)) for name in fields}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"before": old, "after": new}} for the fields whose value changed."""
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }


@dataclass
class Event:
    action: str
    object_type: str
    object_id: str
    object_repr: str = ""
    from_state: str = ""
    to_state: str = ""
    reason: str = ""
    changes: dict = field(default_factory=dict)


def event_for(instance: models.Model, action: str, **kwargs) -> Event:
    return Event(
        action=action,
        object_type=instance._meta.label_lower,
        object_id=str(instance.pk),
        object_repr=str(instance)[:200],
        **kwargs,
    )


@transaction.atomic
def audit_record_many(*, actor, events: list[Event]) -> list[AuditEvent]:
    """Append `events` to the chain, in order, in the caller's transaction.

    Locks the chain head row until the caller's transaction commits, which is what
    keeps concurrent writers from forking the chain; callers keep their transactions
    short. Not idempotent: each call appends.
    """
    if not events:
        return []
    head, _ = ChainHead.objects.select_for_update().get_or_create(pk=1)
    now = timezone.now()
    ip = get_client_ip()
    actor_id = getattr(actor, "pk", None)
    username = getattr(actor, "username", "") or ""
    rows = []
    seq, prev = head.last_seq, head.last_hash
    for spec in events:
        seq += 1
        row = AuditEvent(
            seq=seq,
            created_at=now,
            actor_id=actor_id,
            actor_username=username,
            action=spec.action,
            object_type=spec.object_type,
            object_id=spec.object_id,
            object_repr=spec.object_repr,
            from_state=spec.from_state,
            to_state=spec.to_state,
            reason=spec.reason,
            changes=_normalise(spec.changes),
            client_ip=ip,
            prev_hash=prev,
        )
        row.hash = row.compute_hash()
        prev = row.hash
        rows.append(row)
    AuditEvent.objects.bulk_create(rows, batch_size=1000)
    ChainHead.objects.filter(pk=head.pk).update(last_seq=seq, last_hash=prev)
    return rows


def audit_record(*, actor, instance: models.Model, action: str, **kwargs) -> AuditEvent:
    """Append one event about `instance` (see `audit_record_many`)."""
    return audit_record_many(actor=actor, events=[event_for(instance, action, **kwargs)])[0]


# Bulk imports --------------------------------------------------------------------------

_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
_encode_str = json.encoder.encode_basestring  # what _encode does with a str, minus a call
_encode_changes = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_json_value
).encode
_LEAVES = frozenset({str, int, bool, float, type(None)})


def _field_json(value: Any) -> str:
    return _encode_str(value) if value.__class__ is str else _encode(value)


class CanonicalJSON(str):
    """An event's `changes` already encoded as audit_record_bulk stores and hashes them:
    the canonical text of a JSON-ready dict (sorted keys, no spaces, UTF-8 kept, each
    value as the json module encodes it). For the bulk imports, which build the text of
    tens of thousands of alike events from pre-encoded pieces instead of a dict each.
    audit_record_bulk stores it as it is; the first event of every call is still checked
    against AuditEvent.compute_hash on the decoded text."""

    __slots__ = ()


def json_text(value: Any) -> str:
    """One value as it appears in the canonical JSON audit_record_bulk stores (what
    `_normalise` and the canonical encoding make of it), for callers assembling
    CanonicalJSON from pieces."""
    cls = value.__class__
    if cls is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if cls is date or cls is datetime:
        return _encode_str(value.isoformat())
    if cls is int:
        return int.__repr__(value)
    return _encode_changes(value)


def _str_keys(changes: dict) -> bool:
    """Whether every dict inside `changes` has only str keys. Then encoding `changes`
    directly gives the canonical text of _normalise(changes): values JSON cannot hold
    go through _json_value either way, and tuples, floats and str subclasses encode as
    their round trip does. Other keys (an int becomes a string key and sorts
    differently) need the round trip."""
    stack = [changes]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key.__class__ is not str:
                    return False
                if item.__class__ not in _LEAVES:
                    stack.append(item)
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return True


def _check_hash(spec: Event, seq, now, actor_id, username, ip, prev, digest) -> None:
    """Refuse (RuntimeError) unless AuditEvent.compute_hash gives `digest` too."""
    changes = spec.changes
    if isinstance(changes, CanonicalJSON):
        changes = json.loads(changes)
    reference = AuditEvent(
        seq=seq,
        created_at=now,
        actor_id=actor_id,
        actor_username=username,
        action=spec.action,
        object_type=spec.object_type,
        object_id=spec.object_id,
        object_repr=spec.object_repr,
        from_state=spec.from_state,
        to_state=spec.to_state,
        reason=spec.reason,
        changes=_normalise(changes),
        client_ip=ip,
        prev_hash=prev,
    )
    if reference.compute_hash() != digest:
        raise RuntimeError("audit_record_bulk no longer hashes as AuditEvent does")


_COLUMNS = [
    "seq",
    "created_at",
    "actor_id",
    "actor_username",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "from_state",
    "to_state",
    "reason",
    "changes",
    "client_ip",
    "prev_hash",
    "hash",
]


@transaction.atomic
def audit_record_bulk(*, actor, events: list[Event]) -> int:
    """`audit_record_many` for the bulk imports' tens of thousands of events: the same
    rows, sequence numbers and hashes, in the caller's transaction under the chain head
    lock, but without a model instance per event; returns how many were recorded.

    Each event's canonical JSON is assembled from pre-encoded pieces and its changes
    encoded once (the text is also what the row stores), or taken as given when the
    caller passes them as CanonicalJSON, instead of a JSON round trip, an AuditEvent and
    bulk_create each; rows are streamed to the database as they are
    hashed (config.bulk: COPY on PostgreSQL). The first event of every call is also
    built as an AuditEvent and hashed by AuditEvent.compute_hash: if the two ever
    disagree (the canonical form changed) it raises RuntimeError and the caller's
    transaction writes nothing, so the chain never holds a hash audit_verify would
    reject. Not idempotent: each call appends."""
    if not events:
        return 0
    head, _ = ChainHead.objects.select_for_update().get_or_create(pk=1)
    now = timezone.now()
    ip = get_client_ip()
    actor_id = getattr(actor, "pk", None)
    username = getattr(actor, "username", "") or ""
    # AuditEvent.canonical's keys in sorted order; the pieces common to every event.
    after_action = (
        f',"actor_id":{_encode(actor_id)},"actor_username":{_encode(username)},"changes":'
    )
    after_changes = f',"client_ip":{_encode(ip)},"created_at":{_encode(now.isoformat())},'
    last = [head.last_seq, head.last_hash]

    def rows():
        seq, prev = last
        for spec in events:
            seq += 1
            changes = spec.changes
            if changes.__class__ is CanonicalJSON:
                changes_text = changes
            else:
                changes_text = _encode_changes(
                    changes if _str_keys(changes) else _normalise(changes)
                )
            canonical = "".join(
                (
                    '{"action":',
                    _field_json(spec.action),
                    after_action,
                    changes_text,
                    after_changes,
                    '"from_state":',
                    _field_json(spec.from_state),
                    ',"object_id":',
                    _field_json(spec.object_id),
                    ',"object_repr":',
                    _field_json(spec.object_repr),
                    ',"object_type":',
                    _field_json(spec.object_type),
                    ',"reason":',
                    _field_json(spec.reason),
                    ',"seq":',
                    str(seq),
                    ',"to_state":',
                    _field_json(spec.to_state),
                    "}",
                )
            )
            digest = hashlib.sha256((prev + canonical).encode("utf-8")).hexdigest()
            if seq == head.last_seq + 1:
                _check_hash(spec, seq, now, actor_id, username, ip, prev, digest)
            yield (
                seq,
                now,
                actor_id,
                username,
                spec.action,
                spec.object_type,
                spec.object_id,
                spec.object_repr,
                spec.from_state,
                spec.to_state,
                spec.reason,
                changes_text,
                ip,
                prev,
                digest,
            )
            prev = digest
            last[:] = [seq, prev]

    # A generator: on PostgreSQL the server stores each row while the next is hashed.
    count = insert_rows(AuditEvent, _COLUMNS, rows(), prepared={"changes"})
    ChainHead.objects.filter(pk=head.pk).update(last_seq=last[0], last_hash=last[1])
    return count
