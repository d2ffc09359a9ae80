"""A separate process issuing certificates, for the concurrent-issuance test.

Usage: python -m tests.integration.issue_worker START_AT ID [ID ...]
Runs against DATABASE_URL (the test passes its own test database). Waits until the
wall-clock time START_AT (a float) so every process starts issuing together, issues
each certificate as an officer of its issuer, and prints one JSON line per outcome.
"""

import json
import os
import sys
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from issuance import services
    from issuance.models import Certificate

    # Rendering is not what this process tests (and has its own tests): issue only.
    services._dispatch_render = lambda certificate_ids: None
    start_at, ids = float(sys.argv[1]), [int(x) for x in sys.argv[2:]]
    certificates = list(
        Certificate.objects.filter(pk__in=ids).select_related("issuer").order_by("pk")
    )
    officers = {
        c.issuer_id: c.issuer.officers.select_related("user").first().user for c in certificates
    }
    time.sleep(max(0.0, start_at - time.time()))
    for certificate in certificates:
        issued = services.certificate_issue(
            actor=officers[certificate.issuer_id], certificate=certificate
        )
        print(json.dumps({"id": issued.pk, "number": issued.number}), flush=True)


if __name__ == "__main__":
    main()
