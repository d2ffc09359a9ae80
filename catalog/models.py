"""Reference data of the notice (人社厅发〔2026〕 joint notice of 2026-01-09).

Rows are loaded by migration 0002 and editable by an admin; each rule carries its
policy source (the notice section) and its effective dates, so a later notice can
end a rule and start another without losing what applied to past applications.
"""

import re
from datetime import date

from dateutil.relativedelta import relativedelta
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


def validate_regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(f"不是有效的正则表达式：{exc}") from exc


class EffectiveQuerySet(models.QuerySet):
    def effective_on(self, on: date):
        return self.filter(
            Q(effective_from__lte=on), Q(effective_to__isnull=True) | Q(effective_to__gte=on)
        )


class Department(models.Model):
    code = models.SlugField("代码", max_length=16, unique=True)
    name = models.CharField("名称", max_length=64)

    class Meta:
        ordering = ["code"]
        verbose_name = "部门"
        verbose_name_plural = "部门"

    def __str__(self) -> str:
        return self.name


class Occupation(models.Model):
    code = models.CharField("职业编码", max_length=16, unique=True)
    name = models.CharField("名称", max_length=64)

    class Meta:
        ordering = ["code"]
        verbose_name = "职业（工种）"
        verbose_name_plural = "职业（工种）"

    def __str__(self) -> str:
        return f"{self.name}（{self.code}）"


class SkillLevel(models.Model):
    """Levels 5 (lowest, 初级工) to 1 (highest, 高级技师)."""

    level = models.PositiveSmallIntegerField("等级", unique=True)
    name = models.CharField("名称", max_length=32)

    class Meta:
        ordering = ["-level"]
        verbose_name = "技能等级"
        verbose_name_plural = "技能等级"
        constraints = [
            models.CheckConstraint(
                condition=Q(level__gte=1, level__lte=5), name="skill_level_between_1_and_5"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Component(models.Model):
    class Kind(models.TextChoices):
        EXAM = "exam", "考试（百分制）"
        COMPLETION = "completion", "完成记录"

    code = models.SlugField("代码", max_length=32, unique=True)
    name = models.CharField("名称", max_length=64)
    kind = models.CharField("类型", max_length=16, choices=Kind.choices, default=Kind.EXAM)
    max_score = models.PositiveSmallIntegerField("满分", default=100)

    class Meta:
        ordering = ["id"]
        verbose_name = "考核科目"
        verbose_name_plural = "考核科目"

    def __str__(self) -> str:
        return self.name


class QualificationType(models.Model):
    """A vocational-qualification certificate type (技能人员职业资格证书)."""

    code = models.CharField("代码", max_length=32, unique=True)
    name = models.CharField("名称", max_length=128)
    department = models.ForeignKey(Department, verbose_name="实施部门", on_delete=models.PROTECT)
    occupation = models.ForeignKey(Occupation, verbose_name="对应职业", on_delete=models.PROTECT)
    validity_years = models.PositiveSmallIntegerField("有效期（年）")
    review_interval_years = models.PositiveSmallIntegerField(
        "复审周期（年）", null=True, blank=True, help_text="留空表示无需复审"
    )
    theory_before_practical = models.BooleanField("理论合格后方可计实操", default=False)
    number_pattern = models.CharField(
        "证书编号格式（正则）", max_length=200, validators=[validate_regex]
    )
    number_format = models.CharField("证书编号说明", max_length=200)
    number_is_holder_id = models.BooleanField("编号含持证人身份证号", default=False)
    source = models.CharField("政策依据", max_length=200)
    effective_from = models.DateField("生效日期")
    effective_to = models.DateField("失效日期", null=True, blank=True)

    objects = EffectiveQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        verbose_name = "职业资格证书类型"
        verbose_name_plural = "职业资格证书类型"

    def __str__(self) -> str:
        return self.name

    def number_matches(self, number: str) -> bool:
        return re.fullmatch(self.number_pattern, number) is not None

    def expiry_for(self, issue_date: date) -> date:
        """The last day of validity of a certificate of this type issued on `issue_date`."""
        return issue_date + relativedelta(years=self.validity_years, days=-1)

    def review_due_for(self, issue_date: date) -> date | None:
        """When a certificate issued on `issue_date` must first be reviewed (MEM: 3 years)."""
        if not self.review_interval_years:
            return None
        return issue_date + relativedelta(years=self.review_interval_years)


class QualificationComponent(models.Model):
    """A component of a qualification type's assessment, with its pass mark."""

    qualification_type = models.ForeignKey(
        QualificationType, related_name="components", on_delete=models.CASCADE
    )
    component = models.ForeignKey(Component, on_delete=models.PROTECT)
    label = models.CharField("本部门名称", max_length=64)
    pass_mark = models.PositiveSmallIntegerField("合格分", null=True, blank=True)
    order = models.PositiveSmallIntegerField("顺序", default=0)

    class Meta:
        ordering = ["qualification_type", "order"]
        verbose_name = "证书考核科目"
        verbose_name_plural = "证书考核科目"
        constraints = [
            models.UniqueConstraint(
                fields=["qualification_type", "component"], name="one_component_per_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.qualification_type.code} · {self.label}"


class SkillCertificateRule(models.Model):
    """The rule for 职业技能等级证书 (one row per period of validity)."""

    theory_pass_mark = models.PositiveSmallIntegerField("理论合格分", default=60)
    practical_pass_mark = models.PositiveSmallIntegerField("实操合格分", default=60)
    review_required_levels = models.CharField(
        "需综合评审的等级", max_length=16, default="2,1", help_text="逗号分隔"
    )
    number_pattern = models.CharField(max_length=200, validators=[validate_regex])
    number_format = models.CharField(max_length=300)
    source = models.CharField("政策依据", max_length=200)
    effective_from = models.DateField("生效日期")
    effective_to = models.DateField("失效日期", null=True, blank=True)

    objects = EffectiveQuerySet.as_manager()

    class Meta:
        verbose_name = "职业技能等级证书规则"
        verbose_name_plural = "职业技能等级证书规则"

    def __str__(self) -> str:
        return f"职业技能等级证书（{self.effective_from} 起）"

    @property
    def levels_needing_review(self) -> set[int]:
        return {int(x) for x in self.review_required_levels.split(",") if x.strip()}


class RecognitionRule(models.Model):
    """A row of the notice's attachment (互通互认): holding `held` exempts an
    applicant for `target` from `exempt` components. Directional: no row, no exemption."""

    row = models.PositiveSmallIntegerField("附件序号", unique=True)
    held = models.ForeignKey(
        QualificationType, verbose_name="已持证书", related_name="+", on_delete=models.PROTECT
    )
    target = models.ForeignKey(
        QualificationType, verbose_name="申请证书", related_name="+", on_delete=models.PROTECT
    )
    exempt = models.ManyToManyField(Component, verbose_name="免予科目", related_name="+")
    condition = models.CharField("适用条件", max_length=200, blank=True)
    source = models.CharField("政策依据", max_length=200)
    effective_from = models.DateField("生效日期")
    effective_to = models.DateField("失效日期", null=True, blank=True)

    objects = EffectiveQuerySet.as_manager()

    class Meta:
        ordering = ["row"]
        verbose_name = "互通互认规则"
        verbose_name_plural = "互通互认规则"
        constraints = [
            models.UniqueConstraint(fields=["held", "target"], name="one_rule_per_direction")
        ]

    def __str__(self) -> str:
        return f"序号{self.row}：{self.held.code} → {self.target.code}"


class EquivalenceRule(models.Model):
    """比照认定 (notice §二(一)): holding `held` counts as `level` in `occupation`;
    the holder may apply for the next level up."""

    held = models.ForeignKey(
        QualificationType, verbose_name="已持证书", related_name="+", on_delete=models.PROTECT
    )
    occupation = models.ForeignKey(Occupation, verbose_name="职业", on_delete=models.PROTECT)
    level = models.PositiveSmallIntegerField("视同等级")
    source = models.CharField("政策依据", max_length=200)
    effective_from = models.DateField("生效日期")
    effective_to = models.DateField("失效日期", null=True, blank=True)

    objects = EffectiveQuerySet.as_manager()

    class Meta:
        ordering = ["held__code"]
        verbose_name = "比照认定规则"
        verbose_name_plural = "比照认定规则"
        constraints = [
            models.UniqueConstraint(fields=["held", "occupation"], name="one_equivalence_per_held"),
            models.CheckConstraint(
                condition=Q(level__gte=2, level__lte=5), name="equivalence_level_2_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.held.code} → {self.occupation.name} {self.level}级"

    @property
    def may_apply(self) -> int:
        return self.level - 1
