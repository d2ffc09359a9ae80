"""Early-warning rules of the quality review (notice §三; Q&A 三: 建立预警信息发送、审核、
反馈机制).

Pure functions: each takes plain data about one session (built from the database by
exams.review) and returns zero or more `Finding`s: (rule, subject, detail, message).
`subject` names what the warning is about within the session (a component and pass
mark, a pair of graders, a score vector, ...); with the session and the rule it is the
key findings are matched to warnings on (at most one open warning per key), so
computing twice gives the same rows, and a later run tells which warnings still fire
(exams.review.session_warnings_generate).

A warning is a prompt for the supervisor, not a verdict: the thresholds below err on
the side of raising a question a human then confirms or dismisses with a note. They
are module constants so that a deployment (or a test) can read what fires when.
"""

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from django.utils import timezone

from .models import WarningRule

# (a) Pass rate far from the plan's other sessions.
# Sessions (this one and the others) with fewer candidates than this say nothing.
PASS_RATE_MIN_CANDIDATES = 10
# Fires when this session's rate is this many percentage points from the others' mean...
PASS_RATE_MAX_POINTS = Decimal(25)
# ...or more than this many standard deviations from it, provided there are at least
# PASS_RATE_SD_MIN_SESSIONS other sessions (fewer give no meaningful deviation) and the
# gap is at least PASS_RATE_SD_MIN_POINTS (a handful of near-identical sessions has a
# tiny deviation that any ordinary session would exceed).
PASS_RATE_MAX_SD = 2
PASS_RATE_SD_MIN_SESSIONS = 3
PASS_RATE_SD_MIN_POINTS = Decimal(10)

# (b) Heaping of final scores at or just above a pass mark: the count in
# [mark, mark + HEAPING_WIDTH] against the count in [mark - HEAPING_WIDTH - 1, mark - 1]
# (both windows hold the same number of whole scores). Fires when the upper window holds
# at least HEAPING_MIN_COUNT scores and at least HEAPING_RATIO times the lower (an
# empty lower window counts as 1). Graders nudging a near miss over the line is the
# pattern this looks for.
HEAPING_WIDTH = Decimal(2)
HEAPING_MIN_COUNT = 5
HEAPING_RATIO = 3

# (c) Grader pairs whose double-blind marks often disagree beyond the component's
# tolerance: fires for a pair with at least DISAGREEMENT_MIN_PAIRS double-marked scripts
# of which more than DISAGREEMENT_MAX_SHARE disagree.
DISAGREEMENT_MIN_PAIRS = 5
DISAGREEMENT_MAX_SHARE = Decimal("0.3")

# (d) Identical score vectors (the same final score on every component sat): with one
# component ties are ordinary, so vectors need IDENTICAL_MIN_COMPONENTS components.
# Fires for a vector shared by at least IDENTICAL_MIN_COUNT candidates, or by at least
# IDENTICAL_SHARE_MIN_COUNT candidates making up IDENTICAL_SHARE of the session.
IDENTICAL_MIN_COMPONENTS = 2
IDENTICAL_MIN_COUNT = 4
IDENTICAL_SHARE_MIN_COUNT = 3
IDENTICAL_SHARE = Decimal("0.15")

# (e) Check-ins after the session's start time (0: any minute late is reported; the
# desk admits latecomers, the supervisor judges them).
LATE_CHECK_IN_GRACE_MINUTES = 0


class Finding(NamedTuple):
    rule: str
    subject: str
    detail: dict
    message: str


@dataclass(frozen=True)
class SessionRate:
    """Another session of the same plan: its code, candidates with results, passes."""

    code: str
    candidates: int
    passed: int


@dataclass(frozen=True)
class ComponentMarks:
    """A component sat in the session with the pass marks certificates set on it."""

    code: str
    name: str
    pass_marks: tuple[Decimal, ...] = ()


@dataclass(frozen=True)
class DoubleMark:
    """The two blind marks of one script (booking and component)."""

    ticket: str
    component: str
    first_grader: str
    second_grader: str
    first: Decimal
    second: Decimal
    tolerance: Decimal


@dataclass(frozen=True)
class CandidateFacts:
    """One checked-in candidate: ticket, check-in time, final scores by component code
    (exempt components absent), and whether at least one certificate was earned."""

    ticket: str
    checked_in_at: datetime | None = None
    scores: dict[str, Decimal] = field(default_factory=dict)
    passed: bool | None = None


@dataclass(frozen=True)
class SessionFacts:
    code: str
    starts_at: datetime
    components: tuple[ComponentMarks, ...] = ()
    candidates: tuple[CandidateFacts, ...] = ()
    double_marks: tuple[DoubleMark, ...] = ()
    other_sessions: tuple[SessionRate, ...] = ()


def _pct(part: int, whole: int) -> Decimal:
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


def _num(value: Decimal) -> str:
    """A score as people write it: 80 rather than 80.0, 80.5 as is."""
    value = Decimal(value)
    return str(value.quantize(Decimal(1)) if value == value.to_integral_value() else value)


def pass_rate_warnings(
    *, candidates: int, passed: int, others: Iterable[SessionRate]
) -> list[Finding]:
    """(a) This session's pass rate against the mean of the plan's other sessions with
    at least PASS_RATE_MIN_CANDIDATES candidates."""
    if candidates < PASS_RATE_MIN_CANDIDATES:
        return []
    peers = [o for o in others if o.candidates >= PASS_RATE_MIN_CANDIDATES]
    if not peers:
        return []
    rate = _pct(passed, candidates)
    rates = [Decimal(o.passed) * 100 / Decimal(o.candidates) for o in peers]
    mean = sum(rates) / len(rates)
    gap = abs(rate - mean)
    sd = None
    if len(rates) >= PASS_RATE_SD_MIN_SESSIONS:
        sd = Decimal(math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)))
    by_points = gap > PASS_RATE_MAX_POINTS
    by_sd = sd is not None and gap >= PASS_RATE_SD_MIN_POINTS and gap > PASS_RATE_MAX_SD * sd
    if not (by_points or by_sd):
        return []
    mean_q = mean.quantize(Decimal("0.1"))
    direction = "高于" if rate > mean else "低于"
    detail = {
        "candidates": candidates,
        "passed": passed,
        "rate": str(rate),
        "mean": str(mean_q),
        "sd": str(sd.quantize(Decimal("0.1"))) if sd is not None else None,
        "gap": str(gap.quantize(Decimal("0.1"))),
        "sessions": [o.code for o in peers],
    }
    message = (
        f"本场次通过率 {rate}%（{passed}/{candidates}），{direction}本计划其他 "
        f"{len(peers)} 个场次的平均通过率 {mean_q}%，相差 {detail['gap']} 个百分点"
    )
    if sd is not None:
        message += f"（标准差 {detail['sd']}）"
    return [Finding(WarningRule.PASS_RATE, "session", detail, message)]


def heaping_warnings(
    *, components: Iterable[ComponentMarks], scores: dict[str, list[Decimal]]
) -> list[Finding]:
    """(b) For each component and each of its pass marks: final scores heaped in
    [mark, mark + HEAPING_WIDTH] against [mark - HEAPING_WIDTH - 1, mark - 1]."""
    findings = []
    for component in components:
        values = [Decimal(v) for v in scores.get(component.code, [])]
        for mark in sorted(set(component.pass_marks)):
            mark = Decimal(mark)
            at = sum(1 for v in values if mark <= v <= mark + HEAPING_WIDTH)
            below = sum(1 for v in values if mark - HEAPING_WIDTH - 1 <= v <= mark - 1)
            if at < HEAPING_MIN_COUNT or at < HEAPING_RATIO * max(below, 1):
                continue
            upper = f"{_num(mark)}–{_num(mark + HEAPING_WIDTH)}"
            lower = f"{_num(mark - HEAPING_WIDTH - 1)}–{_num(mark - 1)}"
            detail = {
                "component": component.code,
                "pass_mark": str(mark),
                "at_or_just_above": at,
                "just_below": below,
                "total": len(values),
                "upper_window": upper,
                "lower_window": lower,
            }
            message = (
                f"{component.name}成绩在合格线 {_num(mark)} 分处堆积：{upper} 分 {at} 人，"
                f"{lower} 分仅 {below} 人（共 {len(values)} 人）"
            )
            findings.append(
                Finding(WarningRule.HEAPING, f"{component.code}@{_num(mark)}", detail, message)
            )
    return findings


def grader_disagreement_warnings(
    *, double_marks: Iterable[DoubleMark], component_names: dict[str, str] | None = None
) -> list[Finding]:
    """(c) Per component and unordered pair of graders: the share of double-marked
    scripts whose two marks differ by more than the component's tolerance."""
    names = component_names or {}
    pairs: dict[tuple[str, str, str], list[DoubleMark]] = defaultdict(list)
    for dm in double_marks:
        a, b = sorted((dm.first_grader, dm.second_grader))
        pairs[(dm.component, a, b)].append(dm)
    findings = []
    for (component, a, b), marks in sorted(pairs.items()):
        apart = [dm for dm in marks if abs(Decimal(dm.first) - Decimal(dm.second)) > dm.tolerance]
        if len(marks) < DISAGREEMENT_MIN_PAIRS:
            continue
        share = Decimal(len(apart)) / Decimal(len(marks))
        if share <= DISAGREEMENT_MAX_SHARE:
            continue
        detail = {
            "component": component,
            "graders": [a, b],
            "scripts": len(marks),
            "beyond_tolerance": len(apart),
            "share": str(_pct(len(apart), len(marks))),
            "tolerance": str(marks[0].tolerance),
            "tickets": sorted(dm.ticket for dm in apart),
        }
        message = (
            f"{names.get(component, component)}考评员 {a} 与 {b} 双评分歧频繁："
            f"{len(marks)} 份中 {len(apart)} 份两评分差超过允许误差 "
            f"{_num(marks[0].tolerance)} 分（{detail['share']}%）"
        )
        findings.append(
            Finding(WarningRule.GRADER_DISAGREEMENT, f"{component}:{a}+{b}", detail, message)
        )
    return findings


def identical_scores_warnings(
    *, candidates: Iterable[CandidateFacts], component_names: dict[str, str] | None = None
) -> list[Finding]:
    """(d) Groups of candidates with the same final score on every component sat."""
    names = component_names or {}
    everyone = list(candidates)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for c in everyone:
        if len(c.scores) >= IDENTICAL_MIN_COMPONENTS:
            vector = tuple(sorted((code, _num(s)) for code, s in c.scores.items()))
            groups[vector].append(c.ticket)
    total = len(everyone)
    findings = []
    for vector, tickets in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        n = len(tickets)
        by_share = n >= IDENTICAL_SHARE_MIN_COUNT and Decimal(n) >= IDENTICAL_SHARE * total
        if n < IDENTICAL_MIN_COUNT and not by_share:
            continue
        subject = ",".join(f"{code}={score}" for code, score in vector)
        shown = "，".join(f"{names.get(code, code)} {score}" for code, score in vector)
        detail = {
            "scores": dict(vector),
            "count": n,
            "total": total,
            "tickets": sorted(tickets),
        }
        message = f"{n} 名考生（共 {total} 人）各科成绩完全相同：{shown}"
        findings.append(Finding(WarningRule.IDENTICAL_SCORES, subject[:128], detail, message))
    return findings


def late_check_in_warnings(
    *, starts_at: datetime, check_ins: Iterable[tuple[str, datetime | None]]
) -> list[Finding]:
    """(e) Candidates checked in after the start time (plus the grace minutes)."""
    late = []
    for ticket, at in check_ins:
        if at is None:
            continue
        minutes = (at - starts_at).total_seconds() / 60
        if minutes > LATE_CHECK_IN_GRACE_MINUTES:
            late.append((ticket, at, math.ceil(minutes)))
    if not late:
        return []
    late.sort()
    detail = {
        "starts_at": starts_at.isoformat(),
        "late": [{"ticket": t, "checked_in_at": at.isoformat(), "minutes": m} for t, at, m in late],
    }
    local = timezone.localtime(starts_at) if timezone.is_aware(starts_at) else starts_at
    listed = "、".join(f"{t}（迟 {m} 分钟）" for t, _, m in late)
    message = f"{len(late)} 名考生在开考时间 {local:%H:%M} 之后签到：{listed}"
    return [Finding(WarningRule.LATE_CHECK_IN, "session", detail, message)]


def session_warnings(facts: SessionFacts) -> list[Finding]:
    """Every rule over one session's facts, in rule order."""
    names = {c.code: c.name for c in facts.components}
    scored = [c for c in facts.candidates if c.passed is not None]
    scores: dict[str, list[Decimal]] = defaultdict(list)
    for c in facts.candidates:
        for code, value in c.scores.items():
            scores[code].append(value)
    return [
        *pass_rate_warnings(
            candidates=len(scored),
            passed=sum(1 for c in scored if c.passed),
            others=facts.other_sessions,
        ),
        *heaping_warnings(components=facts.components, scores=scores),
        *grader_disagreement_warnings(double_marks=facts.double_marks, component_names=names),
        *identical_scores_warnings(candidates=facts.candidates, component_names=names),
        *late_check_in_warnings(
            starts_at=facts.starts_at,
            check_ins=[(c.ticket, c.checked_in_at) for c in facts.candidates],
        ),
    ]
