"""Marks: graders enter scores (single or double-blind marking with arbitration), one by
one, as a batch from the score grid, or imported from XLSX/CSV files exported by
computer-based theory exam systems.

Rules (issue 3 item 5):

- A grader marks only the sessions and components they are assigned to (SessionStaff:
  grader or chief grader of that component; a chief grader without a component covers
  every component of the session).
- Marks are entered while the session is `marking`; they lock when it goes to review
  (in_review, approved): StateConflict (409).
- Only a checked-in booking is marked, and only for a component it sits
  (Booking.components): an exempt component is never sat, so never marked.
- A score is a number from 0 to the plan component's maximum with at most one decimal.
- Marking mode per plan component: `single` -> slot single; `double` -> slots first and
  second by two different graders, double-blind (a grader only ever sees their own
  marks); when both exist and differ by more than the tolerance, a chief grader who did
  not mark either enters the `arbitration` slot.
- A grader changes only their own mark, with a reason. Every entry and change is
  audited on the Mark (`mark.enter`, `mark.change`) with before/after and the reason.
  Re-sending an unchanged score is a no-op (the grid may post a whole column again).

Every write locks the session row first: marks of one session are serialised (two
graders racing for the first slot), and the review's submit_for_review, which locks the
same row, cannot interleave with a mark being written.

Import (`scores_import`): columns 准考证号, 科目代码, 分数 and optional 评次
(single/first/second, or 单评/一评/二评). All-or-nothing: every row is checked, and
any problem refuses the whole file with a report of (row, column, reason). Who may
import: a grader for the components they are assigned to (into their own slots), or a
coordinator for the machine-marked theory component when it is single-marked
(机考理论成绩: the exam system is the marker; the coordinator is recorded as the
entering user).
"""

import csv
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, prefetch_related_objects

from audit.exceptions import DomainError, StateConflict
from audit.services import (
    CanonicalJSON,
    Event,
    audit_record_bulk,
    audit_record_many,
    event_for,
    json_text,
)
from cases.models import CaseExemption, MarkingMode, PlanComponent
from cases.roles import Role, has_role, require_role
from catalog.models import Component
from config.bulk import insert_rows
from config.xlsx import open_workbook, sheet_rows

from .models import (
    Booking,
    BookingStatus,
    ExamSession,
    Mark,
    MarkSlot,
    SessionStaff,
    SessionStatus,
    StaffRole,
)

LOCKED_STATES = (SessionStatus.IN_REVIEW, SessionStatus.APPROVED)
DOUBLE_SLOTS = (MarkSlot.FIRST, MarkSlot.SECOND)
# Machine-marked components a coordinator may import (computer-based theory exams).
MACHINE_MARKED = ("theory",)
ONE_DECIMAL = Decimal("0.1")

# Import columns (the format of computer-based exam systems' exports).
COL_TICKET, COL_COMPONENT, COL_SCORE, COL_SLOT = "准考证号", "科目代码", "分数", "评次"
REQUIRED_COLUMNS = (COL_TICKET, COL_COMPONENT, COL_SCORE)
SLOT_ALIASES = {
    "single": MarkSlot.SINGLE,
    "单评": MarkSlot.SINGLE,
    "first": MarkSlot.FIRST,
    "一评": MarkSlot.FIRST,
    "second": MarkSlot.SECOND,
    "二评": MarkSlot.SECOND,
}


class ScoreImportError(DomainError):
    """The import file was refused as a whole; `errors` lists (row, column, message)."""

    code = "import_invalid"

    def __init__(self, errors: list[dict]):
        super().__init__(f"成绩文件有 {len(errors)} 处错误，未导入任何成绩", errors=errors)
        self.errors = errors


class MarkBatchError(DomainError):
    """A batch from the score grid was refused as a whole; `errors` lists each entry's
    problems as {"index", "ticket_number", "field", "message"}."""

    code = "batch_invalid"

    def __init__(self, errors: list[dict]):
        super().__init__(f"有 {len(errors)} 处错误，本批成绩均未保存", errors=errors)
        self.errors = errors


class _Refused(Exception):
    """One entry refused: `kind` is invalid (400), state (409) or permission (403)."""

    def __init__(self, field_name: str, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.field = field_name
        self.message = message
        self.kind = kind


def parse_score(value, max_score: int) -> Decimal:
    """`value` as a Decimal with one decimal place, or _Refused on `score`: a number
    (int, Decimal, float or numeric text) from 0 to `max_score`, at most one decimal."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Refused("score", "请填写分数")
    if isinstance(value, bool):
        raise _Refused("score", "分数须为数字")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise _Refused("score", "分数须为数字") from None
    if not number.is_finite():
        raise _Refused("score", "分数须为数字")
    if number < 0:
        raise _Refused("score", "分数不能为负数")
    if number > max_score:
        raise _Refused("score", f"分数不能超过满分 {max_score} 分")
    if number != number.quantize(ONE_DECIMAL):
        raise _Refused("score", "分数最多保留一位小数")
    return number.quantize(ONE_DECIMAL)


def staff_roles(session: ExamSession, user, component: Component) -> set[str]:
    """The marking roles `user` holds in `session` for `component`: grader and/or
    chief grader (a chief grader without a component covers all of them)."""
    if not getattr(user, "is_authenticated", False):
        return set()
    return set(
        SessionStaff.objects.filter(session=session, user=user)
        .filter(
            Q(role=StaffRole.GRADER, component=component)
            | Q(role=StaffRole.CHIEF_GRADER, component=component)
            | Q(role=StaffRole.CHIEF_GRADER, component__isnull=True)
        )
        .values_list("role", flat=True)
    )


def mark_final(plan_component: PlanComponent, marks: dict[str, Decimal]) -> tuple | None:
    """The final score of one component from its marks by slot, as (score, method):
    single -> (mark, "single"); double -> mean of two within the tolerance, rounded half
    up to one decimal, (mean, "mean"); beyond the tolerance the arbitrated mark
    (mark, "arbitrated"). None while a mark it needs is missing."""
    if plan_component.marking_mode == MarkingMode.SINGLE:
        score = marks.get(MarkSlot.SINGLE)
        return None if score is None else (score, "single")
    first, second = marks.get(MarkSlot.FIRST), marks.get(MarkSlot.SECOND)
    if first is None or second is None:
        return None
    if abs(first - second) <= plan_component.tolerance:
        mean = ((first + second) / 2).quantize(ONE_DECIMAL, rounding="ROUND_HALF_UP")
        return mean, "mean"
    arbitrated = marks.get(MarkSlot.ARBITRATION)
    return None if arbitrated is None else (arbitrated, "arbitrated")


def needs_arbitration(plan_component: PlanComponent, marks: dict[str, Decimal]) -> bool:
    first, second = marks.get(MarkSlot.FIRST), marks.get(MarkSlot.SECOND)
    return (
        plan_component.marking_mode == MarkingMode.DOUBLE
        and first is not None
        and second is not None
        and abs(first - second) > plan_component.tolerance
    )


# The marking desk: one session and component, the actor's roles, the marks so far.


@dataclass
class _NewMark:
    """A mark entered in a batch, inserted later with the others (`_Desk.flush`)."""

    mark: Mark
    reason: str
    changes: dict
    action: str = "mark.enter"

    def event(self) -> Event:
        return event_for(self.mark, self.action, reason=self.reason, changes=self.changes)


@dataclass
class _Desk:
    actor: object
    session: ExamSession
    plan_component: PlanComponent
    roles: set[str]
    # booking_id -> {slot: Mark} for the component, kept current as entries apply.
    marks: dict[int, dict[str, Mark]] = field(default_factory=dict)
    events: list[Event | _NewMark] = field(default_factory=list)
    # Batch entry (marks_enter): new marks are inserted in bulk by `flush`, their
    # `mark.enter` events written once they have their ids.
    deferred: bool = False

    @property
    def component(self) -> Component:
        return self.plan_component.component

    def load_marks(self, booking_ids: Iterable[int]) -> None:
        for mark in Mark.objects.filter(booking_id__in=list(booking_ids), component=self.component):
            self.marks.setdefault(mark.booking_id, {})[mark.slot] = mark

    def flush(self) -> list[Event]:
        """Insert the marks still waiting (deferred), then return the events in entry
        order, each new mark's `mark.enter` with its id."""
        waiting = [e.mark for e in self.events if isinstance(e, _NewMark)]
        Mark.objects.bulk_create(waiting)
        self.events = [e.event() if isinstance(e, _NewMark) else e for e in self.events]
        return self.events


def _lock_session(session: ExamSession) -> ExamSession:
    return ExamSession.objects.select_for_update().select_related("plan").get(pk=session.pk)


def _require_marking(session: ExamSession) -> None:
    if session.status in LOCKED_STATES:
        raise StateConflict(
            f"场次 {session.code} 当前状态为「{session.get_status_display()}」，成绩已锁定，"
            "不能录入或修改",
            current_state=session.status,
        )
    if session.status != SessionStatus.MARKING:
        raise StateConflict(
            f"场次 {session.code} 当前状态为「{session.get_status_display()}」，尚未进入评分",
            current_state=session.status,
        )


def _session_component(session: ExamSession, component: Component | str) -> PlanComponent:
    """The plan component for `component` (object or code), which the session must
    examine; ValidationError on `component` otherwise."""
    code = component if isinstance(component, str) else component.code
    if not session.components.filter(code=code).exists():
        raise ValidationError({"component": [f"科目「{code}」不是场次 {session.code} 的考试科目"]})
    return PlanComponent.objects.select_related("component").get(
        plan_id=session.plan_id, component__code=code
    )


def _open_desk(actor, session: ExamSession, component) -> _Desk:
    """Lock the session, check it is marking and the component is one of its own, and
    collect the actor's roles for it; PermissionDenied when they have none."""
    session = _lock_session(session)
    _require_marking(session)
    plan_component = _session_component(session, component)
    roles = staff_roles(session, actor, plan_component.component)
    if not roles:
        raise PermissionDenied(
            f"您不是场次 {session.code}「{plan_component.component.name}」的考评员，不能评分"
        )
    return _Desk(actor=actor, session=session, plan_component=plan_component, roles=roles)


def _check_booking(desk: _Desk, booking: Booking) -> None:
    """The booking belongs to the session, is checked in and sits the component."""
    if booking.session_id != desk.session.pk:
        raise _Refused("booking", f"准考证号 {booking.ticket_number} 不属于本场次")
    if booking.status != BookingStatus.CHECKED_IN:
        raise _Refused(
            "booking",
            f"准考证号 {booking.ticket_number} 的状态为「{booking.get_status_display()}」，"
            "不能评分",
            kind="state",
        )
    component = desk.component
    exempt = {e.component_id: e for e in booking.case.exemptions.all()}
    if component.pk in exempt:
        raise _Refused(
            "component",
            f"考生免考「{component.name}」（互认序号 {exempt[component.pk].row}），不能录入成绩",
        )
    if component.pk not in {c.pk for c in booking.components.all()}:
        raise _Refused("component", f"考生本场不考「{component.name}」，不能录入成绩")


def _resolve_slot(desk: _Desk, booking: Booking, slot: str | None) -> str:
    """The slot this entry goes to: as asked, or the actor's own, or the next free one
    they may take; then every rule of the marking mode."""
    pc, actor, roles = desk.plan_component, desk.actor, desk.roles
    name = pc.component.name
    marks = desk.marks.get(booking.pk, {})
    own = [s for s, m in marks.items() if m.grader_id == actor.pk]
    if slot in (None, ""):
        if pc.marking_mode == MarkingMode.SINGLE:
            slot = MarkSlot.SINGLE
        elif own:
            slot = own[0]
        elif StaffRole.GRADER in roles and any(s not in marks for s in DOUBLE_SLOTS):
            slot = next(s for s in DOUBLE_SLOTS if s not in marks)
        elif StaffRole.CHIEF_GRADER in roles:
            slot = MarkSlot.ARBITRATION
        else:
            raise _Refused("slot", "一评、二评均已由其他考评员录入")
    if slot not in MarkSlot.values:
        raise _Refused("slot", f"未知的评次：{slot}")

    if pc.marking_mode == MarkingMode.SINGLE:
        if slot != MarkSlot.SINGLE:
            raise _Refused("slot", f"「{name}」为单评，评次只能为单评")
    elif slot == MarkSlot.SINGLE:
        raise _Refused("slot", f"「{name}」为双盲评，评次须为一评、二评或仲裁")

    if slot == MarkSlot.ARBITRATION:
        if StaffRole.CHIEF_GRADER not in roles:
            raise _Refused("slot", f"仅主考评员可以仲裁「{name}」", kind="permission")
        if any(marks[s].grader_id == actor.pk for s in DOUBLE_SLOTS if s in marks):
            raise _Refused("slot", "参与一评或二评的考评员不能仲裁同一考生")
        scores = {s: m.score for s, m in marks.items()}
        if not all(s in scores for s in DOUBLE_SLOTS):
            raise _Refused("slot", "一评、二评尚未全部录入，不能仲裁")
        if not needs_arbitration(pc, scores):
            raise _Refused("slot", f"一评、二评分差未超过允许误差 {pc.tolerance} 分，无需仲裁")
    elif StaffRole.GRADER not in roles and not (
        slot == MarkSlot.SINGLE and StaffRole.CHIEF_GRADER in roles
    ):
        raise _Refused("slot", f"您不是「{name}」的考评员，不能录入{MarkSlot(slot).label}")
    elif slot in DOUBLE_SLOTS:
        other = MarkSlot.SECOND if slot == MarkSlot.FIRST else MarkSlot.FIRST
        if other in marks and marks[other].grader_id == actor.pk:
            raise _Refused("slot", "同一考评员不能同时录入一评和二评")

    existing = marks.get(slot)
    if existing is not None and existing.grader_id != actor.pk:
        raise _Refused("slot", f"该考生的{MarkSlot(slot).label}已由其他考评员录入")
    return slot


def _apply(desk: _Desk, booking: Booking, score, slot: str | None, reason: str) -> Mark | None:
    """Check and write one entry; returns the mark (None when the score is unchanged).
    Raises _Refused without writing anything."""
    _check_booking(desk, booking)
    value = parse_score(score, desk.plan_component.max_score)
    slot = _resolve_slot(desk, booking, slot)
    reason = (reason or "").strip()
    existing = desk.marks.get(booking.pk, {}).get(slot)
    if existing is not None:
        if existing.score == value:
            return None
        if existing.pk is None:  # entered earlier in this batch: insert it before changing
            desk.flush()
        if not reason:
            raise _Refused("reason", "修改已录入的分数须填写理由")
        if slot in (MarkSlot.FIRST, MarkSlot.SECOND) and MarkSlot.ARBITRATION in desk.marks.get(
            booking.pk, {}
        ):
            # The arbitrated mark decided between these two; changing one afterwards
            # would silently replace the arbitration by a mean.
            raise _Refused("score", "该考生本科目已仲裁，一评、二评分数不能再修改")
        before = existing.score
        existing.score = value
        existing.save(update_fields=["score", "updated_at"])
        desk.events.append(
            event_for(
                existing,
                "mark.change",
                reason=reason,
                changes={"score": {"before": str(before), "after": str(value)}},
            )
        )
        return existing
    mark = Mark(
        booking=booking, component=desk.component, slot=slot, grader=desk.actor, score=value
    )
    desk.marks.setdefault(booking.pk, {})[slot] = mark
    entered = _NewMark(
        mark,
        reason,
        changes={
            "booking": {"before": None, "after": booking.ticket_number},
            "component": {"before": None, "after": desk.component.code},
            "slot": {"before": None, "after": slot},
            "score": {"before": None, "after": str(value)},
        },
    )
    if desk.deferred:
        desk.events.append(entered)
    else:
        mark.save(force_insert=True)
        desk.events.append(entered.event())
    return mark


def _raise_single(refused: _Refused):
    if refused.kind == "state":
        raise StateConflict(refused.message)
    if refused.kind == "permission":
        raise PermissionDenied(refused.message)
    raise ValidationError({refused.field: [refused.message]})


def _bookings(session: ExamSession, **filters):
    return (
        Booking.objects.filter(session=session, **filters)
        .select_related("case")
        .prefetch_related("components", "case__exemptions")
    )


@transaction.atomic(durable=True)
def mark_enter(
    *,
    actor,
    booking: Booking,
    component: Component | str,
    score,
    slot: str | None = None,
    reason: str = "",
) -> Mark:
    """Enter or change `actor`'s mark for `component` of `booking` (rules in the module
    docstring). `slot` defaults to the actor's own slot, else the next one they may
    take. Refusals: not a grader/not assigned -> PermissionDenied; session not marking
    (locked in review) or booking not checked in -> StateConflict; bad score, exempt or
    unsat component, slot rules, change without reason -> ValidationError on the field.
    Locks the session row. Audited as `mark.enter` / `mark.change`; an unchanged score
    writes nothing (idempotent)."""
    require_role(actor, Role.GRADER)
    desk = _open_desk(actor, booking.session, component)
    booking = _bookings(desk.session).get(pk=booking.pk)
    desk.load_marks([booking.pk])
    try:
        mark = _apply(desk, booking, score, slot, reason)
    except _Refused as refused:
        _raise_single(refused)
    audit_record_many(actor=actor, events=desk.events)
    if mark is None:  # unchanged: hand back the actor's mark as it is
        mark = next(m for m in desk.marks.get(booking.pk, {}).values() if m.grader_id == actor.pk)
    return mark


@dataclass
class MarkEntry:
    ticket_number: str
    score: object
    slot: str | None = None
    reason: str = ""


@transaction.atomic(durable=True)
def marks_enter(*, actor, session: ExamSession, component: Component | str, entries) -> dict:
    """A batch from the score grid for one session and component: every entry
    (MarkEntry or dict with ticket_number, score, slot, reason) is checked and written
    as by `mark_enter`; any problem refuses the whole batch (MarkBatchError listing each
    entry's index, ticket, field and message; nothing is written). A grader not
    assigned to the component is refused as a whole (PermissionDenied). Returns
    {"entered": n, "changed": n, "unchanged": n}. Locks the session row."""
    require_role(actor, Role.GRADER)
    desk = _open_desk(actor, session, component)
    desk.deferred = True
    entries = [e if isinstance(e, MarkEntry) else MarkEntry(**e) for e in entries]
    if not entries:
        raise ValidationError({"marks": ["请至少录入一个分数"]})
    # Ticket numbers are matched case-insensitively (upper-case both sides).
    tickets = [str(e.ticket_number or "").strip().upper() for e in entries]
    bookings = {
        b.ticket_number.upper(): b
        for b in _bookings(desk.session).filter(ticket_number__in=[t for t in tickets if t])
    }
    desk.load_marks(b.pk for b in bookings.values())
    errors: list[dict] = []
    counts = {"entered": 0, "changed": 0, "unchanged": 0}
    seen: dict[tuple, int] = {}
    for index, entry in enumerate(entries):
        ticket = str(entry.ticket_number or "").strip().upper()
        try:
            booking = bookings.get(ticket)
            if booking is None:
                raise _Refused("ticket_number", f"准考证号 {ticket or '（空）'} 不是本场次的考生")
            key = (ticket, entry.slot or "")
            if key in seen:
                raise _Refused("ticket_number", f"与第 {seen[key] + 1} 条重复")
            seen[key] = index
            before = len(desk.events)
            mark = _apply(desk, booking, entry.score, entry.slot, entry.reason)
        except _Refused as refused:
            errors.append(
                {
                    "index": index,
                    "ticket_number": ticket,
                    "field": refused.field,
                    "message": refused.message,
                }
            )
            continue
        if mark is None:
            counts["unchanged"] += 1
        elif desk.events[before].action == "mark.change":
            counts["changed"] += 1
        else:
            counts["entered"] += 1
    if errors:  # raising rolls back every entry already written
        raise MarkBatchError(errors)
    audit_record_many(actor=actor, events=desk.flush())
    return counts


# Import --------------------------------------------------------------------------------

# A legitimate score sheet unpacks to a few tens of MB; far more is a zip bomb.
MAX_UNPACKED_BYTES = 400 * 1024 * 1024
UNREADABLE_XLSX = "无法读取 XLSX 文件，请确认文件格式"


@dataclass
class _Row:
    number: int  # as shown in the spreadsheet (header is row 1)
    values: dict[str, object]


def _xlsx_table(data: bytes) -> list[tuple[int, list]]:
    """(row number, values) of the first sheet, read as openpyxl reads it
    (config.xlsx); anything unreadable is one message for the whole file."""
    refused = ScoreImportError([{"row": 0, "column": "", "message": UNREADABLE_XLSX}])
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise refused from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise refused
    try:
        workbook = open_workbook(data)
        try:
            return list(sheet_rows(workbook.worksheets[0]))
        finally:
            workbook.close()
    except Exception:  # any unreadable workbook or sheet is one message
        raise refused from None


def _read_rows(data: bytes, name: str) -> tuple[list[str], list[_Row]]:
    """Header and data rows from an XLSX (first sheet) or CSV (UTF-8, BOM optional;
    GB18030 as exported by older exam systems is tried when UTF-8 fails)."""
    lower = (name or "").lower()
    if lower.endswith(".xlsx") or data[:2] == b"PK":
        table = _xlsx_table(data)
    elif lower.endswith(".csv") or not lower:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("gb18030")
            except UnicodeDecodeError:
                raise ScoreImportError(
                    [{"row": 0, "column": "", "message": "CSV 文件须为 UTF-8 编码"}]
                ) from None
        table = list(enumerate(csv.reader(io.StringIO(text)), start=1))
    else:
        raise ScoreImportError(
            [{"row": 0, "column": "", "message": "仅支持 XLSX 或 CSV 格式的成绩文件"}]
        )
    if not table:
        raise ScoreImportError([{"row": 1, "column": "", "message": "文件为空"}])
    header = [str(h).strip() if h is not None else "" for h in table[0][1]]
    rows = []
    for number, cells in table[1:]:
        if all(c is None or str(c).strip() == "" for c in cells):
            continue
        rows.append(
            _Row(number, {h: (cells[i] if i < len(cells) else None) for i, h in enumerate(header)})
        )
    return header, rows


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a ticket number typed into Excel as a number
    return str(value).strip()


class _PendingMark:
    """A mark the import will insert: what the slot rules read of a Mark (grader_id,
    score) while the rest of the file is checked."""

    __slots__ = ("booking", "component", "event", "grader_id", "score", "slot")

    def __init__(self, booking: Booking, component: Component, slot: str, grader_id, score):
        self.booking = booking
        self.component = component
        self.slot = slot
        self.grader_id = grader_id
        self.score = score
        self.event: Event | None = None


class _Roster:
    """What _check_booking reads of the session's bookings, fetched in three queries
    for the whole file instead of model instances per booking and component: tickets,
    the components each booking sits, each case's exemptions."""

    def __init__(self, session: ExamSession, tickets: set[str]):
        self.session = session
        self.bookings = {
            b.ticket_number.upper(): b for b in Booking.objects.filter(session=session)
        }
        # Tickets of other sessions, named in their own message.
        others = sorted(t for t in tickets if t and t not in self.bookings)
        for start in range(0, len(others), 900):
            chunk = others[start : start + 900]
            for b in Booking.objects.filter(ticket_number__in=chunk).select_related("session"):
                self.bookings.setdefault(b.ticket_number.upper(), b)
        self.prefetched: set[int] = set()
        self.sits: dict[int, set[int]] = {}
        for booking_id, component_id in Booking.components.through.objects.filter(
            booking__session=session
        ).values_list("booking_id", "component_id"):
            self.sits.setdefault(booking_id, set()).add(component_id)
        self.exempt: dict[int, dict[int, int]] = {}
        for case_id, component_id, row in CaseExemption.objects.filter(
            case__bookings__session=session
        ).values_list("case_id", "component_id", "row"):
            self.exempt.setdefault(case_id, {})[component_id] = row

    def check(self, desk: _Desk, booking: Booking) -> None:
        """_check_booking's rules and messages, from the maps above."""
        if booking.session_id != desk.session.pk:
            raise _Refused("booking", f"准考证号 {booking.ticket_number} 不属于本场次")
        if booking.status != BookingStatus.CHECKED_IN:
            raise _Refused(
                "booking",
                f"准考证号 {booking.ticket_number} 的状态为「{booking.get_status_display()}」，"
                "不能评分",
                kind="state",
            )
        component = desk.component
        row = self.exempt.get(booking.case_id, {}).get(component.pk)
        if row is not None:
            raise _Refused(
                "component", f"考生免考「{component.name}」（互认序号 {row}），不能录入成绩"
            )
        if component.pk not in self.sits.get(booking.pk, ()):
            raise _Refused("component", f"考生本场不考「{component.name}」，不能录入成绩")

    def prefetch_for_changes(self, desk: _Desk) -> None:
        """What _apply (through _check_booking) reads of a booking: fetched once per
        component for the bookings that already have marks, when the file first changes
        one (a re-import with corrections)."""
        if desk.component.pk in self.prefetched:
            return
        self.prefetched.add(desk.component.pk)
        marked = [b for b in self.bookings.values() if b.pk in desk.marks]
        prefetch_related_objects(marked, "components", "case__exemptions")


# The changes _apply records for a new mark, as the canonical JSON audit_record_bulk
# stores (keys sorted): encoding a dict per mark cost more than checking the row.
_ENTER_CHANGES = (
    '{"booking":{"after":%s,"before":null},"component":{"after":%s,"before":null},'
    '"score":{"after":%s,"before":null},"slot":{"after":%s,"before":null}}'
)


def _enter_changes(ticket: str, component: str, slot: str, score: Decimal) -> CanonicalJSON:
    values = (ticket, component, str(score), str(slot))
    return CanonicalJSON(_ENTER_CHANGES % tuple(json_text(value) for value in values))


def _check_enter_changes(event: Event, ticket: str, component: str, slot: str, score) -> None:
    """Refuse (RuntimeError) unless `_enter_changes` gives the canonical encoding of the
    dict _apply records; run on an import's first new mark."""
    changes = {
        "booking": {"before": None, "after": ticket},
        "component": {"before": None, "after": component},
        "slot": {"before": None, "after": slot},
        "score": {"before": None, "after": str(score)},
    }
    # AuditEvent.canonical's encoding.
    if event.changes != json.dumps(
        changes, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    ):
        raise RuntimeError("scores_import no longer encodes changes as mark_enter records them")


def _insert_marks(session: ExamSession, new: list[_PendingMark]) -> None:
    """Insert the new marks in one go (config.bulk), then give each its mark.enter event
    its primary key: the session row is locked, so the session's marks read back are
    those already there and these."""
    if not new:
        return
    insert_rows(
        Mark,
        ["booking_id", "component_id", "slot", "grader_id", "score"],
        ((m.booking.pk, m.component.pk, str(m.slot), m.grader_id, m.score) for m in new),
    )
    ids = {
        (booking_id, component_id, slot): pk
        for booking_id, component_id, slot, pk in Mark.objects.filter(
            booking__session=session
        ).values_list("booking_id", "component_id", "slot", "pk")
    }
    for mark in new:
        mark.event.object_id = str(ids[(mark.booking.pk, mark.component.pk, str(mark.slot))])


@transaction.atomic(durable=True)
def scores_import(*, actor, session: ExamSession, file, name: str = "", reason: str = "") -> dict:
    """Import marks for `session` from an XLSX or CSV file (`file`: bytes or a file
    object; `name` its original name). Columns 准考证号, 科目代码, 分数, optional 评次.

    All-or-nothing: every row is checked (unknown tickets, tickets of another session,
    duplicate rows, two rows for the same mark, unknown, unexamined or exempt
    components, bad or out-of-range scores, the slot rules of `mark_enter`, changes
    without `reason`), and any problem raises ScoreImportError with the list of
    {"row", "column", "message"} in Chinese, writing nothing. Who may import: see the
    module docstring. Locks the session row; each mark is audited as by `mark_enter`,
    and the import itself as `session.scores_import`. New marks are inserted together
    once the whole file has passed (tens of thousands of rows take seconds,
    bench/bench_scores.py); a changed mark is written as by `mark_enter`. Returns
    {"rows", "entered", "changed", "unchanged"}."""
    require_role(actor, Role.GRADER, Role.COORDINATOR)
    session = _lock_session(session)
    _require_marking(session)
    entered_reason = reason.strip()  # as _apply strips it
    mark_type = Mark._meta.label_lower
    data = file if isinstance(file, bytes) else file.read()
    header, rows = _read_rows(data, name)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ScoreImportError(
            [{"row": 1, "column": c, "message": f"缺少列「{c}」"} for c in missing]
        )
    if not rows:
        raise ScoreImportError([{"row": 2, "column": "", "message": "文件中没有成绩数据"}])

    session_codes = set(session.components.values_list("code", flat=True))
    plan_components = {
        pc.component.code: pc
        for pc in PlanComponent.objects.filter(plan_id=session.plan_id).select_related("component")
    }
    known_components = set(Component.objects.values_list("code", flat=True))
    desks: dict[str, _Desk] = {}
    # (component code, slot asked) -> _resolve_slot's outcome for a booking without marks
    unmarked: dict[tuple[str, str | None], str | _Refused] = {}
    refused_components: dict[str, str] = {}

    def desk_for(code: str) -> _Desk:
        if code in desks:
            return desks[code]
        if code in refused_components:
            raise _Refused(COL_COMPONENT, refused_components[code])
        pc = plan_components[code]
        roles = staff_roles(session, actor, pc.component)
        machine = (
            has_role(actor, Role.COORDINATOR)
            and code in MACHINE_MARKED
            and pc.marking_mode == MarkingMode.SINGLE
        )
        if not roles and machine:
            roles = {StaffRole.GRADER}  # the coordinator enters the exam system's marks
        if not roles:
            refused_components[code] = (
                f"您不是本场次「{pc.component.name}」的考评员，不能导入该科目成绩"
                + (
                    "（考务人员仅可导入单评的机考理论成绩）"
                    if has_role(actor, Role.COORDINATOR)
                    else ""
                )
            )
            raise _Refused(COL_COMPONENT, refused_components[code])
        desk = desks[code] = _Desk(actor=actor, session=session, plan_component=pc, roles=roles)
        # The session's marks of this component (the session row is locked).
        for mark in Mark.objects.filter(booking__session=session, component=pc.component):
            desk.marks.setdefault(mark.booking_id, {})[mark.slot] = mark
        return desk

    roster = _Roster(session, {_text(r.values.get(COL_TICKET)).upper() for r in rows})
    errors: list[dict] = []
    counts = {"rows": len(rows), "entered": 0, "changed": 0, "unchanged": 0}
    seen: dict[tuple, int] = {}
    marked: dict[tuple, int] = {}  # (booking, component, slot as resolved) -> row
    new: list[_PendingMark] = []
    column_of = {"booking": COL_TICKET, "component": COL_COMPONENT, "score": COL_SCORE}
    column_of.update({"slot": COL_SLOT, "reason": COL_SCORE, COL_TICKET: COL_TICKET})
    for row in rows:
        ticket = _text(row.values.get(COL_TICKET)).upper()
        code = _text(row.values.get(COL_COMPONENT)).lower()
        slot_text = _text(row.values.get(COL_SLOT))
        try:
            if not ticket:
                raise _Refused(COL_TICKET, "准考证号为空")
            booking = roster.bookings.get(ticket)
            if booking is None:
                raise _Refused(COL_TICKET, f"准考证号 {ticket} 不存在")
            if booking.session_id != session.pk:
                raise _Refused(
                    COL_TICKET, f"准考证号 {ticket} 属于场次 {booking.session.code}，不是本场次"
                )
            if not code:
                raise _Refused(COL_COMPONENT, "科目代码为空")
            if code not in known_components:
                raise _Refused(COL_COMPONENT, f"科目代码 {code} 不存在")
            if code not in session_codes or code not in plan_components:
                raise _Refused(COL_COMPONENT, f"科目 {code} 不是本场次的考试科目")
            slot = None
            if slot_text:
                slot = SLOT_ALIASES.get(slot_text.lower()) or SLOT_ALIASES.get(slot_text)
                if slot is None:
                    raise _Refused("slot", f"评次「{slot_text}」无效，应为单评、一评或二评")
            key = (ticket, code, slot or "")
            if key in seen:
                raise _Refused(COL_TICKET, f"与第 {seen[key]} 行重复（同一准考证号、科目、评次）")
            seen[key] = row.number
            desk = desk_for(code)
            roster.check(desk, booking)
            value = parse_score(row.values.get(COL_SCORE), desk.plan_component.max_score)
            if booking.pk in desk.marks:
                slot = _resolve_slot(desk, booking, slot)
            else:
                # For a booking without marks _resolve_slot reads nothing of the booking
                # (its marks are none): the outcome depends on the desk and the slot
                # asked alone, so it is worked out once per desk and slot.
                outcome = unmarked.get((desk.component.code, slot))
                if outcome is None:
                    try:
                        outcome = _resolve_slot(desk, booking, slot)
                    except _Refused as refused:
                        outcome = refused
                    unmarked[desk.component.code, slot] = outcome
                if isinstance(outcome, _Refused):
                    raise _Refused(outcome.field, outcome.message, outcome.kind)
                slot = outcome
            # One mark per row: a second row reaching the same mark (评次 left empty on
            # one, given on the other) is a duplicate too, not a silent overwrite.
            first = marked.setdefault((booking.pk, code, slot), row.number)
            if first != row.number:
                raise _Refused(COL_TICKET, f"与第 {first} 行重复（同一准考证号、科目、评次）")
            if slot in desk.marks.get(booking.pk, {}):
                # A mark already entered: mark_enter's rules for a change, written now.
                roster.prefetch_for_changes(desk)
                before = len(desk.events)
                mark = _apply(desk, booking, row.values.get(COL_SCORE), slot, reason)
                if mark is None:
                    counts["unchanged"] += 1
                elif desk.events[before].action == "mark.change":
                    counts["changed"] += 1
                continue
        except _Refused as refused:
            errors.append(
                {
                    "row": row.number,
                    "column": column_of.get(refused.field, refused.field),
                    "message": refused.message,
                }
            )
            continue
        mark = _PendingMark(booking, desk.component, slot, actor.pk, value)
        desk.marks.setdefault(booking.pk, {})[slot] = mark
        # mark_enter's event; its object id is known once the mark is inserted.
        ticket, component_code = booking.ticket_number, desk.component.code
        mark.event = Event(
            "mark.enter",
            mark_type,
            "",
            f"{ticket} {component_code} {slot} {value}"[:200],
            reason=entered_reason,
            changes=_enter_changes(ticket, component_code, slot, value),
        )
        desk.events.append(mark.event)
        new.append(mark)
        counts["entered"] += 1
    if errors:  # raising rolls back every row already written
        raise ScoreImportError(errors)
    if new:
        m = new[0]
        _check_enter_changes(m.event, m.booking.ticket_number, m.component.code, m.slot, m.score)
    _insert_marks(session, new)
    events = [e for d in desks.values() for e in d.events]
    events.append(
        event_for(
            session,
            "session.scores_import",
            reason=reason,
            changes={"import": {"before": None, "after": {"file": name, **counts}}},
        )
    )
    audit_record_bulk(actor=actor, events=events)
    return counts
