"""The product's URLconf plus `bench-constant/`, the baseline of bench/bench_verify.py:
a view that does nothing but return a constant JSON body, behind the same middleware in
the same gunicorn workers as the verification API. Used only through
bench/verify_settings.py, never by config.settings.

It comes first, so resolving it costs less than resolving /api/v1/verify/: the baseline
is the cheapest request this middleware stack can serve, which errs against the ratio.
"""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.http import require_safe

from config.urls import urlpatterns as product_urlpatterns

CONSTANT = {"status": "ok"}


@require_safe
def constant(request):
    return JsonResponse(CONSTANT)


urlpatterns = [path("bench-constant/", constant, name="bench-constant"), *product_urlpatterns]
