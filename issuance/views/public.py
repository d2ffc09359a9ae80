"""Public verification pages (issue 4 item 5; DESIGN.md "Public verification"): the
number + name form and the QR landing page. No login.

The form is a GET form without a CSRF token, and the not-found page echoes nothing the
caller typed, so a miss and a wrong name render byte-identical bodies. Status codes
follow the API: 200 answer, 400 bad input, 404 not found, 429 rate-limited.
"""

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from issuance.verification import (
    NAME_MAX_LENGTH,
    NUMBER_MAX_LENGTH,
    certificate_by_code,
    certificate_lookup,
    verification_answer,
    verification_query_errors,
    verify_rate_limit,
)

TEMPLATE = "issuance/verify.html"


def _page(request, *, status=200, **context):
    context.setdefault("number", "")
    context.setdefault("name", "")
    context.setdefault("errors", {})
    context["number_max_length"] = NUMBER_MAX_LENGTH
    context["name_max_length"] = NAME_MAX_LENGTH
    return render(request, TEMPLATE, context, status=status)


def _limited(request, retry_after: int):
    response = _page(request, status=429, limited=True)
    response["Retry-After"] = str(retry_after)
    return response


def _answer_page(request, certificate, *, by_code: bool):
    answer = verification_answer(certificate, timezone.localdate())
    return _page(request, answer=answer, by_code=by_code)


# never_cache: a revoked certificate must not be shown as valid from a cached page.
@never_cache
@require_safe
def verify(request):
    """GET form: number + holder name. Without parameters, the empty form."""
    retry_after = verify_rate_limit(request)
    if retry_after is not None:
        return _limited(request, retry_after)
    if "number" not in request.GET and "name" not in request.GET:
        return _page(request, show_form=True)
    number, name = request.GET.get("number", ""), request.GET.get("name", "")
    errors = verification_query_errors(number, name)
    if errors:
        # Nothing was looked up, so echoing the input tells nothing and saves retyping.
        return _page(
            request,
            status=400,
            show_form=True,
            errors=errors,
            number=number.strip()[:NUMBER_MAX_LENGTH],
            name=name.strip()[:NAME_MAX_LENGTH],
        )
    certificate = certificate_lookup(number=number, name=name)
    if certificate is None:
        return _page(request, status=404, show_form=True, not_found=True)
    return _answer_page(request, certificate, by_code=False)


@never_cache
@require_safe
def verify_code(request, code):
    """The QR landing page: the code in the URL is enough, no name needed."""
    retry_after = verify_rate_limit(request)
    if retry_after is not None:
        return _limited(request, retry_after)
    certificate = certificate_by_code(code)
    if certificate is None:
        return _page(request, status=404, show_form=True, not_found=True)
    return _answer_page(request, certificate, by_code=True)
