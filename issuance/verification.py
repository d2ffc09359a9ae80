"""Public verification of issued certificates (issue 4 item 5; DESIGN.md "Public
verification"): look-ups by number + holder name or by the QR link's code, the public
answer with personal data masked, and the per-client rate limit shared by the page and
the API.

A miss and a wrong name must look identical to the caller, so both look-ups answer with
one query that matches on every given field at once and return None either way: there
is no branch (and no extra query) that would tell "this number exists" apart.
"""

import functools
import hashlib
import re
import time
import weakref
import zlib
from collections.abc import Callable
from datetime import date

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from audit.context import client_ip_from_request
from catalog.models import Occupation, QualificationType, SkillCertificateRule

from .models import Certificate, CertificateStatus, Issuer

# Certificates the public may see: once issued they stay visible, revoked included, so a
# revoked certificate shows as revoked rather than unknown.
PUBLIC_STATES = (CertificateStatus.ISSUED, CertificateStatus.REVOKED)

# Longer input is rejected before any regex or query runs: the longest format (SAMR
# series) is 32 characters, a holder name at most 64 (Certificate.holder_name).
NUMBER_MAX_LENGTH = 32
NAME_MAX_LENGTH = 64
# secrets.token_urlsafe(12) gives 16 characters; the column holds up to 32.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")

STATUS_LABELS = {"valid": "有效", "revoked": "已撤销", "expired": "已过期"}

NOT_FOUND_MESSAGE = "未找到匹配的证书"
MALFORMED_NUMBER_MESSAGE = "证书编号格式不正确"
NUMBER_REQUIRED_MESSAGE = "请填写证书编号"
NAME_REQUIRED_MESSAGE = "请填写持证人姓名"
NAME_TOO_LONG_MESSAGE = "持证人姓名过长"
RATE_LIMITED_MESSAGE = "查询过于频繁，请稍后再试"

# One budget per client across the page, the QR landing page and the API.
RATE_GROUP = "issuance.verify"


def normalise_number(number: str) -> str:
    return (number or "").strip().upper()


# The catalog's number patterns change perhaps once a year (a new qualification type or
# rule), while every number + name query is checked against them: each process reads
# them at most once every PATTERNS_MAX_AGE seconds instead of on every request (two
# catalog queries, 0.5 ms of CPU a request through the ORM, and a round trip as a single
# query), so a catalog change reaches the public check within that time. An empty
# catalog is not kept (a database being set up, or emptied between tests).
PATTERNS_MAX_AGE = 60
_patterns: tuple[float, tuple[re.Pattern, ...]] = (0.0, ())


def _number_patterns() -> tuple[re.Pattern, ...]:
    global _patterns
    read_at, patterns = _patterns
    now = time.monotonic()
    if not patterns or now - read_at >= PATTERNS_MAX_AGE:
        with connection.cursor() as cursor:
            cursor.execute(_patterns_sql())
            patterns = tuple(re.compile(pattern) for (pattern,) in cursor.fetchall())
        _patterns = (now, patterns)
    return patterns


def number_is_well_formed(number: str) -> bool:
    """Whether `number` (after strip and upper-case) matches the number pattern of any
    qualification type or of the skill-level certificate rule in the catalog. All rows
    count, ended ones too: a certificate issued under an earlier rule stays verifiable."""
    number = normalise_number(number)
    if not number or len(number) > NUMBER_MAX_LENGTH:
        return False
    return any(pattern.fullmatch(number) for pattern in _number_patterns())


def verification_query_errors(number: str, name: str) -> dict[str, list[str]]:
    """Field messages for a number + name query (the page and the API show the same)."""
    errors: dict[str, list[str]] = {}
    number, name = normalise_number(number), (name or "").strip()
    if not number:
        errors["number"] = [NUMBER_REQUIRED_MESSAGE]
    elif not number_is_well_formed(number):
        errors["number"] = [MALFORMED_NUMBER_MESSAGE]
    if not name:
        errors["name"] = [NAME_REQUIRED_MESSAGE]
    elif len(name) > NAME_MAX_LENGTH:
        errors["name"] = [NAME_TOO_LONG_MESSAGE]
    return errors


# Every verification request runs these reads, and the endpoint is public and busy, so
# each is one hand-written SELECT of the columns the answer needs, the certificate's
# issuer, type and occupation joined in the same query. Compiling the equivalent
# querysets cost ten times running them (about 1.7 ms against 0.15 ms of CPU per
# look-up on the 2-core VM; bench/README.md "verify"). The SQL is built once per process
# from the models' table and column names, values are passed as parameters, and the
# row becomes model instances through Model.from_db with the ORM's converters applied;
# the fields not read are deferred (loaded on access, as with .only()).
_READ = {
    Certificate: {
        *("id", "kind", "level", "holder_name", "holder_id_number", "status", "number"),
        *("issued_on", "valid_until", "review_due", "revoked_on"),
        *("issuer", "qualification_type", "occupation"),
    },
    Issuer: {"id", "name"},
    QualificationType: {"id", "code", "name", "number_is_holder_id"},
    Occupation: {"id", "name"},
}
# The certificate's foreign key to each of the other models.
_RELATED = {Issuer: "issuer", QualificationType: "qualification_type", Occupation: "occupation"}


def _column(field) -> str:
    quote = connection.ops.quote_name
    return f"{quote(field.model._meta.db_table)}.{quote(field.column)}"


@functools.cache
def _read_fields() -> list[tuple[type, list]]:
    """Per model, the fields read, in the model's field order (Model.from_db's)."""
    return [
        (model, [f for f in model._meta.concrete_fields if f.name in names])
        for model, names in _READ.items()
    ]


@functools.cache
def _converters() -> list[list]:
    """For each column read, the converters the ORM applies to it on this database
    (SQLite, for one, hands dates back as text and booleans as integers)."""
    result = []
    for _, fields in _read_fields():
        for field in fields:
            col = field.get_col(field.model._meta.db_table)
            converters = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
            result.append([(converter, col) for converter in converters])
    return result


@functools.cache
def _lookup_sql(by: str) -> str:
    quote, field = connection.ops.quote_name, Certificate._meta.get_field
    columns = ", ".join(_column(f) for _, fields in _read_fields() for f in fields)
    joins = " ".join(
        f"{'LEFT OUTER' if field(fk).null else 'INNER'} JOIN {quote(model._meta.db_table)} "
        f"ON ({_column(field(fk))} = {_column(model._meta.pk)})"
        for model, fk in _RELATED.items()
    )
    public = f"{_column(field('status'))} IN (%s, %s)"
    where = {
        # MEM numbers repeat across a holder's types: the most recently issued answers.
        "number": (
            f"{_column(field('number'))} = %s AND {_column(field('holder_name'))} = %s "
            f"AND {public} ORDER BY {_column(field('issued_on'))} DESC, "
            f"{_column(field('id'))} DESC"
        ),
        "code": f"{_column(field('verification_code'))} = %s AND {public}",
    }[by]
    table = quote(Certificate._meta.db_table)
    # Identifiers from the models only; every value is a parameter.
    return f"SELECT {columns} FROM {table} {joins} WHERE {where} LIMIT 1"  # noqa: S608


@functools.cache
def _patterns_sql() -> str:
    return " UNION ".join(
        f"SELECT {_column(model._meta.get_field('number_pattern'))} "  # noqa: S608
        f"FROM {connection.ops.quote_name(model._meta.db_table)}"
        for model in (QualificationType, SkillCertificateRule)
    )


# On PostgreSQL the look-ups are prepared statements, once per connection: planning the
# four-table join cost 0.4-0.5 ms of PostgreSQL's CPU per request, running it 0.05 ms.
# Django leaves psycopg's own prepared statements off for the sake of transaction-pooling
# proxies (PgBouncer before 1.21), which deploy/ does not put in front of PostgreSQL; SQL
# PREPARE and EXECUTE through an ordinary Django cursor keep query logging, execute
# wrappers and error translation as they are (and EXPLAIN EXECUTE shows the plan).
# Prepared statements live as long as the database session, transactions or not; a new
# connection (a new psycopg connection object) prepares them again.
_prepared: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()


def _execute_lookup(cursor, by: str, params: list) -> None:
    sql = _lookup_sql(by)
    if connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    name = f"issuance_verify_by_{by}"
    done = _prepared.setdefault(connection.connection, set())
    if name not in done:
        numbered = iter(range(1, len(params) + 1))
        cursor.execute(f"PREPARE {name} AS " + re.sub("%s", lambda _: f"${next(numbered)}", sql))
        done.add(name)
    cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)


def _public_certificate(by: str, params: list) -> Certificate | None:
    """The issued or revoked certificate the look-up `by` number or code finds, with its
    issuer, qualification type and occupation, or None."""
    with connection.cursor() as cursor:
        _execute_lookup(cursor, by, [*params, *(state.value for state in PUBLIC_STATES)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, converters in enumerate(_converters()):
        for converter, col in converters:
            values[index] = converter(values[index], col, connection)
    instances, start = {}, 0
    for model, fields in _read_fields():
        part, start = values[start : start + len(fields)], start + len(fields)
        if part[0] is not None:  # the left join: a skill-level certificate has no type
            instances[model] = model.from_db(connection.alias, [f.attname for f in fields], part)
    certificate = instances.pop(Certificate)
    for model, instance in instances.items():
        # As select_related fills the cache: the descriptor's __set__ (type and router
        # checks, 10 us a relation) is for assignments, not for rows just read.
        Certificate._meta.get_field(_RELATED[model]).set_cached_value(certificate, instance)
    return certificate


def certificate_lookup(*, number: str, name: str) -> Certificate | None:
    """The issued or revoked certificate with exactly this number (stripped, upper-cased)
    held by exactly this name (stripped), or None for a miss and a wrong name alike.

    MEM numbers are T + the holder's ID, unique per type only: a holder of two MEM types
    has two certificates with one number. The most recently issued one answers."""
    number, name = normalise_number(number), (name or "").strip()
    if not number or not name:
        return None
    return _public_certificate("number", [number, name])


def certificate_by_code(code: str) -> Certificate | None:
    """The issued or revoked certificate whose QR verification code is `code`."""
    code = (code or "").strip()
    if not CODE_PATTERN.fullmatch(code):
        return None
    return _public_certificate("code", [code])


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def verification_answer(certificate: Certificate, on: date) -> dict:
    """The public answer for `certificate` on day `on`: status, type, level, issuer,
    dates, and the number, name and ID number masked (audit.masking). Never the full
    name or ID number, which MEM numbers embed (hence masked_number)."""
    status = certificate.validity_on(on)
    return {
        "status": status,
        "status_label": STATUS_LABELS[status],
        "certificate_type": certificate.type_code,
        "type_label": certificate.type_label,
        "occupation": certificate.occupation.name,
        "level": certificate.level,
        "number": certificate.masked_number,
        "issuer": certificate.issuer.name,
        "issued_on": _iso(certificate.issued_on),
        "valid_until": _iso(certificate.valid_until),
        "review_due": _iso(certificate.review_due),
        "revoked_on": _iso(certificate.revoked_on),
        "holder_name": certificate.masked_name,
        "id_number": certificate.masked_id_number,
    }


# The rate limit: a fixed window per client, VERIFY_RATE in django-ratelimit's syntax
# ("30/m", "100/5m", "1000/h"), each client's window ending at its own offset within
# the period (as django-ratelimit does) so that windows do not all reset together.
# Counted here rather than through django-ratelimit, whose count on Django's Redis cache
# took three round trips (SET NX, EXISTS, INCRBY) and built two Redis client objects per
# request (0.55 ms of CPU in-process); on Redis this is one script call (0.13 ms).
_RATE = re.compile(r"(\d+)/(\d*)([smhd])?", re.IGNORECASE)
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A counter outlives its window by this much, so a clock step never revives one.
_EXPIRY_MARGIN = 5
# INCR and, for a new counter, EXPIRE, atomically: no counter is left without a TTL.
_COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@functools.lru_cache(maxsize=8)
def _parse_rate(rate: str) -> tuple[int, int]:
    """(requests, period in seconds) of a rate like "30/m"."""
    match = _RATE.match(rate.strip())
    if match is None:
        raise ImproperlyConfigured(f"VERIFY_RATE must look like 30/m, got {rate!r}")
    count, multiplier, unit = match.groups()
    return int(count), _PERIODS[(unit or "s").lower()] * int(multiplier or 1)


@functools.lru_cache(maxsize=4)
def _count_script(client):
    # One Redis client and registered script per cache client (per process and thread):
    # the script runs by its SHA (EVALSHA), loaded on first use. The client keeps one
    # connection of the cache's pool for itself (single_connection_client) instead of
    # taking it from the pool and giving it back on every call: the pool's check that a
    # connection taken out has nothing unread is a poll() system call, and with the
    # pool's locking cost 40 us of the 85 us a count took in-process. A broken
    # connection is closed and opened again on the next call, as with the pool.
    pool = client.get_client(write=True).connection_pool
    redis_client = redis.Redis(connection_pool=pool, single_connection_client=True)
    return redis_client.register_script(_COUNT_SCRIPT)


def _count_begin(key: str, timeout: int) -> Callable[[], int]:
    """Add one to the counter `key` (created with `timeout`); the returned function gives
    its new value. On Redis the script call is sent at once and its reply read only
    then, so that the caller's own round trip (the look-up in PostgreSQL) overlaps it."""
    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        count = _count_here(cache, key, timeout)
        return lambda: count
    script = _count_script(cache._cache)
    keys, args = [cache.make_and_validate_key(key)], [timeout]
    # The client's own connection (single_connection_client), used by this thread only:
    # Django's caches, and so the clients _count_script keeps, are per thread.
    connection = script.registered_client.connection
    try:
        connection.send_command("EVALSHA", script.sha, *[len(keys), *keys, *args])
    except redis.ConnectionError:
        connection.disconnect()
        return lambda: int(script(keys=keys, args=args))

    def count() -> int:
        try:
            return int(connection.read_response())
        except redis.exceptions.NoScriptError:
            pass  # Redis restarted or flushed its scripts: the call below loads it again
        except redis.ConnectionError:
            connection.disconnect()  # reconnected by the call below, as the pool would
        return int(script(keys=keys, args=args))

    return count


def _count_here(cache, key: str, timeout: int) -> int:
    # Any other cache (the embedded setup's memory cache): add, else increment.
    if cache.add(key, 1, timeout):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between the two calls: this request opens a new window
        cache.add(key, 1, timeout)
        return 1


def verify_rate_limit_begin(request) -> Callable[[], int | None]:
    """Count this request against its client's verification budget (settings.VERIFY_RATE)
    now; the returned function gives None while within the limit, else the seconds until
    the window ends (for Retry-After). Its reply from Redis is read only when asked for,
    so a look-up made in between overlaps the two round trips: one wait for the network
    instead of two (one sleep and wake-up of the worker instead of two, which under load
    cost more than the round trips themselves). The caller must ask before answering, and
    answer nothing but 429 over the limit: the look-up made meanwhile is discarded.
    Works on a Django or DRF request."""
    limit, period = _parse_rate(settings.VERIFY_RATE)
    # The address audit events record: REMOTE_ADDR, or the hop the trusted proxies saw.
    # Requests without a usable address share one bucket rather than escaping the limit.
    client = client_ip_from_request(request) or "unknown"
    now = int(time.time())
    window_end = now - now % period + zlib.crc32(client.encode()) % period
    if window_end < now:
        window_end += period
    # Hashed: the cache holds no client addresses in clear.
    digest = hashlib.sha256(client.encode()).hexdigest()[:32]
    key = f"{RATE_GROUP}:{limit}/{period}s:{window_end}:{digest}"
    count = _count_begin(key, period + _EXPIRY_MARGIN)

    def retry_after() -> int | None:
        return None if count() <= limit else max(window_end - now, 1)

    return retry_after


def verify_rate_limit(request) -> int | None:
    """verify_rate_limit_begin, waiting for the count at once (the pages)."""
    return verify_rate_limit_begin(request)()
