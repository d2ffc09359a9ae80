"""Eligibility of a case: the checks made at submit, as a pure read.

Used by `case_submit` (which refuses when there are problems and snapshots the rest)
and by the case page, which shows the same answer before the coordinator submits.
"""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from catalog.recognition import HeldFacts, NotCounted, Recognition, recognize

from .models import Case, Education, HeldCertificate, Verification
from .retirement import age_on, retirement_date
from .validators import parse_id_number

MIN_AGE = 18


@dataclass
class Eligibility:
    on: date
    problems: list[str] = field(default_factory=list)
    recognition: Recognition | None = None
    not_counted: list[NotCounted] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def held_facts(held: HeldCertificate, on: date) -> HeldFacts:
    return HeldFacts(
        type_code=held.qualification_type.code,
        issue_date=held.issue_date,
        expiry_date=held.expiry_date,
        review_due_date=held.review_due_date,
        revoked=held.revoked_on is not None and held.revoked_on <= on,
        ref=held.pk,
    )


def evaluate(case: Case, on: date) -> Eligibility:
    """Every reason `case` may not be submitted on `on`, plus what its certificates earn."""
    result = Eligibility(on=on)
    candidate, plan = case.candidate, case.plan
    problems = result.problems

    try:
        parse_id_number(candidate.id_number)
    except Exception as exc:  # a ValidationError with the Chinese reason
        problems.append(" ".join(getattr(exc, "messages", [str(exc)])))

    age = age_on(candidate.birth_date, plan.exam_date)
    if age < MIN_AGE:
        problems.append(f"考试日期 {plan.exam_date} 时未满{MIN_AGE}周岁（{age}岁）")
    retires = retirement_date(candidate.birth_date, candidate.sex, plan.female_retirement_age)
    if plan.exam_date >= retires:
        problems.append(f"考试日期 {plan.exam_date} 时已达到法定退休年龄（{retires} 退休）")
    if plan.require_photo and not candidate.photo:
        problems.append("未上传照片")
    if plan.min_education and Education.rank(candidate.education) < Education.rank(
        plan.min_education
    ):
        problems.append(
            f"文化程度{candidate.get_education_display()}低于本计划要求的"
            f"{Education(plan.min_education).label}"
        )
    years = next(
        (w.years for w in candidate.work_experience.all() if w.occupation_id == plan.occupation_id),
        Decimal(0),
    )
    if years < plan.min_work_years:
        problems.append(
            f"{plan.occupation.name}从业年限 {years} 年，不足本计划要求的 {plan.min_work_years} 年"
        )

    counted = []
    for held in candidate.held_certificates.all():
        if held.verification == Verification.REJECTED:
            note = f"：{held.verification_note}" if held.verification_note else ""
            result.not_counted.append(
                NotCounted(held.qualification_type.code, f"核验未通过{note}", held.pk)
            )
        else:
            counted.append(held_facts(held, on))
    recognition = recognize(
        held=counted,
        target=plan.qualification_type.code,
        on=on,
        disabled_rows=[rule.row for rule in plan.disabled_rules.all()],
    )
    result.recognition = recognition
    result.not_counted.extend(recognition.not_counted)

    if plan.level < 5:
        equivalence = next(
            (e for e in recognition.equivalences if e.occupation == plan.occupation.code), None
        )
        by_equivalence = equivalence is not None and equivalence.may_apply <= plan.level
        by_years = plan.alternative_work_years is not None and years >= plan.alternative_work_years
        if not (by_equivalence or by_years):
            held_text = (
                f"现比照认定为{equivalence.level}级，可申报{equivalence.may_apply}级"
                if equivalence
                else "未持有可比照认定的有效证书"
            )
            problems.append(
                f"申报{plan.occupation.name}{plan.level}级须达到{plan.level + 1}级水平：{held_text}"
            )
    return result
