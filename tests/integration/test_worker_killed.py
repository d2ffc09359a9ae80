"""A Celery worker killed in the middle of a render batch (issue 5 "Done when"): once the
remaining worker has finished, every certificate has exactly one stored PDF, matching
its recorded checksum, and exactly one `certificate.render` audit event.

Two real worker processes (prefork, one child each) render batches from Redis against
the test database. One is SIGKILLed, main process and child together, as a machine
dying would: its batch was taken with acks_late and never acknowledged, so Redis hands
it to the other worker once the visibility timeout (lowered to a few seconds for these
workers) has passed. The render sweep runs last and must find nothing left to do but
the staged file a killed run may have left."""

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from config.celery import app as celery_app
from issuance import services
from issuance.keys import issuer_keys_ensure
from issuance.models import Certificate, Issuer
from issuance.pdf import PARTIAL_DIR, pdf_name, pdf_signature_status
from issuance.tasks import certificate_render_sweep, certificates_render
from tests.integration.conftest import _unavailable
from tests.issuance.factories import BOTH, department, institution, officer, passed_cases

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

CASES = 15  # two certificates each (two issuers): 30
BATCH = 5
VISIBILITY_TIMEOUT = 5
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class Workers:
    """Celery worker processes, each in its own process group (so one SIGKILL takes
    its pool child too), logging to files under `folder`."""

    def __init__(self, folder: Path, env: dict[str, str], queue: str):
        self.folder, self.env, self.queue, self.processes = folder, env, queue, {}

    def start(self, name: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [
                *(sys.executable, "-m", "celery", "-A", "config", "worker"),
                *("--pool=prefork", "-c", "1", "-n", self.node(name), "-Q", self.queue),
                *("-l", "info"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    @staticmethod
    def node(name: str) -> str:
        return f"{name}@worker-killed-test"

    def wait_ready(self, seconds: float) -> None:
        nodes = {self.node(name) for name in self.processes}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            replies = celery_app.control.ping(destination=list(nodes), timeout=0.5)
            if nodes <= {node for reply in replies for node in reply}:
                return
            self.check_alive()
        raise AssertionError(f"workers not ready after {seconds} s\n{self.logs()}")

    def active(self, name: str) -> list[dict]:
        node = self.node(name)
        replies = celery_app.control.inspect(destination=[node], timeout=0.5, limit=1).active()
        return (replies or {}).get(node, [])

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, name: str) -> None:
        """Warm shutdown: the current task finishes first."""
        process = self.processes[name]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.returncode is None and process.poll() is not None:
                raise AssertionError(f"worker {name} exited early\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}.log\n{(self.folder / f'{name}.log').read_text(errors='replace')[-3000:]}"
            for name in self.processes
        )

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def rendered() -> int:
    return Certificate.objects.exclude(pdf_sha256="").count()


def wait_until(condition, seconds: float, workers: Workers, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        workers.check_alive()
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached after {seconds} s\n{workers.logs()}")


@pytest.fixture
def queue(on_postgresql):
    """A queue of this run's own on the configured Redis broker: no other worker (a test
    running alongside, a leftover) takes these batches, and these workers take nothing
    else. Purged afterwards."""
    if not os.environ.get("CELERY_BROKER_URL"):
        _unavailable("Redis")
    name = f"worker-killed-{uuid.uuid4().hex[:12]}"
    previous = celery_app.conf.task_always_eager
    yield name
    celery_app.conf.task_always_eager = previous
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(name)


def test_a_worker_killed_mid_batch_leaves_every_certificate_one_pdf(
    queue, settings, tmp_path, monkeypatch
):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SIGNING_KEYS_DIR = tmp_path / "keys"
    # The hooks the steps below queue on commit (warnings, opening) run in-process; the
    # render batches are queued by this test itself.
    celery_app.conf.task_always_eager = True
    monkeypatch.setattr(services, "_dispatch_render", lambda certificate_ids: None)
    mem, inst = department(), institution()
    officers = {mem.pk: officer(mem), inst.pk: officer(inst)}
    cases = passed_cases([BOTH] * CASES)
    services.certificates_open(case_ids=[c.pk for c in cases])
    for issuer_id, actor in officers.items():
        own = list(Certificate.objects.filter(issuer_id=issuer_id))
        services.certificates_approve(actor=actor, certificates=own)
        services.certificates_issue(
            actor=actor, certificates=list(Certificate.objects.filter(issuer_id=issuer_id))
        )
    ids = list(Certificate.objects.order_by("pk").values_list("pk", flat=True))
    assert len(ids) == 2 * CASES
    assert rendered() == 0
    for issuer in Issuer.objects.all():  # made once here, not raced for by the workers
        issuer_keys_ensure(issuer)
    connection.close()  # nothing held open while the workers work
    celery_app.conf.task_always_eager = False

    workers = Workers(
        tmp_path,
        {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _database_url(),
            "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "SIGNING_KEYS_DIR": str(settings.SIGNING_KEYS_DIR),
            "PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL,
        },
        queue,
    )
    try:
        workers.start("w1")
        workers.start("w2")
        workers.wait_ready(seconds=30)
        for start in range(0, len(ids), BATCH):
            certificates_render.apply_async((ids[start : start + BATCH],), queue=queue)

        # Some PDFs stored, then kill w1 while it is working through a batch.
        wait_until(lambda: rendered() >= BATCH, 40, workers, "a first batch")
        deadline = time.monotonic() + 20
        while not (active := workers.active("w1")):
            assert time.monotonic() < deadline, f"w1 never busy\n{workers.logs()}"
        workers.kill("w1")
        assert workers.processes["w1"].returncode == -signal.SIGKILL
        assert active[0]["name"] == "issuance.tasks.certificates_render"

        # w2 takes the killed batch once its visibility timeout has passed.
        wait_until(lambda: rendered() == len(ids), 60, workers, "every certificate rendered")
        workers.stop("w2")
        assert workers.processes["w2"].returncode == 0, workers.logs()
    finally:
        workers.close()

    # Nothing left to render; a file staged by the killed run (if it died between staging
    # and claiming) is swept away.
    assert certificate_render_sweep(older_than_seconds=0, partials_older_than_seconds=0) == 0

    certificates = list(Certificate.objects.select_related("issuer").order_by("pk"))
    media = Path(settings.MEDIA_ROOT)
    expected = sorted(pdf_name(c) for c in certificates)
    files = sorted(
        str(p.relative_to(media)) for p in (media / "certificates").rglob("*") if p.is_file()
    )
    assert files == expected  # exactly one per certificate, no staged leftovers
    for issuer in Issuer.objects.all():
        folder = media / "certificates" / issuer.code
        own = [c for c in certificates if c.issuer_id == issuer.pk]
        assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(
            f"{c.pk:08d}.pdf" for c in own
        )
        assert not any((folder / PARTIAL_DIR).glob("*"))
    for certificate in certificates:
        content = (media / certificate.pdf).read_bytes()
        assert certificate.pdf == pdf_name(certificate)
        assert hashlib.sha256(content).hexdigest() == certificate.pdf_sha256
        assert certificate.pdf_size == len(content)
        signature = pdf_signature_status(content, certificate.issuer)
        assert signature == {"intact": True, "valid": True, "trusted": True}
    renders = Counter(
        AuditEvent.objects.filter(action="certificate.render").values_list("object_id", flat=True)
    )
    assert renders == Counter({str(pk): 1 for pk in ids})
    assert [r for r in audit_chain_verify() if not isinstance(r, int)] == []
