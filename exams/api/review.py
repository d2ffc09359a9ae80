"""Quality review API (notice §三: 预警信息发送、审核、反馈): the supervisors' review
queue, each session's early warnings with their review / answer / close actions, the
session's submit / return / approve transitions, and the score distribution per
component for the supervisor's chart.

Thin views (STYLE.md §3): permission, input serializer, one service or selector call,
output serializer. Scope is the selectors' (exams.selectors.review_session_list);
the finer rules (no supervisor reviews a session they graded) are the services'.
"""

from django.db.models import Count, Q
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cases.api.permissions import HasRole
from cases.roles import Role
from exams import review as services
from exams import selectors
from exams.models import ExamSession, QualityWarning, SessionStatus, WarningStatus


class ReviewReaders(HasRole):
    """Quality supervisors and coordinators (who submit sessions and answer warnings);
    graders have no part in reviewing."""

    roles = (Role.REVIEWER, Role.COORDINATOR)


# Serializers ---------------------------------------------------------------------------


class ReviewSessionOutput(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    plan_name = serializers.CharField(source="plan.name", read_only=True)
    room = serializers.CharField(source="room.__str__", read_only=True)
    open_warnings = serializers.SerializerMethodField()

    class Meta:
        model = ExamSession
        fields = [
            "id",
            "code",
            "plan",
            "plan_name",
            "room",
            "date",
            "start_time",
            "end_time",
            "status",
            "status_label",
            "review_notes",
            "open_warnings",
        ]

    def get_open_warnings(self, session) -> int:
        annotated = getattr(session, "open_warning_count", None)
        if annotated is not None:
            return annotated
        return session.warnings.exclude(status=WarningStatus.CLOSED).count()


class WarningOutput(serializers.ModelSerializer):
    rule_label = serializers.CharField(source="get_rule_display", read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    session_code = serializers.CharField(source="session.code", read_only=True)
    reviewed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    answered_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = QualityWarning
        fields = [
            "id",
            "session",
            "session_code",
            "rule",
            "rule_label",
            "subject",
            "detail",
            "message",
            "status",
            "status_label",
            "review_note",
            "reviewed_by",
            "answer",
            "answered_by",
            "created_at",
            "updated_at",
        ]


class NotesInput(serializers.Serializer):
    notes = serializers.CharField(required=False, allow_blank=True, default="")


class ReviewInput(serializers.Serializer):
    confirmed = serializers.BooleanField()
    note = serializers.CharField(required=False, allow_blank=True, default="")


class AnswerInput(serializers.Serializer):
    answer = serializers.CharField(required=False, allow_blank=True, default="")


class DistributionOutput(serializers.Serializer):
    component = serializers.CharField()
    name = serializers.CharField()
    max_score = serializers.IntegerField()
    width = serializers.IntegerField()
    count = serializers.IntegerField()
    mean = serializers.CharField(allow_null=True)
    pass_marks = serializers.ListField(child=serializers.DictField())
    buckets = serializers.ListField(child=serializers.DictField())


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# Views ---------------------------------------------------------------------------------


class ReviewSessionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Sessions in the quality review. The list is the review queue: sessions in review
    unless `status` asks for another state."""

    permission_classes = [ReviewReaders]
    serializer_class = ReviewSessionOutput
    filter_backends = []

    def get_queryset(self):
        status = self.request.query_params.get("status", SessionStatus.IN_REVIEW)
        if self.action != "list":
            status = None
        return selectors.review_session_list(user=self.request.user, status=status).annotate(
            open_warning_count=Count("warnings", filter=~Q(warnings__status=WarningStatus.CLOSED))
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=SessionStatus.values,
                description="默认 in_review（待审核队列）",
            )
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def _session_response(self, session):
        return Response(ReviewSessionOutput(session).data)

    @extend_schema(request=None, responses=ReviewSessionOutput)
    @action(detail=True, methods=["post"])
    def submit_for_review(self, request, pk=None):
        """评分结束，提交质量审核（考务人员）：成绩锁定，生成预警。"""
        session = services.session_submit_for_review(actor=request.user, session=self.get_object())
        return self._session_response(session)

    @extend_schema(request=NotesInput, responses=ReviewSessionOutput)
    @action(detail=True, methods=["post"])
    def return_to_marking(self, request, pk=None):
        """退回评分（质量督导员，须填写意见）。"""
        notes = _valid(NotesInput, request.data)["notes"]
        session = services.session_return_to_marking(
            actor=request.user, session=self.get_object(), notes=notes
        )
        return self._session_response(session)

    @extend_schema(request=NotesInput, responses=ReviewSessionOutput)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """审核通过（质量督导员）：全部预警关闭后方可，同时公布成绩。"""
        notes = _valid(NotesInput, request.data)["notes"]
        session = services.session_approve(
            actor=request.user, session=self.get_object(), notes=notes
        )
        return self._session_response(session)

    @extend_schema(responses=WarningOutput(many=True))
    @action(detail=True, methods=["get"])
    def warnings(self, request, pk=None):
        """本场次的预警。"""
        session = self.get_object()
        rows = selectors.warning_list(user=request.user, session_id=session.pk)
        return Response(WarningOutput(rows, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("width", int, enum=[1, 2, 5, 10], description="分段宽度")],
        responses=DistributionOutput(many=True),
    )
    @action(detail=True, methods=["get"])
    def distribution(self, request, pk=None):
        """各科目最终成绩分布（直方图）及各证书合格线。"""
        width = request.query_params.get("width", "5")
        if width not in {"1", "2", "5", "10"}:
            raise serializers.ValidationError({"width": ["分段宽度只能为 1、2、5 或 10"]})
        data = selectors.session_score_distribution(session=self.get_object(), width=int(width))
        return Response(DistributionOutput(data, many=True).data)


class QualityWarningViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Early warnings: sent -> confirmed / dismissed (review, supervisor) -> answered
    (answer, coordinator) -> closed (close, supervisor)."""

    permission_classes = [ReviewReaders]
    serializer_class = WarningOutput
    filter_backends = []

    def get_queryset(self):
        session = self.request.query_params.get("session")
        session_id = int(session) if session and session.isdigit() else None
        return selectors.warning_list(user=self.request.user, session_id=session_id)

    @extend_schema(parameters=[OpenApiParameter("session", int)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ReviewInput, responses=WarningOutput)
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        """督导审核：确认（confirmed=true）或排除（false），须填写意见。"""
        data = _valid(ReviewInput, request.data)
        warning = services.warning_review(actor=request.user, warning=self.get_object(), **data)
        return Response(WarningOutput(warning).data)

    @extend_schema(request=AnswerInput, responses=WarningOutput)
    @action(detail=True, methods=["post"])
    def answer(self, request, pk=None):
        """考务反馈（已确认的预警）。"""
        data = _valid(AnswerInput, request.data)
        warning = services.warning_answer(actor=request.user, warning=self.get_object(), **data)
        return Response(WarningOutput(warning).data)

    @extend_schema(request=None, responses=WarningOutput)
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        """督导关闭（已反馈或已排除的预警）。"""
        warning = services.warning_close(actor=request.user, warning=self.get_object())
        return Response(WarningOutput(warning).data)
