"""Request context for audit events: the client IP of the current request.

Services are called from views, tasks and commands; only views know the client. The
middleware puts the IP in a context variable so a service need not thread a request
through every call, and tasks and commands simply record none.
"""

import ipaddress
from contextvars import ContextVar

from django.conf import settings
from django.utils.ipv6 import clean_ipv6_address

_client_ip: ContextVar[str | None] = ContextVar("audit_client_ip", default=None)


def get_client_ip() -> str | None:
    return _client_ip.get()


def client_ip_from_request(request) -> str | None:
    """REMOTE_ADDR, or the address the trusted proxies saw (TRUSTED_PROXY_COUNT)."""
    candidate = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            candidate = hops[-proxies]
    if not candidate:
        return None
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if address.version == 6:
        # Exactly what GenericIPAddressField stores (e.g. ::ffff:1.2.3.4 stays in that
        # form), so the hash is computed over the value audit_verify reads back.
        return clean_ipv6_address(candidate)
    return str(address)


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _client_ip.set(client_ip_from_request(request))
        try:
            return self.get_response(request)
        finally:
            _client_ip.reset(token)
