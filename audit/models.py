"""The append-only, hash-chained audit trail.

Each event's hash is SHA-256 over the previous event's hash and the event's canonical
JSON (see `AuditEvent.canonical`). Writers serialise on the single `ChainHead` row
(`select_for_update` in the writer's own transaction), so two concurrent transactions
can never both extend the chain from the same predecessor: the chain cannot fork, and
`seq` is gap-free. A deleted or altered row is found by `manage.py audit_verify`.

The model refuses update and delete; on PostgreSQL triggers (migration 0002) refuse
UPDATE, DELETE and TRUNCATE as well, so a bug or a careless shell cannot rewrite history.
"""

import hashlib
import json

from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    pass


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events are append-only: update refused")

    def delete(self):
        raise AppendOnlyError("audit events are append-only: delete refused")

    def for_objects(self, *pairs: tuple[str, object]):
        """Events about any of the given (object_type, object_id) pairs."""
        query = models.Q(pk__in=[])
        for object_type, object_id in pairs:
            query |= models.Q(object_type=object_type, object_id=str(object_id))
        return self.filter(query)


class ChainHead(models.Model):
    """The single row holding the newest event's sequence number and hash."""

    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        verbose_name = "审计链头"

    def __str__(self) -> str:
        return f"#{self.last_seq} {self.last_hash[:12]}"


class AuditEvent(models.Model):
    GENESIS_HASH = "0" * 64

    seq = models.BigIntegerField("序号", unique=True)
    created_at = models.DateTimeField("时间", db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="操作人",
        null=True,
        blank=True,
        # Users with history are deactivated, never deleted: SET_NULL would be an UPDATE.
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_username = models.CharField("操作人账号", max_length=150, blank=True)
    action = models.CharField("动作", max_length=64, db_index=True)
    object_type = models.CharField("对象类型", max_length=64)
    object_id = models.CharField("对象编号", max_length=64)
    object_repr = models.CharField("对象", max_length=200, blank=True)
    from_state = models.CharField("原状态", max_length=32, blank=True)
    to_state = models.CharField("新状态", max_length=32, blank=True)
    reason = models.TextField("理由", blank=True)
    changes = models.JSONField("变更", default=dict, blank=True)
    client_ip = models.GenericIPAddressField("客户端IP", null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        verbose_name = "审计事件"
        verbose_name_plural = "审计事件"
        indexes = [models.Index(fields=["object_type", "object_id", "seq"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs):
        # A guard, not domain logic: history is written once.
        if not self._state.adding:
            raise AppendOnlyError("audit events are append-only: update refused")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only: delete refused")

    def canonical(self) -> str:
        """The event as canonical JSON: sorted keys, no spaces, UTF-8 text kept."""
        payload = {
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_username": self.actor_username,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "reason": self.reason,
            "changes": self.changes,
            "client_ip": self.client_ip,
        }
        return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def compute_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.prev_hash.encode("ascii"))
        digest.update(self.canonical().encode("utf-8"))
        return digest.hexdigest()
