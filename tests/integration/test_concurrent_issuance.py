"""Several processes issuing at once on PostgreSQL (issue 4 "Done when"): no duplicate
and no skipped serial, and every case completed exactly once. Each case's two
certificates are issued by different processes at the same moment, so both race for the
case's completion; all skill certificates race for one serial counter."""

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from cases.models import Case, CaseStatus
from issuance import services
from issuance.models import Certificate, CertificateStatus
from tests.issuance.factories import BOTH, department, institution, officer, passed_cases

PROCESSES = 4
CASES = 12
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_processes_issuing_at_once_leave_no_gap_and_complete_each_case_once(on_postgresql):
    mem, inst = department(), institution()
    officers = {mem.pk: officer(mem), inst.pk: officer(inst)}
    cases = passed_cases([BOTH] * CASES)
    services.certificates_open(case_ids=[c.pk for c in cases])
    certificates = list(Certificate.objects.order_by("pk"))
    for certificate in certificates:
        services.certificate_approve(actor=officers[certificate.issuer_id], certificate=certificate)
    # Split so that each case's two certificates land in different processes.
    random.Random(7).shuffle(certificates)
    shares = [[] for _ in range(PROCESSES)]
    for index, case in enumerate(cases):
        own = [c.pk for c in certificates if c.case_id == case.pk]
        shares[index % PROCESSES].append(own[0])
        shares[(index + 1) % PROCESSES].append(own[1])
    connection.close()  # nothing held open while the children work
    start_at = time.time() + 3
    env = {**os.environ, "DATABASE_URL": _database_url(), "CELERY_BROKER_URL": ""}
    children = [
        subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
            [sys.executable, "-m", "tests.integration.issue_worker", str(start_at), *map(str, s)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in shares
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * PROCESSES, outputs

    issued = list(Certificate.objects.all())
    assert {c.status for c in issued} == {CertificateStatus.ISSUED}
    numbers = [c.number for c in issued]
    assert len(set(numbers)) == len(numbers) == 2 * CASES
    serials = sorted(int(c.number[-6:]) for c in issued if c.kind == "skill")
    assert serials == list(range(1, CASES + 1))
    assert set(Case.objects.values_list("status", flat=True)) == {CaseStatus.COMPLETED}
    completions = AuditEvent.objects.filter(action="case.complete")
    assert sorted(completions.values_list("object_id", flat=True)) == sorted(
        str(c.pk) for c in cases
    )
    assert [r for r in audit_chain_verify() if not isinstance(r, int)] == []
