"""Demo data for the registration stage: accounts, plans, candidates with held
certificates, and cases driven through eligibility review with the real services.

Later stages (exams, issuance) take the eligible cases from here onwards; the `demo`
command (issuance) runs every stage in order.
"""

import functools
import io
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count
from django.utils import timezone
from PIL import Image
from stdnum.cn import ric

from catalog.models import QualificationType

from . import plans as plan_services
from . import services
from .models import Candidate, Case, CaseStatus, EvaluationPlan, HeldCertificate, Verification

DEMO_PASSWORD = "demo-2026"  # noqa: S105 - printed for the demo accounts, development only
ACCOUNTS = [
    # username, role group, description
    ("admin", None, "系统管理员（超级用户）"),
    ("coordinator", "coordinator", "考务人员"),
    ("grader", "grader", "考评员"),
    ("grader2", "grader", "考评员（双评二评）"),
    ("chief", "grader", "主考评员（仲裁）"),
    ("reviewer", "reviewer", "质量督导员"),
    ("officer", "issuer_officer", "发证人员（山西省应急管理厅）"),
    ("officer-mohurd", "issuer_officer", "发证人员（太原市住房和城乡建设局）"),
    ("officer-samr", "issuer_officer", "发证人员（山西省市场监督管理局）"),
    ("officer-skill", "issuer_officer", "发证人员（职业技能等级认定机构）"),
]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余"
    "于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金贾夏韦傅方邹熊孟秦邱侯江尹薛闫段雷龙"
    "黎史陶贺毛郝顾龚邵万覃武钱戴严欧阳司马上官"
)
# The last seven are rare characters that certificates must still render.
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文海波鹏辉宇浩然晨"
    "旭东阳峰飞垚旻犇玥珺璟骉"
)
# Regions: six-digit administrative codes known to python-stdnum's register
# (大同城区、长治城区、大同矿区、石家庄长安区、石家庄桥西区、郑州中原区、郑州二七区、北京朝阳区).
REGIONS = ["140202", "140402", "140203", "130102", "130104", "410102", "410103", "110105"]

PLANS = [
    # name, qualification type, occupation, level
    ("2026年第四期 低压电工作业 一试多证联合评价", "MEM-ELEC-LV", "6-31-01-03", 5),
    ("2026年第四期 建筑电工 一试多证联合评价（四级）", "MOHURD-ELEC", "6-31-01-03", 4),
    ("2026年第四期 熔化焊接与热切割作业 一试多证联合评价", "MEM-WELD-FC", "6-18-02-04", 5),
    ("2026年第四期 特种设备焊接操作 一试多证联合评价（四级）", "SAMR-WELD", "6-18-02-04", 4),
]
# What a candidate of each plan typically already holds (basis for row exemptions or
# for the equivalence that opens level 4).
TYPICAL_HELD = {
    "MEM-ELEC-LV": ["MOHURD-ELEC", None, None],
    "MOHURD-ELEC": ["MEM-ELEC-LV", "MEM-ELEC-HV", "MEM-ELEC-LV"],
    "MEM-WELD-FC": ["SAMR-WELD", "MOHURD-WELD", None],
    "SAMR-WELD": ["MEM-WELD-FC", "MEM-WELD-FC", "MOHURD-WELD"],
}
ISSUERS = {
    "mem": "山西省应急管理厅",
    "mohurd": "山西省住房和城乡建设厅",
    "samr": "山西省市场监督管理局",
}


class Stages:
    """Wall time per stage of the demo, in seconds: `with stages("marking"):` adds the
    block's time to that stage (a stage may be entered once per plan). Stages listed in
    `names` come first, in that order; others follow in the order first entered."""

    def __init__(self, names=()) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(names, 0.0)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


@dataclass
class DemoResult:
    candidates: int = 0
    plans: list[EvaluationPlan] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)


def ensure_accounts() -> list[tuple[str, str, str]]:
    """Create the demo accounts if missing; return (username, password, role) rows."""
    user_model = get_user_model()
    rows = []
    hashed = None
    for username, group, label in ACCOUNTS:
        user = user_model.objects.filter(username=username).first()
        if user is None:
            # One hash for the shared demo password: each costs a second or more of
            # PBKDF2 by design, and these accounts are for development only.
            hashed = hashed or make_password(DEMO_PASSWORD)
            user = user_model(username=username, is_staff=group is None, is_superuser=group is None)
            user.password = hashed
            user.save()
        if group:
            user.groups.add(Group.objects.get(name=group))
        rows.append((username, DEMO_PASSWORD, label))
    return rows


def _photo(rng: random.Random) -> SimpleUploadedFile:
    color = (rng.randint(180, 230), rng.randint(190, 235), 245)
    return SimpleUploadedFile("photo.png", _png(color), content_type="image/png")


@functools.cache
def _png(color: tuple[int, int, int]) -> bytes:
    # A few thousand colours in all: thousands of candidates share each image's bytes
    # (every one is still stored as its own photo by the registration service).
    buffer = io.BytesIO()
    Image.new("RGB", (120, 160), color).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _name(rng: random.Random) -> str:
    surname = (
        rng.choice(["欧阳", "司马", "上官"]) if rng.random() < 0.03 else rng.choice(SURNAMES[:-6])
    )
    return surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2, 2])))


def _id_number(rng: random.Random, birth: date, sex: str, taken: set[str]) -> str:
    while True:
        order = rng.randrange(0, 500) * 2 + (1 if sex == "M" else 0)
        first17 = f"{rng.choice(REGIONS)}{birth:%Y%m%d}{order:03d}"
        number = first17 + ric.calc_check_digit(first17 + "0")
        if number not in taken:
            taken.add(number)
            return number


def _held_number(qtype: QualificationType, id_number: str, rng: random.Random, year: int) -> str:
    if qtype.number_is_holder_id:
        return "T" + id_number
    if qtype.code == "MOHURD-ELEC":
        return f"晋A01{year}{rng.randrange(10**6):06d}"
    if qtype.code == "MOHURD-WELD":
        return f"晋A02{year}{rng.randrange(10**6):06d}"
    return f"TS14{year}{rng.randrange(10**6):06d}"


def ensure_plans(today: date, actor) -> list[EvaluationPlan]:
    """The demo plans, open for registration, practical exams double-marked."""
    plans = []
    for name, code, occupation, level in PLANS:
        plan = EvaluationPlan.objects.filter(name=name).first()
        if plan is None:
            plan = plan_services.plan_create(
                actor=actor,
                name=name,
                qualification_type=code,
                occupation=occupation,
                level=level,
                province="14",
                exam_date=today + timedelta(days=30),
                double_marked=("practical",),
            )
            plan = plan_services.plan_open(actor=actor, plan=plan)
        plans.append(plan)
    return plans


# Candidates registered (and their cases reviewed) per batch: large enough that the
# per-batch queries vanish, small enough that a batch's transaction stays short.
BATCH = 500


def build(*, candidates: int, seed: int, progress=None, batch: int = BATCH) -> DemoResult:
    """Register `candidates` candidates across the demo plans and drive their cases
    through review: most end eligible, the rest spread over every other state. Runs the
    batch services (bulk registration, the review queue's batch actions) BATCH
    candidates at a time."""
    result = DemoResult()
    for part in build_in_groups(
        candidates=candidates, seed=seed, group=candidates, progress=progress, batch=batch
    ):
        result.plans = part.plans
        result.case_ids += part.case_ids
        result.candidates += part.candidates
    return result


def build_in_groups(
    *, candidates: int, seed: int, group: int, progress=None, batch: int = BATCH
) -> Iterator[DemoResult]:
    """`build`, yielding after every `group` candidates (a multiple of `batch` keeps the
    data the same as one `build`) the result of that group alone, so that the caller
    can take it through the later stages before the next group is registered (the
    demo command does: the workers render the first certificates while later groups
    register)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    today = timezone.localdate()
    ensure_accounts()
    actor = get_user_model().objects.get(username="coordinator")
    plans = ensure_plans(today, actor)
    qtypes = {q.code: q for q in QualificationType.objects.select_related("department")}
    taken = set(Candidate.objects.values_list("id_number", flat=True))
    used_numbers = set(HeldCertificate.objects.values_list("number", flat=True))
    registered_so_far = 0
    for first in range(0, candidates, max(group, 1)):
        result = DemoResult(plans=plans)
        for start in range(first, min(first + group, candidates), batch):
            indexes = range(start, min(start + batch, first + group, candidates))
            registrations, rolls = [], []
            for index in indexes:
                plan = plans[index % len(plans)]
                registrations.append(_registration(rng, plan, qtypes, today, taken, used_numbers))
                rolls.append(rng.random())
            registered = services.candidates_register(actor=actor, registrations=registrations)
            by_plan: dict[int, list[Candidate]] = {}
            for index, candidate in zip(indexes, registered, strict=True):
                by_plan.setdefault(index % len(plans), []).append(candidate)
            case_of = {}
            for plan_index, members in by_plan.items():
                opened = services.cases_create(
                    actor=actor, plan=plans[plan_index], candidates=members
                )
                case_of.update({case.candidate_id: case.pk for case in opened})
            case_ids = [case_of[candidate.pk] for candidate in registered]
            _take_through_review(actor, dict(zip(case_ids, rolls, strict=True)), today)
            result.case_ids += case_ids
            result.candidates += len(case_ids)
            registered_so_far += len(case_ids)
            if progress:
                progress(registered_so_far, candidates)
        yield result


def _registration(rng, plan, qtypes, today: date, taken: set, used_numbers: set):
    """One candidate of `plan` with a photo, work years and, usually, a certificate held
    (a few expired, revoked or left unverified)."""
    sex = "M" if rng.random() < 0.85 else "F"
    birth = today - timedelta(days=rng.randint(21 * 365, 48 * 365))
    registration = services.Registration(
        id_number=_id_number(rng, birth, sex, taken),
        name=_name(rng),
        phone=f"1{rng.choice('3589')}{rng.randrange(10**9):09d}",
        education=rng.choice(["junior", "senior", "senior", "college", "bachelor"]),
        photo=_photo(rng),
        work_years={plan.occupation.code: rng.choice(["1", "2.5", "4", "6", "10"])},
    )
    held_code = rng.choice(TYPICAL_HELD[plan.qualification_type.code])
    if plan.level < 5 and held_code is None:
        held_code = TYPICAL_HELD[plan.qualification_type.code][0]
    if not held_code:
        return registration
    qtype = qtypes[held_code]
    roll = rng.random()
    # A few certificates do not count: expired, revoked, or left unverified.
    years_ago = qtype.validity_years + 1 if roll < 0.05 else rng.randint(0, 1)
    issue = today - timedelta(days=365 * years_ago + rng.randint(10, 200))
    number = _held_number(qtype, registration.id_number, rng, issue.year)
    while number in used_numbers:
        number = _held_number(qtype, registration.id_number, rng, issue.year)
    used_numbers.add(number)
    held = {
        "qualification_type": qtype,
        "number": number,
        "issuer_name": ISSUERS[qtype.department.code],
        "issue_date": issue,
        "revoked_on": today - timedelta(days=5) if 0.05 <= roll < 0.08 else None,
    }
    if roll > 0.12:
        method = Verification.REGISTRY if roll > 0.3 else Verification.COORDINATOR
        held["verification"] = method
        held["verification_note"] = "" if method == Verification.REGISTRY else "已核对证书原件"
    registration.held.append(held)
    return registration


def _take_through_review(actor, rolls: dict[int, float], today: date) -> None:
    """Take each case (id -> its roll) through review with the queue's batch actions;
    where review refuses, the case stays where a real coordinator would leave it
    (withdrawn when not eligible, returned for the missing verification)."""
    withdraw = {pk: "考生本人申请撤回" for pk, roll in rolls.items() if 0.06 <= roll < 0.09}
    submit = [pk for pk, roll in rolls.items() if roll >= 0.09]
    submitted = services.cases_submit(actor=actor, cases=submit, on=today) if submit else None
    if submitted:
        for pk, problems in submitted.refused.items():
            withdraw[pk] = "不符合报名条件：" + "；".join(problems)
    if withdraw:
        services.cases_withdraw(actor=actor, reasons=withdraw)
    if not submitted:
        return
    ids = {case.pk for case in submitted.submitted}
    # 0.09-0.20 stay in the review queue.
    returned = {
        pk: "照片不符合要求，请重新上传近期免冠照片" for pk in ids if 0.20 <= rolls[pk] < 0.26
    }
    rejected = {pk: "提供的从业年限证明与社保记录不符" for pk in ids if 0.26 <= rolls[pk] < 0.29}
    approve = sorted(pk for pk in ids if rolls[pk] >= 0.29)
    if approve:
        approved = services.cases_approve(actor=actor, cases=approve)
        returned.update({pk: "；".join(p) for pk, p in approved.refused.items()})
    if returned:
        services.cases_return_for_correction(actor=actor, reasons=returned)
    if rejected:
        services.cases_reject(actor=actor, reasons=rejected)


def case_counts(case_ids: list[int]) -> dict[str, int]:
    counts = dict(
        Case.objects.filter(pk__in=case_ids)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {status: counts[status] for status in CaseStatus.values if counts.get(status)}
