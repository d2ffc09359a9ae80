from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from audit.masking import mask_id_number, mask_name
from catalog.models import Component, Occupation, QualificationType, RecognitionRule

from .roles import Role, has_role
from .validators import validate_photo


class Province(models.TextChoices):
    """GB/T 2260 codes; the 2-digit code also appears in skill-level certificate numbers."""

    BJ = "11", "北京市"
    TJ = "12", "天津市"
    HE = "13", "河北省"
    SX = "14", "山西省"
    NM = "15", "内蒙古自治区"
    LN = "21", "辽宁省"
    JL = "22", "吉林省"
    HL = "23", "黑龙江省"
    SH = "31", "上海市"
    JS = "32", "江苏省"
    ZJ = "33", "浙江省"
    AH = "34", "安徽省"
    FJ = "35", "福建省"
    JX = "36", "江西省"
    SD = "37", "山东省"
    HA = "41", "河南省"
    HB = "42", "湖北省"
    HN = "43", "湖南省"
    GD = "44", "广东省"
    GX = "45", "广西壮族自治区"
    HI = "46", "海南省"
    CQ = "50", "重庆市"
    SC = "51", "四川省"
    GZ = "52", "贵州省"
    YN = "53", "云南省"
    XZ = "54", "西藏自治区"
    SN = "61", "陕西省"
    GS = "62", "甘肃省"
    QH = "63", "青海省"
    NX = "64", "宁夏回族自治区"
    XJ = "65", "新疆维吾尔自治区"


class Sex(models.TextChoices):
    MALE = "M", _("男")
    FEMALE = "F", _("女")


class Education(models.TextChoices):
    """Ordered from lowest to highest; `rank` compares them."""

    PRIMARY = "primary", _("小学")
    JUNIOR = "junior", _("初中")
    SENIOR = "senior", _("高中/中专/技校")
    COLLEGE = "college", _("大专")
    BACHELOR = "bachelor", _("本科")
    POSTGRADUATE = "postgraduate", _("研究生")

    @classmethod
    def rank(cls, value: str) -> int:
        return list(cls.values).index(value)


phone_validator = RegexValidator(
    r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$", "请输入11位手机号码或带区号的固定电话"
)


class Candidate(models.Model):
    id_number = models.CharField("身份证号码", max_length=18, unique=True)
    name = models.CharField("姓名", max_length=64)
    sex = models.CharField("性别", max_length=1, choices=Sex.choices)
    birth_date = models.DateField("出生日期")
    phone = models.CharField("联系电话", max_length=20, validators=[phone_validator])
    education = models.CharField("文化程度", max_length=16, choices=Education.choices)
    photo = models.ImageField(
        "照片", upload_to="photos/%Y/%m/", blank=True, validators=[validate_photo]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField("登记时间", auto_now_add=True)
    updated_at = models.DateTimeField("更新时间", auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "考生"
        verbose_name_plural = "考生"
        indexes = [models.Index(fields=["name"]), models.Index(fields=["phone"])]

    def __str__(self) -> str:
        return f"{self.name}（{self.masked_id_number}）"

    def get_absolute_url(self) -> str:
        return reverse("cases:candidate-detail", args=[self.pk])

    @property
    def masked_id_number(self) -> str:
        return mask_id_number(self.id_number)

    @property
    def masked_name(self) -> str:
        return mask_name(self.name)


class WorkExperience(models.Model):
    candidate = models.ForeignKey(
        Candidate, related_name="work_experience", on_delete=models.CASCADE
    )
    occupation = models.ForeignKey(Occupation, verbose_name="职业", on_delete=models.PROTECT)
    years = models.DecimalField(
        "从业年限", max_digits=4, decimal_places=1, validators=[MinValueValidator(Decimal(0))]
    )

    class Meta:
        verbose_name = "从业经历"
        verbose_name_plural = "从业经历"
        constraints = [
            models.UniqueConstraint(
                fields=["candidate", "occupation"], name="one_row_per_occupation"
            ),
            models.CheckConstraint(condition=Q(years__gte=0), name="work_years_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.occupation.name} {self.years} 年"


class Verification(models.TextChoices):
    UNVERIFIED = "unverified", _("未核验")
    REGISTRY = "registry", _("已在证书库核验")
    COORDINATOR = "coordinator", _("考务人员人工核验")
    REJECTED = "rejected", _("核验未通过")


class HeldCertificate(models.Model):
    """A qualification certificate a candidate already holds (basis for exemptions)."""

    candidate = models.ForeignKey(
        Candidate, related_name="held_certificates", on_delete=models.CASCADE
    )
    qualification_type = models.ForeignKey(
        QualificationType, verbose_name="证书类型", on_delete=models.PROTECT
    )
    number = models.CharField("证书编号", max_length=32)
    issuer_name = models.CharField("发证机关", max_length=128)
    issue_date = models.DateField("发证日期")
    expiry_date = models.DateField("有效期至")
    review_due_date = models.DateField("下次复审日期", null=True, blank=True)
    revoked_on = models.DateField("吊销/注销日期", null=True, blank=True)
    verification = models.CharField(
        "核验状态", max_length=16, choices=Verification.choices, default=Verification.UNVERIFIED
    )
    verification_note = models.TextField("核验说明", blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    verified_at = models.DateTimeField("核验时间", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["candidate", "issue_date"]
        verbose_name = "已持证书"
        verbose_name_plural = "已持证书"
        constraints = [
            models.UniqueConstraint(
                fields=["qualification_type", "number"], name="held_certificate_number_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.qualification_type.code} {self.masked_number}"

    def clean(self):
        if self.issue_date and self.expiry_date and self.expiry_date < self.issue_date:
            raise ValidationError({"expiry_date": "有效期至不能早于发证日期"})

    @property
    def is_verified(self) -> bool:
        return self.verification in {Verification.REGISTRY, Verification.COORDINATOR}

    @property
    def masked_number(self) -> str:
        """The number for display: MEM numbers embed the holder's ID, which is masked."""
        if self.qualification_type.number_is_holder_id and len(self.number) > 1:
            return self.number[0] + mask_id_number(self.number[1:])
        return self.number


def _is_coordinator(instance, user) -> bool:
    return has_role(user, Role.COORDINATOR)


class PlanStatus(models.TextChoices):
    DRAFT = "draft", _("草稿")
    OPEN = "open", _("报名中")
    CLOSED = "closed", _("已截止")
    ARCHIVED = "archived", _("已归档")


class EvaluationPlan(ConcurrentTransitionMixin, models.Model):
    """What a candidate applies to: a qualification type with an occupation and level.

    Minimal here; the exams app adds components, pass rules and sessions.
    """

    name = models.CharField("名称", max_length=128)
    qualification_type = models.ForeignKey(
        QualificationType, verbose_name="职业资格证书", on_delete=models.PROTECT
    )
    occupation = models.ForeignKey(
        Occupation, verbose_name="职业（工种）", on_delete=models.PROTECT
    )
    level = models.PositiveSmallIntegerField(
        "技能等级", choices=[(i, f"{i}级") for i in range(5, 0, -1)]
    )
    province = models.CharField("省份", max_length=2, choices=Province.choices)
    exam_date = models.DateField("考试日期")
    min_education = models.CharField(
        "最低文化程度", max_length=16, choices=Education.choices, blank=True
    )
    min_work_years = models.DecimalField(
        "本职业最低从业年限", max_digits=4, decimal_places=1, default=Decimal(0)
    )
    alternative_work_years = models.DecimalField(
        "无下一级证书时所需从业年限",
        max_digits=4,
        decimal_places=1,
        null=True,
        blank=True,
        help_text="国家职业标准的工作年限路径；留空表示申报四级及以上须比照认定或持下一级证书",
    )
    female_retirement_age = models.PositiveSmallIntegerField(
        "女性原法定退休年龄", choices=[(50, _("50岁（工人）")), (55, _("55岁（干部）"))], default=50
    )
    require_photo = models.BooleanField("须上传照片", default=True)
    disabled_rules = models.ManyToManyField(
        RecognitionRule,
        verbose_name="本省不适用的互认规则",
        blank=True,
        help_text="“如无特别规定”：本省另有规定时关闭对应序号",
    )
    status = FSMField(
        "状态", max_length=16, choices=PlanStatus.choices, default=PlanStatus.DRAFT, protected=True
    )
    registration_opens = models.DateField("报名开始", null=True, blank=True)
    registration_closes = models.DateField("报名截止", null=True, blank=True)
    retake_window_days = models.PositiveSmallIntegerField(
        "补考期限（天）", default=365, help_text="自成绩公布之日起，可仅补考不合格科目"
    )
    retake_limit = models.PositiveSmallIntegerField("补考次数上限", default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-exam_date", "name"]
        verbose_name = "评价计划"
        verbose_name_plural = "评价计划"
        constraints = [
            models.CheckConstraint(
                condition=Q(registration_closes__isnull=True)
                | Q(registration_opens__isnull=True)
                | Q(registration_closes__gte=F("registration_opens")),
                name="registration_window_ordered",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @transition(status, source=PlanStatus.DRAFT, target=PlanStatus.OPEN, permission=_is_coordinator)
    def open(self):
        pass

    @transition(
        status, source=PlanStatus.OPEN, target=PlanStatus.CLOSED, permission=_is_coordinator
    )
    def close(self):
        pass

    @transition(
        status, source=PlanStatus.CLOSED, target=PlanStatus.ARCHIVED, permission=_is_coordinator
    )
    def archive(self):
        pass

    def registration_open_on(self, day) -> bool:
        return (
            self.status == PlanStatus.OPEN
            and (self.registration_opens is None or day >= self.registration_opens)
            and (self.registration_closes is None or day <= self.registration_closes)
        )


class MarkingMode(models.TextChoices):
    SINGLE = "single", _("单评")
    DOUBLE = "double", _("双盲评")


class PlanComponent(models.Model):
    """A component candidates of the plan sit (or complete), shared by its certificates."""

    plan = models.ForeignKey(EvaluationPlan, related_name="components", on_delete=models.CASCADE)
    component = models.ForeignKey(Component, on_delete=models.PROTECT)
    max_score = models.PositiveSmallIntegerField("满分", default=100)
    marking_mode = models.CharField(
        "评分方式", max_length=8, choices=MarkingMode.choices, default=MarkingMode.SINGLE
    )
    tolerance = models.DecimalField(
        "双评允许误差",
        max_digits=4,
        decimal_places=1,
        default=Decimal(5),
        help_text="两评分差超过此值时由主考评员仲裁",
    )
    order = models.PositiveSmallIntegerField("顺序", default=0)

    class Meta:
        ordering = ["plan", "order", "pk"]
        verbose_name = "计划科目"
        verbose_name_plural = "计划科目"
        constraints = [
            models.UniqueConstraint(fields=["plan", "component"], name="one_plan_component"),
            models.CheckConstraint(condition=Q(max_score__gt=0), name="max_score_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.plan} · {self.component}"


class CertificateKind(models.TextChoices):
    QUALIFICATION = "qualification", _("职业资格证书")
    SKILL = "skill", _("职业技能等级证书")


class PlanCertificate(models.Model):
    """One certificate a plan can award, with its own pass rule (一试多证)."""

    plan = models.ForeignKey(EvaluationPlan, related_name="certificates", on_delete=models.CASCADE)
    kind = models.CharField("证书", max_length=16, choices=CertificateKind.choices)
    theory_before_practical = models.BooleanField(
        "理论合格后方可计实操",
        default=False,
        help_text="理论未合格时，实操成绩不计入本证书",
    )

    class Meta:
        ordering = ["plan", "kind"]
        verbose_name = "计划证书"
        verbose_name_plural = "计划证书"
        constraints = [
            models.UniqueConstraint(fields=["plan", "kind"], name="one_certificate_kind_per_plan")
        ]

    def __str__(self) -> str:
        return f"{self.plan} · {self.get_kind_display()}"


class PassMark(models.Model):
    """A component a certificate requires: a mark to reach, or (no mark) completion."""

    certificate = models.ForeignKey(PlanCertificate, related_name="marks", on_delete=models.CASCADE)
    component = models.ForeignKey(Component, on_delete=models.PROTECT)
    pass_mark = models.DecimalField(
        "合格分",
        max_digits=5,
        decimal_places=1,
        null=True,
        blank=True,
        help_text="留空表示须完成（如安全培训）",
    )

    class Meta:
        ordering = ["certificate", "component"]
        verbose_name = "合格标准"
        verbose_name_plural = "合格标准"
        constraints = [
            models.UniqueConstraint(
                fields=["certificate", "component"], name="one_mark_per_component"
            )
        ]

    def __str__(self) -> str:
        return (
            f"{self.component} ≥ {self.pass_mark}"
            if self.pass_mark is not None
            else str(self.component)
        )


class CaseStatus(models.TextChoices):
    DRAFT = "draft", _("草稿")
    SUBMITTED = "submitted", _("已提交")
    RETURNED = "returned", _("退回修改")
    REJECTED = "rejected", _("不予受理")
    ELIGIBLE = "eligible", _("资格审核通过")
    WITHDRAWN = "withdrawn", _("已撤回")
    SCHEDULED = "scheduled", _("已安排考试")
    EXAMINED = "examined", _("已参考")
    ABSENT = "absent", _("缺考")
    VOID = "void", _("成绩无效")
    SCORED = "scored", _("成绩已确定")
    PASSED = "passed", _("考核合格")
    FAILED = "failed", _("考核不合格")
    COMPLETED = "completed", _("已办结")


class Case(ConcurrentTransitionMixin, models.Model):
    """One candidate's application to one evaluation plan (DESIGN.md state table)."""

    candidate = models.ForeignKey(Candidate, related_name="cases", on_delete=models.PROTECT)
    plan = models.ForeignKey(EvaluationPlan, related_name="cases", on_delete=models.PROTECT)
    status = FSMField(
        "状态", max_length=16, choices=CaseStatus.choices, default=CaseStatus.DRAFT, protected=True
    )
    status_reason = models.TextField("最近一次退回/不予受理理由", blank=True)
    application_date = models.DateField("申请日期", null=True, blank=True)
    equivalent_level = models.PositiveSmallIntegerField("比照认定等级", null=True, blank=True)
    equivalence_basis = models.ForeignKey(
        HeldCertificate, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    equivalence_source = models.CharField(max_length=200, blank=True)
    # Held certificates that earned nothing at submit, with the reason (shown on the case).
    not_counted = models.JSONField("未计入的证书", default=list, blank=True)
    attempts = models.PositiveSmallIntegerField("参考次数", default=0)
    result_date = models.DateField("成绩公布日期", null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "报名案件"
        verbose_name_plural = "报名案件"
        constraints = [
            # One live application per candidate and plan; ended ones may be followed by another.
            models.UniqueConstraint(
                fields=["candidate", "plan"],
                condition=~Q(status__in=["withdrawn", "rejected"]),
                name="one_open_case_per_candidate_and_plan",
            )
        ]
        indexes = [models.Index(fields=["status", "plan"])]

    def __str__(self) -> str:
        return f"案件 #{self.pk} {self.candidate.name} · {self.plan.name}"

    def get_absolute_url(self) -> str:
        return reverse("cases:case-detail", args=[self.pk])

    @transition(
        status,
        source=[CaseStatus.DRAFT, CaseStatus.RETURNED],
        target=CaseStatus.SUBMITTED,
        permission=_is_coordinator,
    )
    def submit(self, application_date):
        self.application_date = application_date
        self.status_reason = ""

    @transition(
        status, source=CaseStatus.SUBMITTED, target=CaseStatus.RETURNED, permission=_is_coordinator
    )
    def return_for_correction(self, reason: str):
        self.status_reason = reason

    @transition(
        status, source=CaseStatus.SUBMITTED, target=CaseStatus.REJECTED, permission=_is_coordinator
    )
    def reject(self, reason: str):
        self.status_reason = reason

    @transition(
        status, source=CaseStatus.SUBMITTED, target=CaseStatus.ELIGIBLE, permission=_is_coordinator
    )
    def approve(self):
        pass

    @transition(
        status,
        source=[
            CaseStatus.DRAFT,
            CaseStatus.SUBMITTED,
            CaseStatus.RETURNED,
            CaseStatus.ELIGIBLE,
            CaseStatus.SCHEDULED,
        ],
        target=CaseStatus.WITHDRAWN,
        permission=_is_coordinator,
    )
    def withdraw(self, reason: str):
        self.status_reason = reason

    # Exams (DESIGN.md): moved by exams.services through cases.services only.

    @transition(
        status, source=CaseStatus.ELIGIBLE, target=CaseStatus.SCHEDULED, permission=_is_coordinator
    )
    def schedule(self):
        pass

    @transition(
        status, source=CaseStatus.SCHEDULED, target=CaseStatus.ELIGIBLE, permission=_is_coordinator
    )
    def unschedule(self):
        """The booking was cancelled before the exam (not in DESIGN's table: the way back
        for a seat given up, so the case can be booked again)."""

    @transition(
        status, source=CaseStatus.SCHEDULED, target=CaseStatus.EXAMINED, permission=_is_coordinator
    )
    def check_in(self):
        self.attempts += 1

    @transition(
        status, source=CaseStatus.SCHEDULED, target=CaseStatus.ABSENT, permission=_is_coordinator
    )
    def mark_absent(self):
        self.attempts += 1

    @transition(
        status,
        source=[CaseStatus.EXAMINED, CaseStatus.SCORED],
        target=CaseStatus.VOID,
        permission=_is_coordinator,
    )
    def void(self, reason: str):
        self.status_reason = reason

    @transition(status, source=CaseStatus.EXAMINED, target=CaseStatus.SCORED)
    def finalise_scores(self):
        pass

    @transition(status, source=CaseStatus.SCORED, target=CaseStatus.PASSED)
    def pass_(self, on):
        """`pass` in DESIGN.md (a Python keyword)."""
        self.result_date = on

    @transition(status, source=CaseStatus.SCORED, target=CaseStatus.FAILED)
    def fail(self, on):
        self.result_date = on

    @transition(status, source=CaseStatus.PASSED, target=CaseStatus.COMPLETED)
    def complete(self):
        pass

    @transition(
        status,
        source=[CaseStatus.FAILED, CaseStatus.ABSENT],
        target=CaseStatus.ELIGIBLE,
        permission=_is_coordinator,
    )
    def retake(self):
        self.status_reason = ""


class CaseExemption(models.Model):
    """An exempt component snapshotted at submit, with its rule row and basis certificate."""

    case = models.ForeignKey(Case, related_name="exemptions", on_delete=models.CASCADE)
    component = models.ForeignKey(Component, on_delete=models.PROTECT)
    rule = models.ForeignKey(RecognitionRule, on_delete=models.PROTECT)
    row = models.PositiveSmallIntegerField("附件序号")
    basis = models.ForeignKey(HeldCertificate, on_delete=models.PROTECT, related_name="+")
    source = models.CharField("政策依据", max_length=200)

    class Meta:
        ordering = ["case", "component"]
        verbose_name = "免考科目"
        verbose_name_plural = "免考科目"
        constraints = [
            models.UniqueConstraint(
                fields=["case", "component"], name="one_exemption_per_component"
            )
        ]

    def __str__(self) -> str:
        return f"免{self.component.name}（序号{self.row}）"


class ImportJobStatus(models.TextChoices):
    PENDING = "pending", _("排队中")
    RUNNING = "running", _("处理中")
    SUCCEEDED = "succeeded", _("导入成功")
    FAILED = "failed", _("导入失败")


class ImportJob(models.Model):
    """One uploaded XLSX of candidates and their held certificates (cases.imports).

    All-or-nothing: either every row is written (`created_count` candidates) or none,
    and `errors` lists why as {"row", "column", "message"}. The status is a plain field
    moved by conditional UPDATEs (the task claims a pending job), not a transition: a
    job has no actor-driven workflow, only a worker's progress.
    """

    file = models.FileField("文件", upload_to="imports/%Y/%m/")
    original_name = models.CharField("原文件名", max_length=255, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="上传人", on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField("上传时间", auto_now_add=True)
    status = models.CharField(
        "状态", max_length=16, choices=ImportJobStatus.choices, default=ImportJobStatus.PENDING
    )
    total_rows = models.PositiveIntegerField("数据行数", default=0)
    processed_rows = models.PositiveIntegerField("已校验行数", default=0)
    errors = models.JSONField("错误", default=list, blank=True)
    created_count = models.PositiveIntegerField("新登记考生数", default=0)
    started_at = models.DateTimeField("开始处理时间", null=True, blank=True)
    finished_at = models.DateTimeField("完成时间", null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "考生导入任务"
        verbose_name_plural = "考生导入任务"

    def __str__(self) -> str:
        return f"导入任务 #{self.pk} {self.original_name}"

    def get_absolute_url(self) -> str:
        return reverse("cases:import-job-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in {ImportJobStatus.SUCCEEDED, ImportJobStatus.FAILED}

    @property
    def progress_percent(self) -> int:
        if self.status == ImportJobStatus.SUCCEEDED:
            return 100
        if not self.total_rows:
            return 0
        return min(100, self.processed_rows * 100 // self.total_rows)
