"""Public verification lookups per second at CLIENTS concurrent clients against gunicorn
with CERTIFICATES issued certificates in the database, against a view returning a
constant on the same server (issue 5 item 5); p50 and p99 latency of both.

Data: CERTIFICATES / 2 candidates, each with one case on one MEM-WELD-FC level-5 plan
and both of its certificates issued (一试多证): the 特种作业操作证 (number T + the
holder's ID, 6 years' validity, review after 3; about 1 % revoked, those issued before
late 2020 expired) from a department issuer, and the level-5 职业技能等级证书 (22-digit
S number with a per-year serial) from a filed institution; issue dates spread over
2020-2026, random verification codes as issuance makes them. The rows are written with
PostgreSQL COPY (executemany on SQLite) into the real tables, indexes and constraints
in place, then ANALYZEd. No audit events are written for them: verification reads none.

Server: `gunicorn -c deploy/gunicorn.conf.py config.wsgi` as deployed, bound to a free
loopback port, with the config's number of sync workers (2 x cores + 1: 5 on 2 cores;
a sync worker serves one request at a time, and fewer would leave the cores idle while
they wait on Redis and PostgreSQL), production settings
(DEBUG off, a SECRET_KEY, ALLOWED_HOSTS=127.0.0.1), the limiter's counts in Redis DB 8
as in production (CACHE_URL), VERIFY_RATE raised to 1000000/m so the limiter is paid
for but never refuses. Two deviations, both for the measurement: workers are not
recycled (GUNICORN_MAX_REQUESTS=0; at these rates the configured 2,000 requests would
restart a worker every few seconds and measure Django's start-up), and the settings
module is bench.verify_settings, which only adds the constant view's URL (the product
has no such endpoint; see bench/verify_urls.py). The access log is written, as in
production, to a file.

Load: one asyncio process (standard library only) running CLIENTS concurrent clients;
each opens a connection, sends a GET and reads to the end, as nginx talks to gunicorn
(sync workers close the connection after every response). The verification mix is
90 % hits (number + the holder's name of a random certificate), 5 % a real number with
another holder's name, 5 % a well-formed number that does not exist; every answer's
status is checked (200 or 404 as expected), and in the warm-up every hit's body too.
After a warm-up of both, the phases run constant, verify, verify, constant (SECONDS / 2
each, so a drift in the machine's load falls on both alike). Figure: verification
requests per second; baseline: constant-view requests per second; ratio = the two.
The load generator shares the machine's 2 cores with gunicorn, PostgreSQL and Redis:
the JSON records the CPU milliseconds per request of each (load generator, gunicorn
master and workers, the database's PostgreSQL backends, the whole Redis server) and the
load average.

SQLite (no DATABASE_URL): the same measurement with SQLITE_CERTIFICATES (100,000)
certificates, stated in the line; the figure issue 5 asks for is the PostgreSQL one
(`make bench` runs it again against the machine's PostgreSQL when it answers).
Environment overrides: BENCH_VERIFY_CERTIFICATES, BENCH_VERIFY_SECONDS,
BENCH_VERIFY_WORKERS, BENCH_VERIFY_CACHE_URL ("" for no Redis).
"""

import asyncio
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

from stdnum.cn import ric

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_CERTIFICATES = 1_000_000
SQLITE_CERTIFICATES = 100_000
CLIENTS = 32
SECONDS = 15.0  # per kind, split into two phases
WARMUP_SECONDS = 3.0
WORKERS = 2 * (os.cpu_count() or 1) + 1  # deploy/gunicorn.conf.py's default
CACHE_URL = "redis://127.0.0.1:6379/8"
VERIFY_RATE = "1000000/m"
SAMPLE = 20_000  # certificates the clients draw their hits from
REGION = "140105"  # 太原市小店区: no other benchmark or the demo registers IDs here
UNKNOWN_REGION = "140106"
INSTITUTION_CODE = "9071"
SITE = "000001"
PROVINCE = "14"
FIRST_ISSUE = date(2020, 3, 2)  # the skill-level rule applies from 2020
ISSUE_SPAN_DAYS = 2_300  # to mid-2026
REVOKE_EVERY = 97
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文海波鹏辉宇浩然晨旭东阳峰飞"
LINE = (
    "verify{where}: {figure:,.0f} lookups/s at {clients} clients (p50 {p50:.1f} ms, "
    "p99 {p99:.1f} ms), baseline constant view {baseline:,.0f}/s (p50 {base_p50:.1f} ms, "
    "p99 {base_p99:.1f} ms), ratio {ratio:.2f}; {certificates:,} certificates, "
    "{workers} gunicorn workers, load {load:.1f}"
)


# The certificates ----------------------------------------------------------------------


def id_number(n: int, region: str = REGION) -> str:
    """The n-th ID number of `region`: birth dates over 40 years, then the sequence."""
    born = date(1965, 1, 1) + timedelta(days=n % 14_600)
    first17 = f"{region}{born:%Y%m%d}{n // 14_600 % 1000:03d}"
    return first17 + ric.calc_check_digit(first17 + "0")  # stdnum ignores the last digit


def holder_name(n: int) -> str:
    surname = SURNAMES[n * 7 % len(SURNAMES)]
    given = GIVEN[n // len(SURNAMES) % len(GIVEN)]
    if n % 3:
        given += GIVEN[n * 13 // len(GIVEN) % len(GIVEN)]
    return surname + given


def skill_number(year: int, serial: int) -> str:
    """S + institution code + province + site + 2-digit year + level + 6-digit serial."""
    return f"S{INSTITUTION_CODE}{PROVINCE}{SITE}{year % 100:02d}5{serial:06d}"


@dataclass
class Fixtures:
    plan_id: int
    mem_id: int
    institution_id: int
    qtype_id: int
    occupation_id: int
    mem_officer_id: int
    institution_officer_id: int
    coordinator_id: int
    qtype: object


def fixtures() -> Fixtures:
    """The plan, the two issuers and the officer the certificate rows point to, made
    through the ordinary models and services."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from cases import plans
    from catalog.models import Department, Occupation, QualificationType
    from issuance.models import FilingStatus, InstitutionScope, Issuer, IssuerKind, IssuerOfficer

    users = get_user_model()
    coordinator, _ = users.objects.get_or_create(username="bench-coordinator")
    coordinator.groups.add(Group.objects.get(name="coordinator"))
    qtype = QualificationType.objects.get(code="MEM-WELD-FC")
    occupation = Occupation.objects.get(code="6-18-02-04")
    plan = plans.plan_create(
        actor=coordinator,
        name="2020-2026年 焊工（熔化焊接与热切割）一试多证联合评价（查询性能测试）",
        qualification_type=qtype,
        occupation=occupation,
        level=5,
        province=PROVINCE,
        exam_date=FIRST_ISSUE - timedelta(days=30),
    )
    mem = Issuer.objects.create(
        kind=IssuerKind.DEPARTMENT,
        code="bench-verify-mem-14",
        name="山西省应急管理厅",
        province=PROVINCE,
        department=Department.objects.get(code="mem"),
        seal_text="山西省应急管理厅",
    )
    institution = Issuer.objects.create(
        kind=IssuerKind.INSTITUTION,
        code=f"bench-verify-s{INSTITUTION_CODE}",
        name="太原市焊接技能评价中心",
        province=PROVINCE,
        institution_type="S",
        institution_code=INSTITUTION_CODE,
        site_sequence=SITE,
        filing_status=FilingStatus.FILED,
        filing_valid_from=date(2018, 1, 1),
        filing_valid_to=date(2030, 12, 31),
        seal_text="太原市焊接技能评价中心",
    )
    InstitutionScope.objects.create(issuer=institution, occupation=occupation, level=5)
    officers = []
    for issuer in (mem, institution):  # an officer belongs to one issuer
        officer, _ = users.objects.get_or_create(username=f"officer-{issuer.code}")
        officer.groups.add(Group.objects.get(name="issuer_officer"))
        IssuerOfficer.objects.create(user=officer, issuer=issuer)
        officers.append(officer.pk)
    return Fixtures(
        plan_id=plan.pk,
        mem_id=mem.pk,
        institution_id=institution.pk,
        qtype_id=qtype.pk,
        occupation_id=occupation.pk,
        mem_officer_id=officers[0],
        institution_officer_id=officers[1],
        coordinator_id=coordinator.pk,
        qtype=qtype,
    )


CANDIDATE_COLUMNS = [
    "id",
    "id_number",
    "name",
    "sex",
    "birth_date",
    "phone",
    "education",
    "photo",
    "created_by_id",
    "created_at",
    "updated_at",
]
CASE_COLUMNS = [
    "id",
    "candidate_id",
    "plan_id",
    "status",
    "status_reason",
    "application_date",
    "equivalent_level",
    "equivalence_basis_id",
    "equivalence_source",
    "not_counted",
    "attempts",
    "result_date",
    "created_by_id",
    "created_at",
    "updated_at",
]
CERTIFICATE_COLUMNS = [
    "case_id",
    "kind",
    "issuer_id",
    "qualification_type_id",
    "occupation_id",
    "level",
    "holder_name",
    "holder_id_number",
    "status",
    "number",
    "verification_code",
    "issued_on",
    "valid_until",
    "review_due",
    "approved_by_id",
    "approved_at",
    "issued_by_id",
    "issued_at",
    "revoked_on",
    "reason",
    "pdf",
    "pdf_sha256",
    "pdf_size",
    "pdf_rendered_at",
    "created_at",
]


def _check_columns(model, columns) -> None:
    """The rows name every column of the table: a new NOT NULL column fails here, not
    as a COPY error halfway through a million rows."""
    have = {f.column for f in model._meta.concrete_fields}
    missing, extra = have - set(columns) - {"id"}, set(columns) - have
    assert not missing, f"{model._meta.db_table}: no value for {missing}"
    assert not extra, f"{model._meta.db_table}: no column {extra}"


class Rows:
    """The candidate, case and certificate rows for `count` certificates, generated in
    one pass (candidate n holds certificates 2n and 2n + 1)."""

    def __init__(self, fx: Fixtures, count: int, first_candidate: int, first_case: int):
        from django.db import connection

        self.fx, self.count = fx, count
        self.people = (count + 1) // 2
        self.first_candidate, self.first_case = first_candidate, first_case
        ops = connection.ops
        self._date = ops.adapt_datefield_value
        self._datetime = ops.adapt_datetimefield_value
        self._days: dict[int, tuple] = {}
        self.now = self._datetime(datetime.now().astimezone())

    def day(self, n: int) -> tuple:
        """(issued_on, its 09:00 as a datetime, valid_until, review_due), adapted."""
        offset = n * ISSUE_SPAN_DAYS // self.people
        if offset not in self._days:
            issued = FIRST_ISSUE + timedelta(days=offset)
            at = datetime.combine(issued, clock(9)).astimezone()
            self._days[offset] = (
                issued,
                self._date(issued),
                self._datetime(at),
                self._date(self.fx.qtype.expiry_for(issued)),
                self._date(self.fx.qtype.review_due_for(issued)),
                self._date(issued - timedelta(days=45)),
            )
        return self._days[offset]

    def candidates(self):
        for n in range(self.people):
            number = id_number(n)
            born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
            yield (
                self.first_candidate + n,
                number,
                holder_name(n),
                "M" if int(number[16]) % 2 else "F",
                self._date(born),
                f"139{n:08d}",
                "senior",
                "",
                self.fx.coordinator_id,
                self.now,
                self.now,
            )

    def cases(self):
        for n in range(self.people):
            _, issued, at, _, _, applied = self.day(n)
            yield (
                self.first_case + n,
                self.first_candidate + n,
                self.fx.plan_id,
                "completed",
                "",
                applied,
                None,
                None,
                "",
                "[]",
                1,
                issued,
                self.fx.coordinator_id,
                at,
                at,
            )

    def certificates(self):
        fx = self.fx
        serial_year, serial = None, 0
        for index in range(self.count):
            n, skill = divmod(index, 2)
            issued_day, issued, at, valid_until, review_due, _ = self.day(n)
            number_id = id_number(n)
            revoked = not skill and n % REVOKE_EVERY == 0
            officer = fx.institution_officer_id if skill else fx.mem_officer_id
            if skill:
                if issued_day.year != serial_year:
                    serial_year, serial = issued_day.year, 0
                serial += 1
                number = skill_number(issued_day.year, serial)
            else:
                number = "T" + number_id
            yield (
                self.first_case + n,
                "skill" if skill else "qualification",
                fx.institution_id if skill else fx.mem_id,
                None if skill else fx.qtype_id,
                fx.occupation_id,
                5 if skill else None,
                holder_name(n),
                number_id,
                "revoked" if revoked else "issued",
                number,
                secrets.token_urlsafe(12),
                issued,
                None if skill else valid_until,
                None if skill else review_due,
                officer,
                at,
                officer,
                at,
                self._date(issued_day + timedelta(days=200)) if revoked else None,
                "持证人违章作业造成事故，依法撤销" if revoked else "",
                "",
                "",
                None,
                None,
                at,
            )


def _write(table: str, columns: list[str], rows) -> None:
    from django.db import connection

    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(table)
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608


def fill(count: int) -> dict:
    """Write `count` issued certificates with their candidates and cases; ANALYZE."""
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.db.models import Max

    from cases.models import Candidate, Case
    from issuance.models import Certificate

    _check_columns(Candidate, CANDIDATE_COLUMNS)
    _check_columns(Case, CASE_COLUMNS)
    _check_columns(Certificate, CERTIFICATE_COLUMNS)
    started = time.perf_counter()
    fx = fixtures()  # services with their own (durable) transactions
    with transaction.atomic():
        first_candidate = (Candidate.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
        first_case = (Case.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
        rows = Rows(fx, count, first_candidate, first_case)
        _write(Candidate._meta.db_table, CANDIDATE_COLUMNS, rows.candidates())
        _write(Case._meta.db_table, CASE_COLUMNS, rows.cases())
        _write(Certificate._meta.db_table, CERTIFICATE_COLUMNS, rows.certificates())
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), [Candidate, Case]):
                cursor.execute(sql)
    written = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    public = Certificate.objects.filter(status__in=("issued", "revoked"), case__plan=fx.plan_id)
    assert public.count() == count
    return {
        "people": rows.people,
        "plan_id": fx.plan_id,
        "fill_seconds": round(written, 1),
        "analyze_seconds": round(time.perf_counter() - started - written, 1),
    }


# Requests ------------------------------------------------------------------------------


def _target(number: str, name: str) -> bytes:
    query = urllib.parse.urlencode({"number": number, "name": name})
    return f"/api/v1/verify/?{query}".encode("ascii")


def verify_targets(plan_id: int, seed: int = 2026) -> list[tuple[bytes, int]]:
    """(request target, expected status): 90 % hits on SAMPLE random certificates, 5 % a
    real number with another holder's name, 5 % well-formed numbers that do not exist."""
    from issuance.models import Certificate

    rng = random.Random(seed)
    ids = list(
        Certificate.objects.filter(case__plan=plan_id).values_list("pk", flat=True).order_by("pk")
    )
    chosen = rng.sample(ids, min(SAMPLE, len(ids)))
    pairs = []
    for start in range(0, len(chosen), 5_000):
        pairs += Certificate.objects.filter(pk__in=chosen[start : start + 5_000]).values_list(
            "number", "holder_name"
        )
    targets = [(_target(number, name), 200) for number, name in pairs]
    for i in range(len(pairs) // 18):  # 5 % of the total each
        number, name = pairs[i]
        other = next(n for _, n in pairs[i + 1 :] if n != name)
        targets.append((_target(number, other), 404))
        if i % 2:
            unknown = "T" + id_number(rng.randrange(10**6), UNKNOWN_REGION)
        else:
            unknown = skill_number(2025, 900_000 + rng.randrange(99_999))
        targets.append((_target(unknown, holder_name(rng.randrange(10**6))), 404))
    rng.shuffle(targets)
    return targets


CONSTANT_TARGETS = [(b"/bench-constant/", 200)]


async def _fetch(port: int, target: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % target)
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body


@dataclass
class Phase:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    unexpected: int = 0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    database_cpu: float = 0.0
    redis_cpu: float = 0.0

    def add(self, other: "Phase") -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.statuses += other.statuses
        self.unexpected += other.unexpected
        self.client_cpu += other.client_cpu
        self.server_cpu += other.server_cpu
        self.database_cpu += other.database_cpu
        self.redis_cpu += other.redis_cpu

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000

    def summary(self) -> dict:
        requests = len(self.latencies)
        return {
            "requests": requests,
            "seconds": round(self.seconds, 2),
            "requests_per_second": round(self.rate, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "cpu_ms_per_request": {
                "client": round(self.client_cpu / requests * 1000, 3),
                "gunicorn": round(self.server_cpu / requests * 1000, 3),
                "database": round(self.database_cpu / requests * 1000, 3),
                "redis": round(self.redis_cpu / requests * 1000, 3),
            },
        }


async def _load(port: int, targets, seconds: float, check_bodies: bool = False) -> Phase:
    phase = Phase()
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            target, expected = rng.choice(targets)
            started = time.perf_counter()
            status, body = await _fetch(port, target)
            phase.latencies.append(time.perf_counter() - started)
            phase.statuses[status] += 1
            if status != expected:
                phase.unexpected += 1
            elif check_bodies and status == 200 and target != b"/bench-constant/":
                answer = json.loads(body)
                assert answer["status"] in ("valid", "revoked", "expired"), answer
                assert "*" in answer["holder_name"] or len(answer["holder_name"]) == 1, answer

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    phase.seconds = time.perf_counter() - started
    return phase


# The server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = urllib.parse.quote(s["USER"] or "", safe="")
    if s["PASSWORD"]:
        auth += ":" + urllib.parse.quote(s["PASSWORD"], safe="")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


def _redis_ok(url: str) -> bool:
    if not url:
        return False
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure means: run without Redis
        return False


def _cpu_seconds(pids) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


class Server:
    def __init__(self, workdir: Path, workers: int, cache_url: str):
        self.port = _free_port()
        self.cache_url = cache_url
        self.log = workdir / "gunicorn.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.verify_settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": _database_url(),
            "VERIFY_RATE": VERIFY_RATE,
            "CACHE_URL": cache_url,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(workers),
            "GUNICORN_MAX_REQUESTS": "0",
            "GUNICORN_ACCESS_LOG": str(workdir / "access.log"),
            "GUNICORN_ERROR_LOG": "-",
        }
        env.pop("CELERY_BROKER_URL", None)  # healthz would ping a broker no one uses here
        self.log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"gunicorn not ready after {timeout} s: {self.log.read_text()[-2000:]}")

    def pids(self) -> list[int]:
        master = self.process.pid
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            children = []
        return [master, *map(int, children)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def _database_pids() -> list[int]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [pid for (pid,) in cursor.fetchall()]


def _redis_cpu(url: str) -> float:
    """The Redis server's CPU seconds so far (the whole server: other clients count)."""
    if not url:
        return 0.0
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _measured(server: Server, targets, seconds: float) -> Phase:
    server_pids, database_pids = server.pids(), _database_pids()
    before = (
        time.process_time(),
        _cpu_seconds(server_pids),
        _cpu_seconds(database_pids),
        _redis_cpu(server.cache_url),
    )
    phase = asyncio.run(_load(server.port, targets, seconds))
    phase.client_cpu = time.process_time() - before[0]
    phase.server_cpu = _cpu_seconds(server_pids) - before[1]
    phase.database_cpu = _cpu_seconds(database_pids) - before[2]
    phase.redis_cpu = _redis_cpu(server.cache_url) - before[3]
    return phase


# The measurement -----------------------------------------------------------------------


def run() -> dict:
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    count = int(
        os.environ.get("BENCH_VERIFY_CERTIFICATES")
        or (POSTGRES_CERTIFICATES if postgres else SQLITE_CERTIFICATES)
    )
    seconds = float(os.environ.get("BENCH_VERIFY_SECONDS") or SECONDS)
    workers = int(os.environ.get("BENCH_VERIFY_WORKERS") or WORKERS)
    cache_url = os.environ.get("BENCH_VERIFY_CACHE_URL", CACHE_URL)
    redis_used = _redis_ok(cache_url)

    filled = fill(count)
    targets = verify_targets(filled["plan_id"])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        server = Server(Path(tmp), workers, cache_url if redis_used else "")
        try:
            server.wait_ready()
            # Warm-up: every worker imports its views, opens its connections and fills
            # its caches; PostgreSQL reads the sampled rows' pages. Bodies checked here.
            for kind_targets in (CONSTANT_TARGETS, targets):
                warm = asyncio.run(_load(server.port, kind_targets, WARMUP_SECONDS, True))
                assert warm.latencies
                assert warm.unexpected == 0, warm.statuses
            constant, verify = Phase(), Phase()
            for kind, phase_targets in (
                (constant, CONSTANT_TARGETS),
                (verify, targets),
                (verify, targets),
                (constant, CONSTANT_TARGETS),
            ):
                kind.add(_measured(server, phase_targets, seconds / 2))
        finally:
            server.stop()
        access_lines = sum(1 for _ in (Path(tmp) / "access.log").open("rb"))
    load_after = os.getloadavg()[0]
    for phase in (constant, verify):
        assert phase.unexpected == 0, phase.statuses
        assert 429 not in phase.statuses
        assert not any(s >= 500 for s in phase.statuses)

    figure, baseline = verify.rate, constant.rate
    ratio = figure / baseline
    verify_summary, constant_summary = verify.summary(), constant.summary()
    where = "" if postgres else " (SQLite, reduced size; issue 5's figure is verify-postgresql)"
    return {
        "name": "verify",
        "figure": round(figure, 1),
        "unit": "requests/s",
        "baseline": round(baseline, 1),
        "baseline_label": "constant view, same server",
        "ratio": round(ratio, 2),
        "target_ratio": 0.6,
        "certificates": count,
        **filled,
        "clients": CLIENTS,
        "gunicorn_workers": workers,
        "rate_limit_cache": "redis" if redis_used else "locmem (Redis unreachable)",
        "verify": verify_summary,
        "constant": constant_summary,
        "verify_mix": {
            "hits": sum(1 for _, s in targets if s == 200),
            "misses": sum(1 for _, s in targets if s == 404),
        },
        "access_log_lines": access_lines,
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "line": LINE.format(
            where=where,
            figure=figure,
            clients=CLIENTS,
            p50=verify_summary["p50_ms"],
            p99=verify_summary["p99_ms"],
            baseline=baseline,
            base_p50=constant_summary["p50_ms"],
            base_p99=constant_summary["p99_ms"],
            ratio=ratio,
            certificates=count,
            workers=workers,
            load=load_after,
        ),
    }


if __name__ == "__main__":
    from bench import _support

    _support.django_setup()
    with _support.test_database():
        outcome = run()
        _support.write_result(outcome)
    _support.update_readme()
    print(outcome["line"])
