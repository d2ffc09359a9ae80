"""Issuers, their number series and the certificates they issue (issue 4; DESIGN.md
"Issuance in parallel").

A passed case owes one Certificate per certificate it earned (exams.CertificateResult).
The qualification certificate is issued by the implementing department (实施部门) of the
plan's qualification type and province; the skill-level certificate by a filed skill-level
certification institution (职业技能等级认定机构). Each certificate moves on its own
state machine; the case completes once, when no owed certificate is left undecided.
"""

from datetime import date

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from audit.masking import mask_id_number, mask_name
from cases.models import Case, CertificateKind, Province
from catalog.models import Department, Occupation, QualificationType


class IssuerKind(models.TextChoices):
    DEPARTMENT = "department", _("职业资格实施部门")
    INSTITUTION = "institution", _("职业技能等级认定机构")


class InstitutionType(models.TextChoices):
    """The first letter of a skill-level certificate number."""

    EMPLOYER = "Y", _("用人单位（Y）")
    SOCIAL = "S", _("社会培训评价组织（S）")


class FilingStatus(models.TextChoices):
    FILED = "filed", _("已备案")
    SUSPENDED = "suspended", _("暂停")
    CANCELLED = "cancelled", _("已撤销备案")


class Issuer(models.Model):
    """An implementing department of one province (or city), or a filed institution."""

    kind = models.CharField("类型", max_length=16, choices=IssuerKind.choices)
    code = models.SlugField("代码", max_length=32, unique=True)
    name = models.CharField("名称", max_length=128)
    province = models.CharField("省份", max_length=2, choices=Province.choices)
    # Departments.
    department = models.ForeignKey(
        Department, verbose_name="所属部门", on_delete=models.PROTECT, null=True, blank=True
    )
    city_letter = models.CharField(
        "城市代码字母", max_length=1, blank=True, help_text="住建证书编号中省简称后的字母，如 晋A"
    )
    # Institutions (备案).
    institution_type = models.CharField(
        "机构类型", max_length=1, choices=InstitutionType.choices, blank=True
    )
    institution_code = models.CharField("机构代码（4位）", max_length=4, blank=True)
    site_sequence = models.CharField("站点序号（6位）", max_length=6, blank=True)
    filing_status = models.CharField(
        "备案状态", max_length=16, choices=FilingStatus.choices, blank=True
    )
    filing_valid_from = models.DateField("备案有效期起", null=True, blank=True)
    filing_valid_to = models.DateField("备案有效期止", null=True, blank=True)
    seal_text = models.CharField("印章文字", max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "province", "code"]
        verbose_name = "发证机构"
        verbose_name_plural = "发证机构"
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="institution", institution_code__regex=r"^\d{4}$")
                | Q(kind="department", department__isnull=False),
                name="issuer_kind_fields",
            ),
            models.UniqueConstraint(
                fields=["institution_type", "institution_code"],
                condition=Q(kind="institution"),
                name="one_institution_per_code",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_institution(self) -> bool:
        return self.kind == IssuerKind.INSTITUTION

    def filing_problem(self, on: date, occupation_id: int | None, level: int | None) -> str:
        """Why this institution cannot issue a skill-level certificate of
        `occupation_id` at `level` on `on`, or "" when it can."""
        if not self.is_institution:
            return ""
        if self.filing_status != FilingStatus.FILED:
            return (
                f"{self.name}备案状态为「{self.get_filing_status_display() or '未备案'}」，不能发证"
            )
        if (self.filing_valid_from and on < self.filing_valid_from) or (
            self.filing_valid_to and on > self.filing_valid_to
        ):
            return (
                f"{self.name}备案有效期为 {self.filing_valid_from or '—'} 至 "
                f"{self.filing_valid_to or '—'}，{on} 不在有效期内，不能发证"
            )
        in_scope = any(
            s.occupation_id == occupation_id and s.level == level for s in self.scopes.all()
        )
        if not in_scope:
            return f"{self.name}的备案范围不含该职业（工种）的{level}级，不能发证"
        return ""


class InstitutionScope(models.Model):
    """An occupation and level a filed institution may certify."""

    issuer = models.ForeignKey(Issuer, related_name="scopes", on_delete=models.CASCADE)
    occupation = models.ForeignKey(
        Occupation, verbose_name="职业（工种）", on_delete=models.PROTECT
    )
    level = models.PositiveSmallIntegerField(
        "等级", choices=[(i, f"{i}级") for i in range(5, 0, -1)]
    )

    class Meta:
        ordering = ["issuer", "occupation", "-level"]
        verbose_name = "备案范围"
        verbose_name_plural = "备案范围"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "occupation", "level"], name="one_scope_per_level"
            )
        ]

    def __str__(self) -> str:
        return f"{self.issuer} · {self.occupation.name} {self.level}级"


class IssuerOfficer(models.Model):
    """An issuer_officer user acts for exactly one issuer."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, related_name="issuer_officer", on_delete=models.CASCADE
    )
    issuer = models.ForeignKey(Issuer, related_name="officers", on_delete=models.PROTECT)

    class Meta:
        verbose_name = "发证人员"
        verbose_name_plural = "发证人员"

    def __str__(self) -> str:
        return f"{self.user} @ {self.issuer}"


class NumberSeries(models.Model):
    """How an issuer numbers one certificate type: the MOHURD category (两位类别码) or
    the SAMR prefix and serial width. Serials themselves live in SerialCounter."""

    issuer = models.ForeignKey(Issuer, related_name="series", on_delete=models.CASCADE)
    type_code = models.CharField(
        "证书类型", max_length=32, help_text="职业资格证书类型代码，或 SKILL（职业技能等级证书）"
    )
    category = models.CharField(
        "类别码", max_length=2, blank=True, help_text="住建证书编号的两位类别"
    )
    prefix = models.CharField(
        "编号前缀", max_length=16, blank=True, help_text="市场监管证书编号前缀"
    )
    width = models.PositiveSmallIntegerField("流水号位数", default=6)

    class Meta:
        verbose_name = "编号规则"
        verbose_name_plural = "编号规则"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "type_code"], name="one_series_per_type")
        ]

    def __str__(self) -> str:
        return f"{self.issuer.code} · {self.type_code}"


class SerialCounter(models.Model):
    """The last serial used in one series and period (a year, or year + level). Updated
    under a row lock inside the issuing transaction: serials are gap-free and unique."""

    issuer = models.ForeignKey(Issuer, related_name="counters", on_delete=models.PROTECT)
    type_code = models.CharField(max_length=32)
    period = models.CharField(max_length=16)
    last = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "流水号计数器"
        verbose_name_plural = "流水号计数器"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "type_code", "period"], name="one_counter_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.issuer_id} {self.type_code} {self.period}: {self.last}"


class CertificateStatus(models.TextChoices):
    PENDING = "pending", _("待审批")
    APPROVED = "approved", _("已审批")
    ISSUED = "issued", _("已发证")
    REVOKED = "revoked", _("已撤销")
    REFUSED = "refused", _("不予发证")


def is_issuer_officer(instance, user) -> bool:
    from cases.roles import Role, has_role

    if getattr(user, "is_superuser", False):
        return True
    officer = getattr(user, "issuer_officer", None) if user and user.is_authenticated else None
    return (
        has_role(user, Role.ISSUER_OFFICER)
        and officer is not None
        and officer.issuer_id == instance.issuer_id
    )


class Certificate(ConcurrentTransitionMixin, models.Model):
    """One certificate a passed case earned; holder data is a snapshot at creation."""

    case = models.ForeignKey(Case, related_name="certificates", on_delete=models.PROTECT)
    kind = models.CharField("证书", max_length=16, choices=CertificateKind.choices)
    issuer = models.ForeignKey(
        Issuer, verbose_name="发证机构", related_name="certificates", on_delete=models.PROTECT
    )
    qualification_type = models.ForeignKey(
        QualificationType,
        verbose_name="职业资格证书类型",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    occupation = models.ForeignKey(
        Occupation, verbose_name="职业（工种）", on_delete=models.PROTECT
    )
    level = models.PositiveSmallIntegerField("等级", null=True, blank=True)
    holder_name = models.CharField("持证人", max_length=64)
    holder_id_number = models.CharField("身份证号码", max_length=18)
    status = FSMField(
        "状态",
        max_length=16,
        choices=CertificateStatus.choices,
        default=CertificateStatus.PENDING,
        protected=True,
    )
    number = models.CharField("证书编号", max_length=32, null=True, blank=True)
    verification_code = models.CharField(
        "核验码", max_length=32, null=True, blank=True, unique=True
    )
    issued_on = models.DateField("发证日期", null=True, blank=True)
    valid_until = models.DateField("有效期至", null=True, blank=True)
    review_due = models.DateField("复审日期", null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    approved_at = models.DateTimeField("审批时间", null=True, blank=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    issued_at = models.DateTimeField("发证时间", null=True, blank=True)
    revoked_on = models.DateField("撤销日期", null=True, blank=True)
    reason = models.TextField("不予发证或撤销理由", blank=True)
    pdf = models.CharField("证书文件", max_length=255, blank=True)
    pdf_sha256 = models.CharField("文件SHA-256", max_length=64, blank=True)
    pdf_size = models.PositiveIntegerField("文件大小", null=True, blank=True)
    pdf_rendered_at = models.DateTimeField("生成时间", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "证书"
        verbose_name_plural = "证书"
        constraints = [
            models.UniqueConstraint(fields=["case", "kind"], name="one_certificate_per_case_kind"),
            # No unique constraint on qualification numbers: MEM numbers are "T" + the
            # holder's ID, the same on a certificate re-issued after revocation or
            # expiry (issuance.services refuses a second valid one); serial-based
            # numbers are unique by their SerialCounter.
            models.UniqueConstraint(
                fields=["number"],
                condition=Q(kind="skill", number__isnull=False),
                name="skill_number_unique",
            ),
            models.CheckConstraint(
                condition=Q(kind="skill", level__isnull=False)
                | Q(kind="qualification", qualification_type__isnull=False),
                name="certificate_kind_fields",
            ),
        ]
        indexes = [
            models.Index(fields=["issuer", "status"], name="certificate_queue"),
            models.Index(fields=["number"], name="certificate_number"),
            models.Index(fields=["status", "issued_on"], name="certificate_issued_on"),
            models.Index(fields=["status", "review_due"], name="certificate_review_due"),
        ]

    def __str__(self) -> str:
        # Masked: MEM numbers embed the ID, and this lands in audit and admin titles.
        return f"{self.type_label} {self.masked_number or '（未编号）'}"

    def get_absolute_url(self) -> str:
        return reverse("issuance:certificate-detail", args=[self.pk])

    @property
    def type_code(self) -> str:
        """The catalog code, or SKILL (export_certificates' certificate_type)."""
        return self.qualification_type.code if self.qualification_type_id else "SKILL"

    @property
    def type_label(self) -> str:
        if self.kind == CertificateKind.SKILL:
            return f"职业技能等级证书 · {self.occupation.name} {self.level}级"
        return self.qualification_type.name

    @property
    def masked_name(self) -> str:
        return mask_name(self.holder_name)

    @property
    def masked_id_number(self) -> str:
        return mask_id_number(self.holder_id_number)

    @property
    def masked_number(self) -> str | None:
        """MEM numbers embed the holder's ID, which is masked outside authorised views."""
        qtype = self.qualification_type if self.qualification_type_id else None
        if self.number and qtype is not None and qtype.number_is_holder_id:
            return self.number[0] + mask_id_number(self.number[1:])
        return self.number

    def validity_on(self, on: date) -> str:
        """valid / revoked / expired, as the public verification shows it."""
        if self.status == CertificateStatus.REVOKED:
            return "revoked"
        if self.valid_until and on > self.valid_until:
            return "expired"
        return "valid"

    # Transitions: bodies only set fields (STYLE.md §2); services lock, audit, dispatch.

    @transition(
        status,
        source=CertificateStatus.PENDING,
        target=CertificateStatus.APPROVED,
        permission=is_issuer_officer,
    )
    def approve(self, *, by, at):
        self.approved_by, self.approved_at = by, at

    @transition(
        status,
        source=[CertificateStatus.PENDING, CertificateStatus.APPROVED],
        target=CertificateStatus.REFUSED,
        permission=is_issuer_officer,
    )
    def refuse(self, *, reason: str):
        self.reason = reason

    @transition(
        status,
        source=CertificateStatus.APPROVED,
        target=CertificateStatus.ISSUED,
        permission=is_issuer_officer,
    )
    def issue(self, *, by, at, number, verification_code, issued_on, valid_until, review_due):
        self.issued_by, self.issued_at = by, at
        self.number, self.verification_code = number, verification_code
        self.issued_on, self.valid_until, self.review_due = issued_on, valid_until, review_due

    @transition(
        status,
        source=CertificateStatus.ISSUED,
        target=CertificateStatus.REVOKED,
        permission=is_issuer_officer,
    )
    def revoke(self, *, reason: str, on: date):
        self.reason, self.revoked_on = reason, on


class PlanIssuers(models.Model):
    """Which issuers award a plan's certificates. Without a row, the department of the
    plan's qualification type in the plan's province, and the filed institution of that
    province whose scope covers the occupation and level, are used (issuance.issuers)."""

    plan = models.OneToOneField(
        "cases.EvaluationPlan", related_name="issuers", on_delete=models.CASCADE
    )
    qualification_issuer = models.ForeignKey(
        Issuer, verbose_name="职业资格证书发证机构", related_name="+", on_delete=models.PROTECT
    )
    skill_issuer = models.ForeignKey(
        Issuer,
        verbose_name="职业技能等级认定机构",
        related_name="+",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )

    class Meta:
        verbose_name = "计划发证机构"
        verbose_name_plural = "计划发证机构"

    def __str__(self) -> str:
        return f"{self.plan} → {self.qualification_issuer} / {self.skill_issuer}"


class ExchangeImport(models.Model):
    """A certificate list received from another department (数据交换), kept as a record
    of what was matched against held certificates."""

    source = models.CharField("来源部门", max_length=128)
    file_name = models.CharField("文件名", max_length=255)
    rows = models.PositiveIntegerField("行数", default=0)
    matched = models.PositiveIntegerField("匹配已持证书", default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "证书数据导入"
        verbose_name_plural = "证书数据导入"

    def __str__(self) -> str:
        return f"{self.source} {self.file_name}"
