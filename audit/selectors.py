from collections.abc import Iterator
from dataclasses import dataclass

from .models import AuditEvent, ChainHead


def audit_event_list_for(*pairs: tuple[str, object]):
    return AuditEvent.objects.for_objects(*pairs).select_related("actor").order_by("seq")


def audit_event_list_recent(*, limit: int = 15):
    """The newest events, newest first."""
    return AuditEvent.objects.select_related("actor").order_by("-seq")[:limit]


@dataclass
class ChainBreak:
    seq: int
    event_id: int | None
    reason: str


def audit_chain_verify(*, chunk_size: int = 2000) -> Iterator[ChainBreak | int]:
    """Walk the chain in order; yield the count checked so far every chunk, and a
    ChainBreak for the first event that does not verify (then stop)."""
    expected_seq = 1
    prev = AuditEvent.GENESIS_HASH
    checked = 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size):
        if event.seq != expected_seq:
            yield ChainBreak(expected_seq, None, f"event #{expected_seq} is missing")
            return
        if event.prev_hash != prev:
            yield ChainBreak(event.seq, event.pk, "its prev_hash does not match the event before")
            return
        if event.compute_hash() != event.hash:
            yield ChainBreak(event.seq, event.pk, "its content does not match its hash")
            return
        prev = event.hash
        expected_seq += 1
        checked += 1
        if checked % chunk_size == 0:
            yield checked
    head = ChainHead.objects.filter(pk=1).first()
    if head and (head.last_seq != expected_seq - 1 or head.last_hash != prev):
        yield ChainBreak(
            head.last_seq,
            None,
            f"the chain head names #{head.last_seq} but the chain ends at "
            f"#{expected_seq - 1} (events removed from the end)",
        )
        return
    yield checked
