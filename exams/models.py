"""Exam administration: venues and sessions, seats and admission tickets, attendance,
marks with double-blind marking, per-certificate results, and quality review with
early warnings (notice §三; Q&A 三: 预警信息发送、审核、反馈).

A case sits all its outstanding components in one session ("一试": one exam); a
session therefore covers every component its candidates sit. Exempt components are
never sat; on a retake only the components not yet passed are.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from cases.models import Case, CertificateKind, EvaluationPlan
from catalog.models import Component


class Venue(models.Model):
    name = models.CharField("考点名称", max_length=128, unique=True)
    address = models.CharField("地址", max_length=256, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "考点"
        verbose_name_plural = "考点"

    def __str__(self) -> str:
        return self.name


class Room(models.Model):
    venue = models.ForeignKey(Venue, related_name="rooms", on_delete=models.PROTECT)
    name = models.CharField("考场", max_length=64)
    capacity = models.PositiveSmallIntegerField("座位数")

    class Meta:
        ordering = ["venue", "name"]
        verbose_name = "考场"
        verbose_name_plural = "考场"
        constraints = [
            models.UniqueConstraint(fields=["venue", "name"], name="room_name_unique_in_venue"),
            models.CheckConstraint(condition=Q(capacity__gt=0), name="room_capacity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.venue.name} {self.name}"


class SessionStatus(models.TextChoices):
    PLANNED = "planned", _("已计划")
    OPEN = "open", _("开放编排")
    ROSTER_FROZEN = "roster_frozen", _("名单已锁定")
    IN_PROGRESS = "in_progress", _("考试进行中")
    MARKING = "marking", _("评分中")
    IN_REVIEW = "in_review", _("质量审核中")
    APPROVED = "approved", _("审核通过")


class ExamSession(ConcurrentTransitionMixin, models.Model):
    plan = models.ForeignKey(EvaluationPlan, related_name="sessions", on_delete=models.PROTECT)
    room = models.ForeignKey(Room, related_name="sessions", on_delete=models.PROTECT)
    code = models.CharField("场次编号", max_length=32, unique=True)
    date = models.DateField("考试日期")
    start_time = models.TimeField("开始时间")
    end_time = models.TimeField("结束时间")
    capacity = models.PositiveSmallIntegerField("容量")
    components = models.ManyToManyField(Component, verbose_name="考试科目", related_name="+")
    status = FSMField(
        "状态",
        max_length=16,
        choices=SessionStatus.choices,
        default=SessionStatus.PLANNED,
        protected=True,
    )
    review_notes = models.TextField("督导意见", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["date", "start_time", "code"]
        verbose_name = "考试场次"
        verbose_name_plural = "考试场次"
        constraints = [
            models.CheckConstraint(
                condition=Q(end_time__gt=F("start_time")), name="session_ends_after_start"
            ),
            models.CheckConstraint(condition=Q(capacity__gt=0), name="session_capacity_positive"),
        ]
        # The queues by state: sessions in marking, in review (the supervisors' queue).
        indexes = [models.Index(fields=["status", "date"], name="session_status_date")]

    def __str__(self) -> str:
        return f"{self.code} {self.date} {self.start_time:%H:%M}"

    @transition(status, source=SessionStatus.PLANNED, target=SessionStatus.OPEN)
    def open(self):
        pass

    @transition(status, source=SessionStatus.OPEN, target=SessionStatus.ROSTER_FROZEN)
    def freeze_roster(self):
        pass

    @transition(status, source=SessionStatus.ROSTER_FROZEN, target=SessionStatus.IN_PROGRESS)
    def start(self):
        pass

    @transition(status, source=SessionStatus.IN_PROGRESS, target=SessionStatus.MARKING)
    def close(self):
        """Exam over: who did not check in is absent; marking begins."""

    @transition(status, source=SessionStatus.MARKING, target=SessionStatus.IN_REVIEW)
    def submit_for_review(self):
        """Marks lock; early warnings are computed."""

    @transition(status, source=SessionStatus.IN_REVIEW, target=SessionStatus.MARKING)
    def return_to_marking(self, notes: str):
        self.review_notes = notes

    @transition(status, source=SessionStatus.IN_REVIEW, target=SessionStatus.APPROVED)
    def approve(self, notes: str = ""):
        self.review_notes = notes


class StaffRole(models.TextChoices):
    PROCTOR = "proctor", _("监考员")
    GRADER = "grader", _("考评员")
    CHIEF_GRADER = "chief_grader", _("主考评员")


class SessionStaff(models.Model):
    """Who works a session: proctors, and graders per component (a chief grader
    arbitrates double marks that disagree beyond the tolerance)."""

    session = models.ForeignKey(ExamSession, related_name="staff", on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="+", on_delete=models.PROTECT)
    role = models.CharField("职责", max_length=16, choices=StaffRole.choices)
    component = models.ForeignKey(
        Component,
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
        help_text="考评员负责的科目",
    )

    class Meta:
        verbose_name = "场次人员"
        verbose_name_plural = "场次人员"
        constraints = [
            models.UniqueConstraint(
                fields=["session", "user", "role", "component"],
                name="one_assignment",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.session} {self.get_role_display()} {self.user}"


class BookingStatus(models.TextChoices):
    BOOKED = "booked", _("已安排")
    CHECKED_IN = "checked_in", _("已签到")
    ABSENT = "absent", _("缺考")
    VOID = "void", _("违纪无效")
    CANCELLED = "cancelled", _("已取消")


ACTIVE_BOOKING = ~Q(status=BookingStatus.CANCELLED)


class Booking(models.Model):
    """A case's seat in a session, with its admission ticket."""

    session = models.ForeignKey(ExamSession, related_name="bookings", on_delete=models.PROTECT)
    case = models.ForeignKey(Case, related_name="bookings", on_delete=models.PROTECT)
    attempt = models.PositiveSmallIntegerField("第几次参考", default=1)
    seat_number = models.PositiveSmallIntegerField("座位号")
    ticket_number = models.CharField("准考证号", max_length=32, unique=True)
    components = models.ManyToManyField(Component, verbose_name="应考科目", related_name="+")
    status = models.CharField(
        "状态", max_length=16, choices=BookingStatus.choices, default=BookingStatus.BOOKED
    )
    checked_in_at = models.DateTimeField("签到时间", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "seat_number"]
        verbose_name = "考位"
        verbose_name_plural = "考位"
        constraints = [
            models.UniqueConstraint(
                fields=["session", "seat_number"],
                condition=ACTIVE_BOOKING,
                name="one_case_per_seat",
            ),
            models.UniqueConstraint(
                fields=["session", "case"], condition=ACTIVE_BOOKING, name="one_seat_per_case"
            ),
        ]
        # A session's bookings in one state: checked in (marking, results), booked (desk).
        indexes = [models.Index(fields=["session", "status"], name="booking_session_status")]

    def __str__(self) -> str:
        return f"{self.ticket_number}（{self.session.code} 座位 {self.seat_number}）"


class Misconduct(models.Model):
    """违纪: recorded with evidence; voids the case's result."""

    booking = models.ForeignKey(Booking, related_name="misconduct", on_delete=models.PROTECT)
    description = models.TextField("违纪情况")
    evidence = models.FileField("证据", upload_to="evidence/%Y/%m/")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="+", on_delete=models.PROTECT
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "违纪记录"
        verbose_name_plural = "违纪记录"

    def __str__(self) -> str:
        return f"{self.booking.ticket_number} 违纪"


class MarkSlot(models.TextChoices):
    SINGLE = "single", _("单评")
    FIRST = "first", _("一评")
    SECOND = "second", _("二评")
    ARBITRATION = "arbitration", _("仲裁")


class Mark(models.Model):
    """One grader's mark for one component of one booking. Double-blind: the first and
    second graders never see each other's marks; the chief grader arbitrates."""

    booking = models.ForeignKey(Booking, related_name="marks", on_delete=models.PROTECT)
    component = models.ForeignKey(Component, related_name="+", on_delete=models.PROTECT)
    slot = models.CharField("评次", max_length=16, choices=MarkSlot.choices)
    grader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="+", on_delete=models.PROTECT)
    score = models.DecimalField("分数", max_digits=5, decimal_places=1)
    entered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["booking", "component", "slot"]
        verbose_name = "评分"
        verbose_name_plural = "评分"
        constraints = [
            models.UniqueConstraint(
                fields=["booking", "component", "slot"], name="one_mark_per_slot"
            ),
            models.CheckConstraint(condition=Q(score__gte=0), name="mark_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.booking.ticket_number} {self.component.code} {self.slot} {self.score}"


class ScoreStatus(models.TextChoices):
    FINAL = "final", _("已确定")
    EXEMPT = "exempt", _("免考")
    COMPLETED = "completed", _("已完成")


class ComponentScore(models.Model):
    """The final result of one component for one case and attempt: the mark (single,
    mean of two within tolerance, or arbitrated), an exemption, or a completion."""

    case = models.ForeignKey(Case, related_name="component_scores", on_delete=models.PROTECT)
    component = models.ForeignKey(Component, related_name="+", on_delete=models.PROTECT)
    attempt = models.PositiveSmallIntegerField("第几次参考")
    status = models.CharField("状态", max_length=16, choices=ScoreStatus.choices)
    score = models.DecimalField("分数", max_digits=5, decimal_places=1, null=True, blank=True)
    method = models.CharField("方式", max_length=16, blank=True)
    booking = models.ForeignKey(
        Booking, null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )

    class Meta:
        ordering = ["case", "attempt", "component"]
        verbose_name = "科目成绩"
        verbose_name_plural = "科目成绩"
        constraints = [
            models.UniqueConstraint(
                fields=["case", "component", "attempt"], name="one_score_per_component_attempt"
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__gte=0),
                name="component_score_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case_id} {self.component.code} {self.score}"


class CertificateResult(models.Model):
    """What one case earned for one certificate of its plan, with the reason."""

    case = models.ForeignKey(Case, related_name="certificate_results", on_delete=models.PROTECT)
    kind = models.CharField("证书", max_length=16, choices=CertificateKind.choices)
    attempt = models.PositiveSmallIntegerField("第几次参考")
    earned = models.BooleanField("是否合格")
    reasons = models.JSONField("原因", default=list)

    class Meta:
        ordering = ["case", "attempt", "kind"]
        verbose_name = "证书结果"
        verbose_name_plural = "证书结果"
        constraints = [
            models.UniqueConstraint(
                fields=["case", "kind", "attempt"], name="one_result_per_kind_attempt"
            )
        ]

    def __str__(self) -> str:
        return f"{self.case_id} {self.kind} {'合格' if self.earned else '不合格'}"


class WarningRule(models.TextChoices):
    PASS_RATE = "pass_rate", _("通过率异常")
    HEAPING = "heaping", _("分数堆积在合格线")
    GRADER_DISAGREEMENT = "grader_disagreement", _("双评分歧频繁")
    IDENTICAL_SCORES = "identical_scores", _("成绩雷同")
    LATE_CHECK_IN = "late_check_in", _("开考后签到")


class WarningStatus(models.TextChoices):
    GENERATED = "generated", _("已生成")
    SENT = "sent", _("已发送督导")
    CONFIRMED = "confirmed", _("督导确认")
    DISMISSED = "dismissed", _("督导排除")
    ANSWERED = "answered", _("考务已反馈")
    CLOSED = "closed", _("已关闭")


class QualityWarning(ConcurrentTransitionMixin, models.Model):
    """An early warning on a session in review: generated -> sent to the supervisor ->
    reviewed (confirmed or dismissed, with a note) -> answered by the coordinator when
    confirmed -> closed (预警信息发送、审核、反馈). The system withdraws (closes, with
    `withdrawn_at`) an open warning whose rule no longer fires when the session is
    submitted again after a return to marking (exams.review.session_warnings_generate).
    A (session, rule, subject) has at most one open warning; closed ones stay as the
    record of what was reviewed, and the same subject may be raised again with new
    figures."""

    session = models.ForeignKey(ExamSession, related_name="warnings", on_delete=models.CASCADE)
    rule = models.CharField("规则", max_length=32, choices=WarningRule.choices)
    subject = models.CharField("对象", max_length=128, blank=True)
    detail = models.JSONField("详情", default=dict)
    message = models.TextField("说明")
    status = FSMField(
        "状态",
        max_length=16,
        choices=WarningStatus.choices,
        default=WarningStatus.GENERATED,
        protected=True,
    )
    review_note = models.TextField("督导意见", blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    answer = models.TextField("考务反馈", blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    # Set when the system closed the warning because its rule stopped firing (withdraw):
    # such a warning was never settled by the supervisor, so its facts do not count as
    # reviewed when they come back (exams.review.session_warnings_generate).
    withdrawn_at = models.DateTimeField("系统自动关闭时间", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session", "created_at", "pk"]
        verbose_name = "预警"
        verbose_name_plural = "预警"
        constraints = [
            models.UniqueConstraint(
                fields=["session", "rule", "subject"],
                condition=~models.Q(status=WarningStatus.CLOSED),
                name="one_open_warning_per_subject",
            )
        ]
        # A session's warnings by state: open ones block approval, sent ones await review.
        indexes = [models.Index(fields=["session", "status"], name="warning_session_status")]

    def __str__(self) -> str:
        return f"{self.session.code} {self.get_rule_display()} {self.subject}"

    @transition(status, source=WarningStatus.GENERATED, target=WarningStatus.SENT)
    def send(self):
        pass

    @transition(status, source=WarningStatus.SENT, target=WarningStatus.CONFIRMED)
    def confirm(self, note: str):
        self.review_note = note

    @transition(status, source=WarningStatus.SENT, target=WarningStatus.DISMISSED)
    def dismiss(self, note: str):
        self.review_note = note

    @transition(status, source=WarningStatus.CONFIRMED, target=WarningStatus.ANSWERED)
    def answer_with(self, answer: str):
        self.answer = answer

    @transition(
        status,
        source=[WarningStatus.ANSWERED, WarningStatus.DISMISSED],
        target=WarningStatus.CLOSED,
    )
    def close(self):
        pass

    @transition(
        status,
        source=[
            WarningStatus.GENERATED,
            WarningStatus.SENT,
            WarningStatus.CONFIRMED,
            WarningStatus.DISMISSED,
            WarningStatus.ANSWERED,
        ],
        target=WarningStatus.CLOSED,
    )
    def withdraw(self, *, at):
        """The system's close: the finding is gone on a later run of the rules, so
        there is nothing left to review or answer, whatever the open state."""
        self.withdrawn_at = at
