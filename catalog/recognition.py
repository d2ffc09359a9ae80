"""The recognition engine: held certificates + target type + date -> the attachment
rows that apply, the components they exempt, and the skill-level equivalences earned.

Pure: it reads the catalog and writes nothing. Used by the `recognize` command, the
catalog API, and by `cases` when an application is submitted (its result is
snapshotted on the case, so a later catalog change does not rewrite past decisions).

Readings of the notice (the Chinese text governs):
- Only a certificate that is 合法有效 on the application date counts: issued on or
  before that date, not revoked, not expired, and, where the type has a review period
  (MEM: every 3 years), not overdue for review. One that does not count earns nothing,
  neither exemption nor equivalence.
- Rules are directional (附件序号 1-7); a pair without a row earns no exemption.
- "如无特别规定" (Q&A 二、一): a plan may switch rows off for its province
  (`disabled_rows`).
- Row 4 applies "在向颁发建筑焊工特种作业操作证地区": a plan targeting MOHURD-WELD
  exists only where that province issues it, so the row applies to any such plan.
- Equivalence (§二(一)) belongs to the held certificate, whatever the target; per
  occupation the highest level earned is reported, and the holder may apply for the
  next level up.
"""

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date

from audit.exceptions import DomainError

from .models import EquivalenceRule, QualificationType, RecognitionRule


class UnknownCertificateType(DomainError):
    code = "unknown_certificate_type"


@dataclass(frozen=True)
class HeldFacts:
    """What the engine needs to know of one held certificate."""

    type_code: str
    issue_date: date | None = None
    expiry_date: date | None = None
    review_due_date: date | None = None
    revoked: bool = False
    ref: object = None  # the caller's handle (a HeldCertificate pk), passed through


@dataclass(frozen=True)
class RowMatch:
    row: int
    held_code: str
    exempt: tuple[str, ...]
    source: str
    ref: object = None


@dataclass(frozen=True)
class Equivalence:
    occupation: str
    level: int
    may_apply: int
    held_code: str
    source: str
    ref: object = None


@dataclass(frozen=True)
class NotCounted:
    held_code: str
    reason: str
    ref: object = None


@dataclass
class Recognition:
    target: str
    on: date
    matches: list[RowMatch] = field(default_factory=list)
    equivalences: list[Equivalence] = field(default_factory=list)
    not_counted: list[NotCounted] = field(default_factory=list)

    @property
    def rows(self) -> list[int]:
        return sorted({m.row for m in self.matches})

    @property
    def exempt(self) -> list[str]:
        return sorted({code for m in self.matches for code in m.exempt})

    def as_json(self) -> dict:
        """The stable interface of DESIGN.md (`recognize` command and catalog API)."""
        return {
            "target": self.target,
            "rows": self.rows,
            "exempt": self.exempt,
            "equivalent": [
                {"occupation": e.occupation, "level": e.level, "may_apply": e.may_apply}
                for e in self.equivalences
            ],
        }


def validity_problem(facts: HeldFacts, qtype: QualificationType, on: date) -> str | None:
    """Why `facts` is not 合法有效 on `on`, in Chinese, or None when it is."""
    if facts.revoked:
        return "证书已被吊销或注销"
    if facts.issue_date and facts.issue_date > on:
        return f"发证日期 {facts.issue_date} 晚于申请日期 {on}"
    expiry = facts.expiry_date
    if expiry is None and facts.issue_date:
        expiry = qtype.expiry_for(facts.issue_date)
    if expiry and on > expiry:
        return f"证书已过期（有效期至 {expiry}）"
    if qtype.review_interval_years:
        review_due = facts.review_due_date
        if review_due is None and facts.issue_date:
            review_due = qtype.review_due_for(facts.issue_date)
        if review_due and on > review_due:
            return f"证书逾期未复审（应于 {review_due} 前复审）"
    return None


class CatalogSnapshot:
    """The catalog rows `recognize` reads for one date, read once: every type, and the
    recognition and equivalence rules effective on `on` (three queries)."""

    def __init__(self, on: date) -> None:
        self.on = on
        self.types = {t.code: t for t in QualificationType.objects.all()}
        self.rules = list(
            RecognitionRule.objects.effective_on(on)
            .select_related("held")
            .prefetch_related("exempt")
            .order_by("row")
        )
        # The model's ordering (held code), as the per-call query has it: ties between
        # equal levels keep the first.
        self.equivalences = list(
            EquivalenceRule.objects.effective_on(on).select_related("held", "occupation")
        )


_snapshots: ContextVar[dict[date, CatalogSnapshot] | None] = ContextVar(
    "recognition_snapshots", default=None
)


@contextmanager
def catalog_snapshot() -> Iterator[None]:
    """Within the block, `recognize` reads the catalog once per date instead of three
    queries per call (batch submit evaluates hundreds of cases in one transaction, in
    which the catalog does not change). Outside it, every call reads afresh."""
    token = _snapshots.set({})
    try:
        yield
    finally:
        _snapshots.reset(token)


def _snapshot(on: date) -> CatalogSnapshot | None:
    snapshots = _snapshots.get()
    if snapshots is None:
        return None
    if on not in snapshots:
        snapshots[on] = CatalogSnapshot(on)
    return snapshots[on]


def _types_by_code(
    codes: Iterable[str], snapshot: CatalogSnapshot | None = None
) -> dict[str, QualificationType]:
    wanted = set(codes)
    if snapshot is not None:
        found = {code: snapshot.types[code] for code in wanted if code in snapshot.types}
    else:
        found = {t.code: t for t in QualificationType.objects.filter(code__in=wanted)}
    unknown = sorted(wanted - set(found))
    if unknown:
        raise UnknownCertificateType(f"未知的证书类型代码：{', '.join(unknown)}", unknown=unknown)
    return found


def _rules(snapshot, on: date, target: QualificationType, held_ids: set, disabled_rows):
    if snapshot is None:
        return (
            RecognitionRule.objects.effective_on(on)
            .filter(target=target, held_id__in=held_ids)
            .exclude(row__in=list(disabled_rows))
            .select_related("held")
            .prefetch_related("exempt")
            .order_by("row")
        )
    disabled = set(disabled_rows)
    return [
        rule
        for rule in snapshot.rules
        if rule.target_id == target.pk and rule.held_id in held_ids and rule.row not in disabled
    ]


def _equivalences(snapshot, on: date, held_ids: set):
    if snapshot is None:
        return (
            EquivalenceRule.objects.effective_on(on)
            .filter(held_id__in=held_ids)
            .select_related("held", "occupation")
        )
    return [rule for rule in snapshot.equivalences if rule.held_id in held_ids]


def recognize(
    *,
    held: Iterable[HeldFacts],
    target: str,
    on: date,
    disabled_rows: Collection[int] = (),
) -> Recognition:
    held = list(held)
    snapshot = _snapshot(on)
    types = _types_by_code([target, *(h.type_code for h in held)], snapshot)
    result = Recognition(target=target, on=on)

    counted: list[HeldFacts] = []
    for facts in held:
        problem = validity_problem(facts, types[facts.type_code], on)
        if problem:
            result.not_counted.append(NotCounted(facts.type_code, problem, facts.ref))
        else:
            counted.append(facts)
    if not counted:
        return result

    held_ids = {types[f.type_code].pk for f in counted}
    for rule in _rules(snapshot, on, types[target], held_ids, disabled_rows):
        exempt = tuple(sorted(c.code for c in rule.exempt.all()))
        for facts in counted:
            if facts.type_code == rule.held.code:
                result.matches.append(
                    RowMatch(rule.row, rule.held.code, exempt, rule.source, facts.ref)
                )
                break  # one basis certificate per row is enough

    best: dict[str, Equivalence] = {}
    for rule in _equivalences(snapshot, on, held_ids):
        basis = next(f for f in counted if f.type_code == rule.held.code)
        current = best.get(rule.occupation.code)
        if current is None or rule.level < current.level:
            best[rule.occupation.code] = Equivalence(
                rule.occupation.code,
                rule.level,
                rule.may_apply,
                rule.held.code,
                rule.source,
                basis.ref,
            )
    result.equivalences = [best[code] for code in sorted(best)]
    return result
