"""Signing and checking a certificate PDF from a thread that runs an event loop (an
ASGI server; Playwright's sync API in this test run): pyHanko's synchronous API calls
asyncio.run(), which refuses to start there."""

import asyncio

import pytest
from weasyprint import HTML

from issuance.keys import issuer_keys_ensure
from issuance.pdf import pdf_signature_status, sign_pdf

from .factories import department

pytestmark = pytest.mark.django_db


def test_a_pdf_is_signed_and_checked_inside_a_running_event_loop():
    issuer = department()
    issuer_keys_ensure(issuer)
    pdf = HTML(string="<p>证书</p>").write_pdf()

    async def inside_a_loop():
        signed = sign_pdf(pdf, issuer)
        return pdf_signature_status(signed, issuer)

    assert asyncio.run(inside_a_loop()) == {"intact": True, "valid": True, "trusted": True}
