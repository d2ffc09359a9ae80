"""Demo data for the registration stage: accounts, plans, candidates with held
certificates, and cases driven through eligibility review with the real services.

Later stages (exams, issuance) take the eligible cases from here onwards; the `demo`
command (issuance) runs every stage in order.
"""

import io
import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count
from django.utils import timezone
from PIL import Image
from stdnum.cn import ric

from catalog.models import QualificationType

from . import plans as plan_services
from . import services
from .exceptions import EligibilityError
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


@dataclass
class DemoResult:
    candidates: int = 0
    plans: list[EvaluationPlan] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)


def ensure_accounts() -> list[tuple[str, str, str]]:
    """Create the demo accounts if missing; return (username, password, role) rows."""
    user_model = get_user_model()
    rows = []
    for username, group, label in ACCOUNTS:
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model(username=username, is_staff=group is None, is_superuser=group is None)
            user.set_password(DEMO_PASSWORD)
            user.save()
        if group:
            user.groups.add(Group.objects.get(name=group))
        rows.append((username, DEMO_PASSWORD, label))
    return rows


def _photo(rng: random.Random) -> SimpleUploadedFile:
    image = Image.new("RGB", (120, 160), (rng.randint(180, 230), rng.randint(190, 235), 245))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return SimpleUploadedFile("photo.png", buffer.getvalue(), content_type="image/png")


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


def _held_number(
    qtype: QualificationType, candidate: Candidate, rng: random.Random, year: int
) -> str:
    if qtype.number_is_holder_id:
        return "T" + candidate.id_number
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


def build(*, candidates: int, seed: int, progress=None) -> DemoResult:
    """Register `candidates` candidates across the demo plans and drive their cases
    through review: most end eligible, the rest spread over every other state."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    today = timezone.localdate()
    ensure_accounts()
    actor = get_user_model().objects.get(username="coordinator")
    plans = ensure_plans(today, actor)
    taken = set(Candidate.objects.values_list("id_number", flat=True))
    used_numbers = set(HeldCertificate.objects.values_list("number", flat=True))
    result = DemoResult(plans=plans)

    for index in range(candidates):
        plan = plans[index % len(plans)]
        sex = "M" if rng.random() < 0.85 else "F"
        birth = today - timedelta(days=rng.randint(21 * 365, 48 * 365))
        candidate = services.candidate_create(
            actor=actor,
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
        if held_code:
            qtype = QualificationType.objects.get(code=held_code)
            roll = rng.random()
            # A few certificates do not count: expired, revoked, or left unverified.
            years_ago = qtype.validity_years + 1 if roll < 0.05 else rng.randint(0, 1)
            issue = today - timedelta(days=365 * years_ago + rng.randint(10, 200))
            number = _held_number(qtype, candidate, rng, issue.year)
            while number in used_numbers:
                number = _held_number(qtype, candidate, rng, issue.year)
            used_numbers.add(number)
            held = services.held_certificate_create(
                actor=actor,
                candidate=candidate,
                qualification_type=qtype,
                number=number,
                issuer_name=ISSUERS[qtype.department.code],
                issue_date=issue,
                revoked_on=today - timedelta(days=5) if 0.05 <= roll < 0.08 else None,
            )
            if roll > 0.12:
                method = Verification.REGISTRY if roll > 0.3 else Verification.COORDINATOR
                services.held_certificate_verify(
                    actor=actor,
                    held=held,
                    verification=method,
                    note="" if method == Verification.REGISTRY else "已核对证书原件",
                )
        result.case_ids.append(_drive(actor, candidate, plan, rng, today))
        result.candidates += 1
        if progress:
            progress(index + 1, candidates)
    return result


def _drive(actor, candidate, plan, rng: random.Random, today: date) -> int:
    """Take the case through review; where review refuses, the case stays where a real
    coordinator would leave it (returned for the missing verification)."""
    case = services.case_create(actor=actor, candidate=candidate, plan=plan)
    _take_through_review(actor, case, rng, today)
    return case.pk


def _take_through_review(actor, case, rng: random.Random, today: date) -> None:
    roll = rng.random()
    if roll < 0.06:
        return  # still a draft
    if roll < 0.09:
        services.case_withdraw(actor=actor, case=case, reason="考生本人申请撤回")
        return
    try:
        case = services.case_submit(actor=actor, case=case, on=today)
    except EligibilityError as exc:
        case.refresh_from_db()
        services.case_withdraw(actor=actor, case=case, reason="不符合报名条件：" + exc.message)
        return
    if roll < 0.20:
        return  # waiting in the review queue
    if roll < 0.26:
        services.case_return_for_correction(
            actor=actor, case=case, reason="照片不符合要求，请重新上传近期免冠照片"
        )
        return
    if roll < 0.29:
        services.case_reject(actor=actor, case=case, reason="提供的从业年限证明与社保记录不符")
        return
    try:
        services.case_approve(actor=actor, case=case)
    except EligibilityError as exc:
        services.case_return_for_correction(actor=actor, case=case, reason=exc.message)


def case_counts(case_ids: list[int]) -> dict[str, int]:
    counts = dict(
        Case.objects.filter(pk__in=case_ids)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {status: counts[status] for status in CaseStatus.values if counts.get(status)}
