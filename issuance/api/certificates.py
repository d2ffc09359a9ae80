"""Certificates API for issuers' officers and admins (DESIGN.md: `GET
/api/v1/certificates/?number=...`, `GET /api/v1/certificates/<id>/pdf/`; transitions
as `POST /api/v1/certificates/<id>/<transition>/`).

Thin views (STYLE.md §3): reads go through issuance.queries, which scopes them to the
officer's issuer (another issuer's certificate is a 404 to read); writes call one
service each, which checks the issuer itself, so acting on another issuer's certificate
is a 403 and a transition from the wrong state a 409 (config.exception_handler).
"""

# The class below defines `list`, which would shadow the builtin in annotations.
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from cases.api.permissions import HasRole
from cases.models import CertificateKind
from cases.roles import Role
from issuance import bundles, queries, services
from issuance.models import Certificate, CertificateStatus

from . import serializers as s


class CertificateOfficers(HasRole):
    """Issuers' officers (admin holds every role); the issuer scope is the selector's
    and the services' job."""

    roles = (Role.ISSUER_OFFICER,)
    message = "仅发证机关人员可以访问证书"


class PDFRenderer(BaseRenderer):
    """Lets a client ask for `Accept: application/pdf`; the PDF itself is a
    FileResponse and never passes through a renderer."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _out(certificate: Certificate) -> Response:
    return Response(s.CertificateOutput(certificate).data)


class CertificateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [CertificateOfficers]
    serializer_class = s.CertificateOutput
    filter_backends = []  # filters are the selector's (issuance.queries)

    def get_queryset(self):
        if self.action == "list":
            filters = _valid(s.CertificateFilterInput, self.request.query_params)
            return queries.certificate_list(user=self.request.user, **filters)
        return queries.certificate_list(user=self.request.user)

    def _target(self, pk) -> Certificate:
        """The certificate a transition acts on, unscoped: the service decides whether
        this officer may act on it (403), so another issuer's is not a 404."""
        return get_object_or_404(Certificate, pk=pk)

    @extend_schema(
        parameters=[
            OpenApiParameter("number", str, description="证书编号（精确匹配）"),
            OpenApiParameter("status", str, enum=CertificateStatus.values),
            OpenApiParameter("kind", str, enum=CertificateKind.values),
        ]
    )
    def list(self, request, *args, **kwargs):
        """The certificates of my issuer (all of them for an admin), newest first."""
        return super().list(request, *args, **kwargs)

    # Transitions -----------------------------------------------------------------------

    @extend_schema(request=None, responses=s.CertificateOutput)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """pending -> approved."""
        return _out(services.certificate_approve(actor=request.user, certificate=self._target(pk)))

    @extend_schema(request=s.IssueInput, responses=s.CertificateOutput)
    @action(detail=True, methods=["post"])
    def issue(self, request, pk=None):
        """approved -> issued: number, verification code, validity; the PDF is rendered
        in the background. Issuing again is a 409 and takes no number."""
        data = _valid(s.IssueInput, request.data)
        certificate = services.certificate_issue(
            actor=request.user, certificate=self._target(pk), on=data.get("on")
        )
        return _out(certificate)

    @extend_schema(request=s.ReasonInput, responses=s.CertificateOutput)
    @action(detail=True, methods=["post"])
    def refuse(self, request, pk=None):
        """pending/approved -> refused, with a reason (400 without)."""
        reason = _valid(s.ReasonInput, request.data)["reason"]
        certificate = services.certificate_refuse(
            actor=request.user, certificate=self._target(pk), reason=reason
        )
        return _out(certificate)

    @extend_schema(request=s.ReasonInput, responses=s.CertificateOutput)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """issued -> revoked, with a reason (400 without)."""
        reason = _valid(s.ReasonInput, request.data)["reason"]
        certificate = services.certificate_revoke(
            actor=request.user, certificate=self._target(pk), reason=reason
        )
        return _out(certificate)

    # Batches: all or nothing -----------------------------------------------------------

    def _batch_targets(self, ids: list[int]) -> list[Certificate]:
        found = {c.pk: c for c in Certificate.objects.filter(pk__in=ids)}
        missing = [pk for pk in dict.fromkeys(ids) if pk not in found]
        if missing:
            raise ValidationError({"ids": [f"证书不存在：{'、'.join(f'#{pk}' for pk in missing)}"]})
        return list(found.values())

    def _batch_result(self, certificates: list[Certificate]) -> Response:
        rows = queries.certificate_list(user=self.request.user).filter(
            pk__in=[c.pk for c in certificates]
        )
        return Response(s.BatchOutput({"count": len(certificates), "results": rows}).data)

    @extend_schema(request=s.BatchInput, responses=s.BatchOutput)
    @action(detail=False, methods=["post"], url_path="batch-approve", url_name="batch-approve")
    def batch_approve(self, request):
        """Approve every listed certificate, or none: the first one that cannot be
        approved is named in the error (403 another issuer's, 409 wrong state)."""
        ids = _valid(s.BatchInput, request.data)["ids"]
        done = services.certificates_approve(
            actor=request.user, certificates=self._batch_targets(ids)
        )
        return self._batch_result(done)

    @extend_schema(request=s.BatchIssueInput, responses=s.BatchOutput)
    @action(detail=False, methods=["post"], url_path="batch-issue", url_name="batch-issue")
    def batch_issue(self, request):
        """Issue every listed (approved) certificate, or none; serials in case order."""
        data = _valid(s.BatchIssueInput, request.data)
        done = services.certificates_issue(
            actor=request.user, certificates=self._batch_targets(data["ids"]), on=data.get("on")
        )
        return self._batch_result(done)

    # Reads -----------------------------------------------------------------------------

    @extend_schema(parameters=[s.DueForReviewInput], responses=s.CertificateOutput(many=True))
    @action(detail=False, methods=["get"], url_path="due-for-review", url_name="due-for-review")
    def due_for_review(self, request):
        """Issued certificates whose review date is within `within_days` (default 90)
        or already past, soonest first."""
        within_days = _valid(s.DueForReviewInput, request.query_params)["within_days"]
        rows = queries.certificates_due_for_review(user=request.user, within_days=within_days)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.CertificateOutput(page, many=True).data)

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY),
            404: OpenApiResponse(description="证书不存在，或PDF尚未生成"),
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, PDFRenderer])
    def pdf(self, request, pk=None):
        """The stored, digitally signed PDF, byte for byte as rendered."""
        certificate = self.get_object()
        try:
            return bundles.pdf_response(certificate)
        except Http404 as exc:
            raise exceptions.NotFound(str(exc)) from exc

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        # An error asked for as PDF is still answered in the one JSON error shape.
        if isinstance(response, Response) and isinstance(
            getattr(response, "accepted_renderer", None), PDFRenderer
        ):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response
