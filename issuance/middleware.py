"""The public verification API's short way through the middleware (issue 5 item 5).

GET /api/v1/verify/ is the busiest public endpoint: anonymous, read-only, JSON. The full
middleware stack and URL resolution cost it about 0.2 ms of CPU a request (measured
in-process, bench/README.md "verify"), as much as the PostgreSQL look-up and the Redis
count together, for sessions, CSRF, authentication, messages, htmx and the audit
context, none of which the answer uses. Installed directly after SecurityMiddleware in
settings.MIDDLEWARE, this middleware answers such a request itself with
issuance.api.verify.plain_answer and runs only the middleware whose effects the answer
shows:

- SecurityMiddleware, which wraps this one: HTTPS redirect, HSTS, nosniff, Referrer
  and Cross-Origin-Opener policies, as for every response;
- CommonMiddleware's request and response steps: the ALLOWED_HOSTS check (a bad Host
  is still a 400), DISALLOWED_USER_AGENTS, Content-Length;
- LocaleMiddleware's headers: Content-Language and Vary (`_language_headers`);
- XFrameOptionsMiddleware's: X-Frame-Options.

So the status, headers and body are those of the full stack. What a skipped middleware
would only do for a request carrying cookies does not happen: a stale session cookie
is not deleted, a malformed CSRF cookie not replaced (the answer neither reads nor sets
either). Any other request (another path, method or Accept header, DRF's `format`)
goes down the whole stack as before, unchanged.
"""

import functools

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers

from issuance.api.verify import answers_plainly, plain_answer


@functools.lru_cache(maxsize=8)
def _verify_path(urlconf: str, script_prefix: str) -> str | None:
    """The API's path (request.path form) under this URLconf and script prefix (the
    current one: `reverse` reads it), or None where the URLconf has no such route."""
    try:
        return reverse("api-verify", urlconf=urlconf)
    except NoReverseMatch:
        return None


def _language_headers(get_response):
    """LocaleMiddleware's effect on this answer: Content-Language (the language the
    request negotiates) and Vary: Accept-Language. Not the activation of that language
    for the request: nothing in the answer is translated, and activating it (a
    thread-local write through asgiref) made the middleware cost 35 us against 5."""

    def middleware(request):
        language = translation.get_language_from_request(request)
        response = get_response(request)
        patch_vary_headers(response, ("Accept-Language",))
        response.headers.setdefault("Content-Language", language)
        return response

    return middleware


# The middleware kept, in settings.MIDDLEWARE's order (see the module's docstring).
KEPT = (_language_headers, CommonMiddleware, XFrameOptionsMiddleware)


class VerifyApiMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        # A second, shorter chain built as BaseHandler.load_middleware builds the stack:
        # the kept middleware around plain_answer, each behind the same conversion of
        # exceptions (a DisallowedHost still becomes a 400 with Content-Language).
        chain = convert_exception_to_response(plain_answer)
        for middleware in reversed(KEPT):
            chain = convert_exception_to_response(middleware(chain))
        self.shortcut = chain

    def __call__(self, request):
        urlconf = getattr(request, "urlconf", None) or settings.ROOT_URLCONF
        if request.path == _verify_path(urlconf, get_script_prefix()) and answers_plainly(request):
            return self.shortcut(request)
        return self.get_response(request)
