"""Public verification API (issue 4 item 5): GET /api/v1/verify/?number=...&name=... or
?code=... (the QR link's code). No login: no authentication classes, so neither a
session nor CSRF is involved, and the JSON renderer only, so a browser gets the same
bytes as a script. A miss and a wrong name give the same 404 body.

It is the busiest public endpoint, and DRF's request wrapping, content negotiation and
response rendering cost more CPU than the look-up itself (about 0.3 ms a request,
bench/README.md "verify"). So an ordinary GET or HEAD, one asking for JSON or anything
(no Accept header, */* or application/json) without DRF's `format` parameter, is
answered by `plain_answer` as a Django HttpResponse with the same status, headers and
bytes; every other request (other methods, OPTIONS, other Accept headers, `format`)
goes through DRF as before, which also describes the endpoint in the OpenAPI schema.
"""

import time

from django.http import HttpResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import http_date
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from issuance.verification import (
    NOT_FOUND_MESSAGE,
    RATE_LIMITED_MESSAGE,
    certificate_by_code,
    certificate_lookup,
    verification_answer,
    verification_query_errors,
    verify_rate_limit_begin,
)


class VerificationAnswerSerializer(serializers.Serializer):
    """The public answer; personal data masked (DESIGN.md "Public verification")."""

    status = serializers.ChoiceField(choices=["valid", "revoked", "expired"])
    status_label = serializers.CharField(help_text="有效 / 已撤销 / 已过期")
    certificate_type = serializers.CharField(help_text="职业资格证书类型代码，或 SKILL")
    type_label = serializers.CharField()
    occupation = serializers.CharField()
    level = serializers.IntegerField(allow_null=True, help_text="职业技能等级（1-5），资格证书为空")
    number = serializers.CharField(help_text="证书编号（含身份证号的编号已遮蔽）")
    issuer = serializers.CharField()
    issued_on = serializers.DateField()
    valid_until = serializers.DateField(allow_null=True)
    review_due = serializers.DateField(allow_null=True)
    revoked_on = serializers.DateField(allow_null=True)
    holder_name = serializers.CharField(help_text="姓名，仅显示首字")
    id_number = serializers.CharField(help_text="身份证号码，仅显示前3位和后4位")


class VerifyDetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


# The Accept headers DRF's negotiation (JSON renderer only) answers with JSON as they
# are; None is no header at all.
PLAIN_ACCEPT = frozenset({None, "*/*", "application/json"})
# What add_never_cache_headers writes (max-age=0, then the four directives).
NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"
_RENDERER = JSONRenderer()


def _outcome(params, request) -> tuple[int, dict, int | None]:
    """(status, body, Retry-After or None) of a verification request: 429 over the rate
    limit, 400 with field messages, 404 for a miss and a wrong name alike, 200 with the
    answer. `params` is the query string (a QueryDict). The count against the limit is
    sent first and read after the look-up (verify_rate_limit_begin): over the limit, the
    look-up is thrown away and only the 429 is answered."""
    retry_after = verify_rate_limit_begin(request)
    try:
        outcome = _lookup_outcome(params)
    finally:
        seconds = retry_after()
    if seconds is not None:
        return status.HTTP_429_TOO_MANY_REQUESTS, {"detail": RATE_LIMITED_MESSAGE}, seconds
    return outcome


def _lookup_outcome(params) -> tuple[int, dict, None]:
    code = params.get("code", "").strip()
    if code:
        certificate = certificate_by_code(code)
    else:
        number, name = params.get("number", ""), params.get("name", "")
        errors = verification_query_errors(number, name)
        if errors:
            return status.HTTP_400_BAD_REQUEST, errors, None
        certificate = certificate_lookup(number=number, name=name)
    if certificate is None:
        return status.HTTP_404_NOT_FOUND, {"detail": NOT_FOUND_MESSAGE}, None
    # verification_answer already has the serializer's shape (JSON-ready strings, dates
    # in ISO form, the same keys in the same order): running it through
    # VerificationAnswerSerializer gave the same dict at a fifth of a millisecond a
    # request, deep-copying 14 fields. The serializer stays as the schema's description
    # (extend_schema below); the tests compare the JSON key by key.
    return status.HTTP_200_OK, verification_answer(certificate, timezone.localdate()), None


def answers_plainly(request) -> bool:
    """Whether `plain_answer` gives this request what DRF would: a GET or HEAD asking
    for JSON or anything, without DRF's `format` parameter."""
    return (
        request.method in ("GET", "HEAD")
        and request.META.get("HTTP_ACCEPT") in PLAIN_ACCEPT
        and "format" not in request.GET
    )


def plain_answer(request) -> HttpResponse:
    """The answer DRF would give to a plain GET, without DRF: the same JSON bytes (its
    renderer), status and headers, Allow included. As before, a 400 (raised as a
    ValidationError through the exception handler) has no cache headers; every other
    answer must not be kept by a browser or proxy, so that a revocation shows at once."""
    code, body, retry_after = _outcome(request.GET, request)
    response = HttpResponse(_RENDERER.render(body), content_type="application/json", status=code)
    response.headers["Allow"] = "GET, HEAD, OPTIONS"
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if code != status.HTTP_400_BAD_REQUEST:
        response.headers["Expires"] = http_date(time.time())
        response.headers["Cache-Control"] = NEVER_CACHE
    return response


class VerifyView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    def dispatch(self, request, *args, **kwargs):
        if answers_plainly(request):
            return plain_answer(request)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        operation_id="certificate_verify",
        summary="证书公开查询",
        description=(
            "按证书编号 + 持证人姓名，或按证书二维码中的核验码查询证书状态。无需登录；"
            "按客户端地址限流（VERIFY_RATE）。编号不存在与姓名不符返回相同的 404。"
        ),
        auth=[],
        parameters=[
            OpenApiParameter("number", str, description="证书编号（与 name 一起使用）"),
            OpenApiParameter("name", str, description="持证人姓名（与 number 一起使用）"),
            OpenApiParameter("code", str, description="证书二维码中的核验码（单独使用）"),
        ],
        responses={
            200: VerificationAnswerSerializer,
            400: OpenApiResponse(description="参数缺失或证书编号格式不正确（按字段给出）"),
            404: OpenApiResponse(VerifyDetailSerializer, description="未找到匹配的证书"),
            429: OpenApiResponse(VerifyDetailSerializer, description="查询过于频繁"),
        },
    )
    def get(self, request):
        code, body, retry_after = _outcome(request.query_params, request)
        if code == status.HTTP_400_BAD_REQUEST:
            raise ValidationError(body)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        response = Response(body, status=code, headers=headers)
        # Revocation must show at once: no browser or proxy may keep an old answer.
        add_never_cache_headers(response)
        return response
