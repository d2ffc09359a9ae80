"""Writing audit events. Every app records through `audit_record` in the same
transaction as the change it describes, so history cannot drift from state."""

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.utils import timezone

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
