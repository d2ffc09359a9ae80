"""Settings, driven by environment variables.

Production defaults are safe (DEBUG off, no hosts allowed, a SECRET_KEY required);
the embedded development setup (SQLite under var/, eager Celery) is chosen explicitly
by `make run`, which exports DEBUG=1 and a development SECRET_KEY.

Every variable is documented in deploy/env.example.
"""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    """Read a variable, or the file named by NAME_FILE (for container secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text(encoding="utf-8").strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    value = env(name, default) or ""
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "development-only-insecure-key"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")) or VAR_DIR / "media")
MEDIA_URL = "/media/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")) or VAR_DIR / "static")
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "audit",
    "catalog",
    "cases",
    "jobs",
    "exams",
    "issuance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Answers plain GETs of the public verification API with only the middleware its
    # answer shows (issuance/middleware.py); every other request goes on down the list.
    "issuance.middleware.VerifyApiMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "audit.context.AuditContextMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite: wait for the writer lock instead of failing at once, and take it at BEGIN
    # so that select_for_update-style serialisation holds in the embedded setup.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        # WAL lets readers work while one writer commits; NORMAL syncs at checkpoints.
        # A 32 MiB page cache (allocated as used) keeps a bulk import's index pages in
        # memory: a 50,000-row import writes in half the time (bench/README.md, "import").
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-32768;"
        ),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "cases:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("简体中文")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# Uploads: candidate photos are checked by type and size in cases.validators.
PHOTO_MAX_BYTES = env_int("PHOTO_MAX_BYTES", 2 * 1024 * 1024)
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 20 * 1024 * 1024)
IMPORT_MAX_ROWS = env_int("IMPORT_MAX_ROWS", 20_000)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = IMPORT_MAX_BYTES

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Production: content-hashed static names (collectstatic writes staticfiles.json), so
# nginx can let browsers cache them for a year and a deploy still reaches every browser.
# Off by default: pages then need collectstatic to have run (tests, `make run`).
if env_bool("STATIC_MANIFEST", False):
    STORAGES["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    }

REST_FRAMEWORK = {
    # Sessions only: no password on every request, and CSRF protection for writes.
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.exception_handler.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "一试多证 joint evaluation API",
    "DESCRIPTION": "Registration, eligibility, exams and certificate issuance.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "EducationEnum": "cases.models.Education",
        "CaseStatusEnum": "cases.models.CaseStatus",
        "ImportJobStatusEnum": "cases.models.ImportJobStatus",
        "PlanStatusEnum": "cases.models.PlanStatus",
        "SessionStatusEnum": "exams.models.SessionStatus",
        "BookingStatusEnum": "exams.models.BookingStatus",
        "WarningStatusEnum": "exams.models.WarningStatus",
        "ScoreStatusEnum": "exams.models.ScoreStatus",
        "CertificateStatusEnum": "issuance.models.CertificateStatus",
        "CertificateKindEnum": "cases.models.CertificateKind",
    },
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL") or ""
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND") or (CELERY_BROKER_URL or None)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600)
# Redis hands a message a dead worker had taken (acks_late) to another worker once it has
# been unacknowledged this long. It must exceed the longest task (batch renders may run
# 15 minutes), or a slow task runs twice; tests lower it to see redelivery in seconds.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
# kombu looks for such messages every interval x throttle seconds (100 by default): about
# a 36th of the timeout, between 1 and 100 seconds, keeps the delay in proportion.
_RESTORE_EVERY = max(1, min(100, CELERY_VISIBILITY_TIMEOUT // 36))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": min(10, _RESTORE_EVERY),
    "unacked_restore_throttle": max(1, _RESTORE_EVERY // min(10, _RESTORE_EVERY)),
}
# Two queues, both consumed by every worker (a worker without -Q takes all of
# task_queues): PDF rendering goes to its own, so a backlog of thousands of PDFs after
# a batch issue does not hold up short work queued behind it (an officer's next batch
# job, an import, certificate opening). Redis hands a worker its queues in turn.
CELERY_TASK_QUEUES = (Queue("celery"), Queue("pdf"))
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "issuance.tasks.certificate_render": {"queue": "pdf"},
    "issuance.tasks.certificates_render": {"queue": "pdf"},
}
CELERY_BEAT_SCHEDULE = {
    # Outbox-style safety net: on_commit dispatches die with their process.
    "candidate-import-sweep": {"task": "cases.tasks.candidate_import_sweep", "schedule": 300.0},
    "job-sweep": {"task": "jobs.tasks.job_sweep", "schedule": 300.0},
    "quality-warnings-sweep": {
        "task": "exams.tasks.quality_warnings_send_sweep",
        "schedule": 300.0,
    },
    "certificates-open-sweep": {
        "task": "issuance.tasks.certificates_open_sweep",
        "schedule": 300.0,
    },
    "certificate-pdf-sweep": {"task": "issuance.tasks.certificate_render_sweep", "schedule": 300.0},
    # The national query exchange (一网通查): the quarter just ended, on the 1st of
    # January, April, July and October at 02:00.
    "certificates-quarterly-export": {
        "task": "issuance.tasks.certificates_export_quarter",
        "schedule": crontab(minute=0, hour=2, day_of_month=1, month_of_year="1,4,7,10"),
    },
    # Certificates whose review (复审) falls due within 90 days, per issuer, each morning.
    "certificates-review-reminder": {
        "task": "issuance.tasks.certificates_review_reminder",
        "schedule": crontab(minute=30, hour=6),
    },
}

# Issuance (issue 4). Each issuer's PAdES signing key and certificate live in
# SIGNING_KEYS_DIR/<issuer code>/ (mode 0600), never in the database; `make run` and the
# demo create self-signed ones (manage.py issuer_keys). PUBLIC_BASE_URL is the origin
# printed in the certificates' QR codes: the public verification page's address.
SIGNING_KEYS_DIR = Path(env("SIGNING_KEYS_DIR", str(VAR_DIR / "keys")) or VAR_DIR / "keys")
PUBLIC_BASE_URL = (env("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
# Public verification: requests per client address, e.g. 30/m, 100/5m, 1000/h.
VERIFY_RATE = env("VERIFY_RATE", "30/m") or "30/m"
# Quarterly data exchange (export_certificates as a beat task) writes here.
EXCHANGE_DIR = Path(env("EXCHANGE_DIR", str(VAR_DIR / "exchange")) or VAR_DIR / "exchange")
# Protected downloads (certificate PDFs, candidate photos) handed to nginx: when set
# (e.g. "/protected/", an `internal` nginx location aliasing MEDIA_ROOT), those views
# answer with an empty body and `X-Accel-Redirect: <prefix><storage name>` after their
# permission checks, and nginx sends the file; empty means Django streams it itself.
PROTECTED_MEDIA_PREFIX = env("PROTECTED_MEDIA_PREFIX") or ""

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if env("CACHE_URL"):
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("CACHE_URL"),
    }

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Container and load-balancer probes call /healthz over plain HTTP on the loopback.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
# Only once every subdomain serves HTTPS; preloading is a commitment browsers keep for
# months (hstspreload.org), hence both off unless the deployment says so.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# The number of proxies in front of the app whose X-Forwarded-For entries are trusted
# when recording the client IP in audit events (0: use REMOTE_ADDR only).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # WeasyPrint and fontTools narrate every rendering step at INFO.
    "loggers": {
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}

# SessionStaff's one-assignment constraint treats a missing component as equal
# (nulls_distinct=False): PostgreSQL enforces it; on SQLite the service checks it.
SILENCED_SYSTEM_CHECKS = ["models.W047"]
