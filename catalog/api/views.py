from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import (
    Component,
    Department,
    EquivalenceRule,
    Occupation,
    QualificationType,
    RecognitionRule,
    SkillLevel,
)
from catalog.recognition import HeldFacts, recognize

from . import serializers


class PublicReadOnly(viewsets.ReadOnlyModelViewSet):
    """Catalog reads are public (DESIGN.md)."""

    permission_classes = [AllowAny]
    pagination_class = None
    lookup_field = "code"


class DepartmentViewSet(PublicReadOnly):
    queryset = Department.objects.all()
    serializer_class = serializers.DepartmentSerializer


class OccupationViewSet(PublicReadOnly):
    queryset = Occupation.objects.all()
    serializer_class = serializers.OccupationSerializer


class SkillLevelViewSet(PublicReadOnly):
    queryset = SkillLevel.objects.all()
    serializer_class = serializers.SkillLevelSerializer
    lookup_field = "level"


class ComponentViewSet(PublicReadOnly):
    queryset = Component.objects.all()
    serializer_class = serializers.ComponentSerializer


class QualificationTypeViewSet(PublicReadOnly):
    queryset = QualificationType.objects.select_related(
        "department", "occupation"
    ).prefetch_related("components__component")
    serializer_class = serializers.QualificationTypeSerializer


class RecognitionRuleViewSet(PublicReadOnly):
    queryset = RecognitionRule.objects.select_related("held", "target").prefetch_related("exempt")
    serializer_class = serializers.RecognitionRuleSerializer
    lookup_field = "row"


class EquivalenceRuleViewSet(PublicReadOnly):
    queryset = EquivalenceRule.objects.select_related("held", "occupation")
    serializer_class = serializers.EquivalenceRuleSerializer
    lookup_field = "held__code"
    lookup_url_kwarg = "code"


class RecognitionView(APIView):
    """What held certificates earn towards a target type (same JSON as `manage.py recognize`)."""

    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[
            OpenApiParameter("held", str, many=True, description="held certificate type code"),
            OpenApiParameter("target", str, required=True),
            OpenApiParameter("on", str, description="application date, YYYY-MM-DD"),
        ],
        responses=serializers.RecognitionResultSerializer,
    )
    def get(self, request):
        query = serializers.RecognitionQuerySerializer(
            data={
                "held": request.query_params.getlist("held"),
                "target": request.query_params.get("target", ""),
                **({"on": request.query_params["on"]} if request.query_params.get("on") else {}),
            }
        )
        query.is_valid(raise_exception=True)
        data = query.validated_data
        result = recognize(
            held=[HeldFacts(type_code=code) for code in data["held"]],
            target=data["target"],
            on=data.get("on") or timezone.localdate(),
        )
        return Response(result.as_json())
