"""API to queue and follow long batches.

POST /api/v1/jobs/ {"kind": ..., "params": {...}} -> 202 with the job (Location: its url);
GET  /api/v1/jobs/ -> my jobs, newest first (an admin sees everyone's);
GET  /api/v1/jobs/<id>/ -> status, done / total, percent, message, result or error.
The kinds and their params are documented with the schema; the checks are the kinds'
(jobs.registry), the work the owning app's service.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from . import services
from .models import Job
from .registry import kinds


class JobInput(serializers.Serializer):
    kind = serializers.CharField(
        help_text=(
            "exams.allocate: {plan, sessions?}；issuance.approve: {ids}；issuance.issue: {ids, on?}"
        )
    )
    params = serializers.DictField(required=False, default=dict)

    def validate_kind(self, value):
        if value not in kinds():
            known = "、".join(kinds())
            raise ValidationError(f"未知的任务类型「{value}」；可用：{known}")
        return value


class JobOutput(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    kind = serializers.CharField()
    label = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "running", "succeeded", "failed"])
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField()
    message = serializers.CharField()
    finished = serializers.BooleanField()
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField()
    follow_up = serializers.JSONField(required=False)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


def _out(job, *, follow_up: bool = True) -> dict:
    body = services.job_progress(job, follow_up=follow_up)
    body["url"] = reverse("job-detail", args=[job.pk])
    return JobOutput(body).data


class JobViewSet(viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated]
    serializer_class = JobOutput
    filter_backends = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Job.objects.none()
        return services.job_list(user=self.request.user)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([_out(job, follow_up=False) for job in page])

    def retrieve(self, request, pk=None):
        return Response(_out(self.get_object()))

    @extend_schema(
        request=JobInput,
        responses={202: JobOutput},
        examples=[
            OpenApiExample("批量发证", value={"kind": "issuance.issue", "params": {"ids": [1, 2]}}),
            OpenApiExample("自动编排", value={"kind": "exams.allocate", "params": {"plan": 1}}),
        ],
    )
    def create(self, request):
        """Check the request and queue the batch; 400 with field messages (under
        `params`) when it cannot run, nothing queued. Poll the returned url."""
        data = JobInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = services.job_create(
                actor=request.user,
                kind=data.validated_data["kind"],
                data=data.validated_data["params"],
            )
        except DjangoValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise ValidationError({"params": detail}) from exc
        body = _out(job)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})
