"""API of bulk candidate registration: upload an XLSX, then poll the job.

POST /api/v1/candidate-imports/ (multipart, field `file`) -> 202 with the job;
GET  /api/v1/candidate-imports/<id>/ -> status, progress and the full error report.
Coordinators only. The work is cases.imports; these views only parse and serialise.
"""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from cases import imports
from cases.models import ImportJob
from cases.roles import Role

from .permissions import HasRole


class Coordinators(HasRole):
    roles = (Role.COORDINATOR,)
    message = "需要以下角色之一：考务人员"


class ImportUploadInput(serializers.Serializer):
    file = serializers.FileField(help_text="按模板填写的 XLSX 文件")


class ImportErrorOutput(serializers.Serializer):
    row = serializers.IntegerField(
        allow_null=True, help_text="Excel 中的行号；整个文件的问题为 null"
    )
    column = serializers.CharField(help_text="列名（表头）；整个文件的问题为空")
    message = serializers.CharField(help_text="原因")


class ImportJobOutput(serializers.ModelSerializer):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    uploaded_by = serializers.CharField(source="uploaded_by.get_username", read_only=True)
    progress = serializers.IntegerField(source="progress_percent", read_only=True)
    errors = ImportErrorOutput(many=True, read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "url",
            "status",
            "status_display",
            "original_name",
            "uploaded_by",
            "created_at",
            "started_at",
            "finished_at",
            "total_rows",
            "processed_rows",
            "progress",
            "created_count",
            "errors",
        ]

    def get_url(self, job) -> str:
        return reverse("candidate-import-detail", args=[job.pk])


class ImportJobListOutput(ImportJobOutput):
    class Meta(ImportJobOutput.Meta):
        fields = [f for f in ImportJobOutput.Meta.fields if f != "errors"]


class CandidateImportViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [Coordinators]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ImportJobOutput
    filter_backends = []

    def get_queryset(self):
        queryset = ImportJob.objects.select_related("uploaded_by").order_by("-created_at", "-pk")
        if self.action == "list":
            queryset = queryset.defer("errors")
        return queryset

    def get_serializer_class(self):
        return ImportJobListOutput if self.action == "list" else ImportJobOutput

    @extend_schema(
        request={"multipart/form-data": ImportUploadInput}, responses={202: ImportJobOutput}
    )
    def create(self, request):
        """Store the file and queue its import; poll the returned job's url."""
        data = ImportUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        job = imports.import_job_create(actor=request.user, file=upload, name=upload.name)
        job.refresh_from_db()  # with eager Celery the import has already run
        body = ImportJobOutput(job).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})
