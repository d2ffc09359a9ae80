"""Thin views: authentication, permission, input serializer, one service or selector
call, output serializer (STYLE.md §3). Errors take the one shape of
config.exception_handler."""

import django_filters
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cases import plans, selectors, services
from cases.models import Case, CaseExemption, CaseStatus, EvaluationPlan, HeldCertificate

from . import serializers as s
from .permissions import CaseReaders


class CandidateViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [CaseReaders]
    serializer_class = s.CandidateOutput
    filter_backends = []  # search and filters are the selector's

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="姓名、身份证号码或电话（部分匹配）"),
            OpenApiParameter("education", str),
            OpenApiParameter("has_held", str, enum=["yes", "no"]),
            OpenApiParameter("status", str, description="有处于该状态的报名案件"),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        return (
            selectors.candidate_list(
                user=self.request.user,
                search=params.get("q", ""),
                filters={key: params.get(key, "") for key in ("education", "has_held", "status")},
            )
            .prefetch_related("work_experience__occupation")
            .order_by("-created_at", "-pk")
        )

    @extend_schema(request=s.CandidateInput, responses={201: s.CandidateOutput})
    def create(self, request):
        data = self._valid(s.CandidateInput, request.data)
        candidate = services.candidate_create(actor=request.user, **data)
        return Response(s.CandidateOutput(candidate).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.CandidateUpdateInput, responses=s.CandidateOutput)
    def partial_update(self, request, pk=None):
        data = self._valid(s.CandidateUpdateInput, request.data, partial=True)
        candidate = services.candidate_update(
            actor=request.user, candidate=self.get_object(), **data
        )
        return Response(s.CandidateOutput(candidate).data)

    @extend_schema(
        request=None,
        responses={200: {"type": "object", "properties": {"id_number": {"type": "string"}}}},
    )
    @action(detail=True, methods=["post"], url_path="reveal-id-number")
    def reveal_id_number(self, request, pk=None):
        """The full ID number; every call is written to the audit trail."""
        number = services.candidate_reveal_id_number(
            actor=request.user, candidate=self.get_object()
        )
        return Response({"id_number": number})

    @staticmethod
    def _valid(serializer_class, data, **kwargs) -> dict:
        serializer = serializer_class(data=data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class HeldCertificateViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [CaseReaders]
    serializer_class = s.HeldCertificateOutput
    filterset_fields = ["candidate", "verification"]
    queryset = HeldCertificate.objects.select_related("qualification_type").order_by("pk")

    @extend_schema(request=s.HeldCertificateInput, responses={201: s.HeldCertificateOutput})
    def create(self, request):
        data = CandidateViewSet._valid(s.HeldCertificateInput, request.data)
        held = services.held_certificate_create(actor=request.user, **data)
        return Response(s.HeldCertificateOutput(held).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.VerifyInput, responses=s.HeldCertificateOutput)
    @action(detail=True, methods=["post"])
    def verify(self, request, pk=None):
        data = CandidateViewSet._valid(s.VerifyInput, request.data)
        held = services.held_certificate_verify(actor=request.user, held=self.get_object(), **data)
        return Response(s.HeldCertificateOutput(held).data)


class PlanViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    http_method_names = ["get", "post", "patch", "head", "options"]
    permission_classes = [CaseReaders]
    serializer_class = s.PlanOutput
    queryset = EvaluationPlan.objects.select_related(
        "qualification_type", "occupation"
    ).prefetch_related("components__component", "certificates__marks__component", "disabled_rules")

    @extend_schema(request=s.PlanInput, responses={201: s.PlanOutput})
    def create(self, request):
        """A draft plan with the catalog's components and pass rules, and the attachment
        rows switched off for its province."""
        data = CandidateViewSet._valid(s.PlanInput, request.data)
        plan = plans.plan_create(actor=request.user, **data)
        return Response(
            s.PlanOutput(self.get_queryset().get(pk=plan.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=s.PlanConfigureInput, responses=s.PlanOutput)
    def partial_update(self, request, pk=None):
        """Override a draft plan's settings, certificates' theory-first rule, components,
        pass marks and rows switched off."""
        data = CandidateViewSet._valid(s.PlanConfigureInput, request.data)
        for name in ("certificates", "components", "pass_marks"):
            if name in data:
                data[name] = {key: dict(value) for key, value in data[name].items()}
        plan = plans.plan_configure(actor=request.user, plan=self.get_object(), **data)
        return Response(s.PlanOutput(self.get_queryset().get(pk=plan.pk)).data)

    def _move(self, service):
        plan = service(actor=self.request.user, plan=self.get_object())
        return Response(s.PlanOutput(self.get_queryset().get(pk=plan.pk)).data)

    @extend_schema(request=None, responses=s.PlanOutput)
    @action(detail=True, methods=["post"])
    def open(self, request, pk=None):
        return self._move(plans.plan_open)

    @extend_schema(request=None, responses=s.PlanOutput)
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        return self._move(plans.plan_close)

    @extend_schema(request=None, responses=s.PlanOutput)
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return self._move(plans.plan_archive)


class CaseFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=CaseStatus.choices)

    class Meta:
        model = Case
        fields = ["status", "plan", "candidate"]


def _transition(service, *, with_reason: bool):
    """A POST action calling one transition service; the reason is passed where the
    service takes one (return_for_correction and reject require it)."""

    @extend_schema(request=s.ReasonInput if with_reason else None, responses=s.CaseOutput)
    def view(self, request, pk=None):
        kwargs = {}
        if with_reason:
            kwargs["reason"] = CandidateViewSet._valid(s.ReasonInput, request.data)["reason"]
        case = service(actor=request.user, case=self.get_object(), **kwargs)
        return Response(s.CaseOutput(selectors.case_get(pk=case.pk)).data)

    view.__name__ = service.__name__.removeprefix("case_")
    view.__doc__ = service.__doc__
    return action(detail=True, methods=["post"])(view)


class CaseViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [CaseReaders]
    serializer_class = s.CaseOutput
    filterset_class = CaseFilter

    def get_queryset(self):
        return (
            selectors.case_list(user=self.request.user)
            .prefetch_related(
                Prefetch("exemptions", queryset=CaseExemption.objects.select_related("component"))
            )
            .order_by("-created_at", "-pk")
        )

    @extend_schema(request=s.CaseInput, responses={201: s.CaseOutput})
    def create(self, request):
        data = CandidateViewSet._valid(s.CaseInput, request.data)
        case = services.case_create(actor=request.user, **data)
        return Response(s.CaseOutput(case).data, status=status.HTTP_201_CREATED)

    submit = _transition(services.case_submit, with_reason=False)
    return_for_correction = _transition(services.case_return_for_correction, with_reason=True)
    reject = _transition(services.case_reject, with_reason=True)
    approve = _transition(services.case_approve, with_reason=False)
    withdraw = _transition(services.case_withdraw, with_reason=True)
    retake = _transition(services.case_retake, with_reason=False)

    @extend_schema(responses=s.AuditEventOutput(many=True))
    @action(detail=True, methods=["get"])
    def audit(self, request, pk=None):
        events = selectors.case_audit_events(case=self.get_object())
        return Response(s.AuditEventOutput(events, many=True).data)
