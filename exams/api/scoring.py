"""Scoring and results API: the grader's assignments and marking sheet (double-blind:
only their own marks), entering marks one at a time or as a batch from the score grid
(all-or-nothing), importing a score file, finalising a session's scores, recording
training completion, and a case's results per certificate with the reasons.

Thin views (STYLE.md §3): permission, input serializer, one service or selector call,
output serializer. Scope is the selectors' (exams.selectors.marking_sheet answers None
for a session or component the grader is not assigned to -> 404); the marking rules
are the services' (exams.scoring, exams.results).
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from cases.api.permissions import HasRole
from cases.models import Case
from cases.roles import Role
from exams import results, scoring, selectors
from exams.models import Booking, ExamSession, MarkSlot


class Graders(HasRole):
    roles = (Role.GRADER,)


class ScoreImporters(HasRole):
    """Graders (their components) and coordinators (machine-marked theory)."""

    roles = (Role.GRADER, Role.COORDINATOR)


class ResultReaders(HasRole):
    roles = (Role.COORDINATOR, Role.REVIEWER, Role.ISSUER_OFFICER)


class Coordinators(HasRole):
    roles = (Role.COORDINATOR,)


# Serializers ---------------------------------------------------------------------------


class AssignmentOutput(serializers.Serializer):
    session = serializers.IntegerField()
    code = serializers.CharField()
    date = serializers.DateField()
    status = serializers.CharField()
    component = serializers.CharField()
    component_name = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())


class SheetQuery(serializers.Serializer):
    session = serializers.IntegerField()
    component = serializers.CharField()


class SheetRowOutput(serializers.Serializer):
    booking = serializers.IntegerField()
    ticket_number = serializers.CharField()
    seat_number = serializers.IntegerField()
    slot = serializers.CharField(allow_null=True)
    score = serializers.DecimalField(max_digits=5, decimal_places=1, allow_null=True)
    needs_arbitration = serializers.BooleanField(required=False)


class MarkInput(serializers.Serializer):
    """One entry; `score` is taken as given (the service says what is wrong with it)."""

    ticket_number = serializers.CharField()
    score = serializers.JSONField()
    slot = serializers.ChoiceField(choices=MarkSlot.choices, required=False, allow_null=True)
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class MarksInput(serializers.Serializer):
    """A single entry (ticket_number, score, slot, reason) or a batch (`marks`)."""

    session = serializers.IntegerField()
    component = serializers.CharField()
    ticket_number = serializers.CharField(required=False)
    score = serializers.JSONField(required=False)
    slot = serializers.ChoiceField(choices=MarkSlot.choices, required=False, allow_null=True)
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    marks = MarkInput(many=True, required=False)

    def validate(self, attrs):
        if "marks" not in attrs and ("ticket_number" not in attrs or "score" not in attrs):
            raise serializers.ValidationError(
                {"marks": ["请提交 ticket_number 与 score，或提交 marks 列表"]}
            )
        return attrs


class MarkOutput(serializers.Serializer):
    id = serializers.IntegerField()
    ticket_number = serializers.CharField(source="booking.ticket_number")
    component = serializers.CharField(source="component.code")
    slot = serializers.CharField()
    score = serializers.DecimalField(max_digits=5, decimal_places=1)


class CountsOutput(serializers.Serializer):
    entered = serializers.IntegerField()
    changed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rows = serializers.IntegerField(required=False)


class ImportInput(serializers.Serializer):
    session = serializers.IntegerField()
    file = serializers.FileField()
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class SessionInput(serializers.Serializer):
    session = serializers.IntegerField()


class FinaliseOutput(serializers.Serializer):
    finalised = serializers.ListField(child=serializers.CharField())
    pending = serializers.ListField(child=serializers.DictField())


class TrainingInput(serializers.Serializer):
    component = serializers.CharField(required=False, default="training")
    note = serializers.CharField(required=False, allow_blank=True, default="")


class ComponentScoreOutput(serializers.Serializer):
    component = serializers.CharField(source="component.code")
    component_name = serializers.CharField(source="component.name")
    attempt = serializers.IntegerField()
    status = serializers.CharField()
    score = serializers.DecimalField(max_digits=5, decimal_places=1, allow_null=True)
    method = serializers.CharField()


class CertificateResultOutput(serializers.Serializer):
    kind = serializers.CharField()
    kind_label = serializers.CharField(source="get_kind_display")
    attempt = serializers.IntegerField()
    earned = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())


class CaseResultsOutput(serializers.Serializer):
    case = serializers.IntegerField(source="case.pk")
    status = serializers.CharField(source="case.status")
    components = ComponentScoreOutput(many=True)
    certificates = CertificateResultOutput(many=True)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# Views -----------------------------------------------------------------------------------


class MarkingViewSet(viewsets.ViewSet):
    """/marking/: what the grader marks, their sheet, their marks, score files."""

    permission_classes = [Graders]

    def get_permissions(self):
        if self.action == "score_import":
            return [ScoreImporters()]
        return super().get_permissions()

    @extend_schema(responses=AssignmentOutput(many=True))
    @action(detail=False, methods=["get"])
    def assignments(self, request):
        """The sessions and components assigned to me."""
        rows = selectors.marking_assignments(user=request.user)
        return Response(AssignmentOutput(rows, many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("session", int, required=True),
            OpenApiParameter("component", str, required=True, description="科目代码"),
        ],
        responses=SheetRowOutput(many=True),
    )
    @action(detail=False, methods=["get"])
    def sheet(self, request):
        """My marking sheet: one row per checked-in candidate (ticket and seat only),
        with my own mark; never another grader's (double-blind)."""
        query = _valid(SheetQuery, request.query_params)
        rows = selectors.marking_sheet(
            user=request.user, session_id=query["session"], component=query["component"]
        )
        if rows is None:
            raise NotFound("未找到您负责评分的场次科目")
        return Response(SheetRowOutput(rows, many=True).data)

    @extend_schema(request=MarksInput, responses={200: MarkOutput, 201: CountsOutput})
    @action(detail=False, methods=["post"])
    def marks(self, request):
        """Enter or change one mark, or a batch from the grid (`marks`: all or none)."""
        data = _valid(MarksInput, request.data)
        session = get_object_or_404(ExamSession, pk=data["session"])
        if "marks" in data:
            counts = scoring.marks_enter(
                actor=request.user,
                session=session,
                component=data["component"],
                entries=[dict(entry) for entry in data["marks"]],
            )
            return Response(CountsOutput(counts).data, status=status.HTTP_201_CREATED)
        booking = Booking.objects.filter(
            session=session, ticket_number__iexact=data["ticket_number"].strip()
        ).first()
        if booking is None:
            raise NotFound(f"准考证号 {data['ticket_number']} 不是本场次的考生")
        mark = scoring.mark_enter(
            actor=request.user,
            booking=booking,
            component=data["component"],
            score=data["score"],
            slot=data.get("slot"),
            reason=data["reason"],
        )
        return Response(MarkOutput(mark).data)

    @extend_schema(request={"multipart/form-data": ImportInput}, responses={201: CountsOutput})
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[MultiPartParser, FormParser, JSONParser],
    )
    def score_import(self, request):
        """Import a score file (XLSX or CSV: 准考证号, 科目代码, 分数[, 评次]). All or
        nothing: a refused file answers 400 with `errors` (row, column, message)."""
        data = _valid(ImportInput, request.data)
        session = get_object_or_404(ExamSession, pk=data["session"])
        upload = data["file"]
        counts = scoring.scores_import(
            actor=request.user,
            session=session,
            file=upload.read(),
            name=upload.name,
            reason=data["reason"],
        )
        return Response(CountsOutput(counts).data, status=status.HTTP_201_CREATED)


CASE_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="案件 ID")


class ResultViewSet(viewsets.ViewSet):
    """/results/: a case's results per certificate; finalising a session; training."""

    permission_classes = [ResultReaders]

    def get_permissions(self):
        if self.action in ("finalise", "training_complete"):
            return [Coordinators()]
        return super().get_permissions()

    @extend_schema(parameters=[CASE_ID], responses=CaseResultsOutput)
    def retrieve(self, request, pk=None):
        """Component scores and, per certificate, earned or not with the reasons."""
        case = get_object_or_404(Case, pk=pk)
        if not selectors.case_results_readable(user=request.user, case=case):
            raise NotFound("未找到该案件的成绩")
        data = {"case": case, **selectors.case_results(case)}
        return Response(CaseResultsOutput(data).data)

    @extend_schema(request=SessionInput, responses=FinaliseOutput)
    @action(detail=False, methods=["post"])
    def finalise(self, request):
        """Write final scores and certificate results for every complete candidate of a
        marking session; the others are listed as pending with the reason."""
        data = _valid(SessionInput, request.data)
        session = get_object_or_404(ExamSession, pk=data["session"])
        summary = results.session_finalise(actor=request.user, session=session)
        return Response(
            FinaliseOutput({"finalised": summary.finalised, "pending": summary.pending}).data
        )

    @extend_schema(
        parameters=[CASE_ID], request=TrainingInput, responses={201: ComponentScoreOutput}
    )
    @action(detail=True, methods=["post"], url_path="training-complete")
    def training_complete(self, request, pk=None):
        """Record the case's completion of its plan's training."""
        data = _valid(TrainingInput, request.data)
        case = get_object_or_404(Case, pk=pk)
        row = results.training_complete(actor=request.user, case=case, **data)
        return Response(ComponentScoreOutput(row).data, status=status.HTTP_201_CREATED)
