"""deploy/: the production settings pass `check --deploy`, every setting is documented in
deploy/env.example, /healthz, protected downloads through nginx (X-Accel-Redirect), and
the consistency of the gunicorn, nginx, docker-compose and systemd files with the
settings and with each other. deploy/smoke.sh runs the stack itself (`make smoke`)."""

import ast
import io
import os
import re
import runpy
import secrets
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.test import Client
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from cases import services as case_services
from config.downloads import accel_redirect_response
from issuance import services
from issuance.models import Certificate
from issuance.pdf import certificate_pdf_store
from tests.cases.factories import UserFactory, coordinator, make_id_number
from tests.issuance.factories import BOTH, institution, officer, passed_cases

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENV_READERS = {"env", "env_bool", "env_int", "env_list"}


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    """A tool of the machine (nginx, openssl, systemd-analyze, docker) with fixed arguments."""
    return subprocess.run(  # noqa: S603 (fixed arguments, no shell)
        [str(part) for part in command], capture_output=True, text=True, **kwargs
    )


def env_example() -> dict[str, str]:
    """NAME -> value of each active (uncommented) line of deploy/env.example."""
    values = {}
    for line in (DEPLOY / "env.example").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            values[match[1]] = match[2]
    return values


def settings_env_names() -> set[str]:
    """The first argument of every env()/env_bool()/env_int()/env_list() call in
    config/settings.py."""
    tree = ast.parse((ROOT / "config" / "settings.py").read_text(encoding="utf-8"))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ENV_READERS
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


# deploy/env.example ----------------------------------------------------------------------


def test_every_setting_read_from_the_environment_is_in_env_example_with_a_comment():
    names = settings_env_names()
    # The parse finds the settings (a guard against the AST walk matching nothing).
    assert {"SECRET_KEY", "DEBUG", "DATABASE_URL", "PROTECTED_MEDIA_PREFIX"} <= names
    lines = (DEPLOY / "env.example").read_text(encoding="utf-8").splitlines()
    documented, commented = set(), set()
    paragraph_has_comment = False
    for line in lines:
        if not line.strip():
            paragraph_has_comment = False
        elif line.startswith("#"):
            paragraph_has_comment = True
        elif match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=.*", line):
            documented.add(match[1])
            if paragraph_has_comment:
                commented.add(match[1])
    assert sorted(names - documented) == []
    assert sorted(names - commented) == []


def test_every_gunicorn_knob_is_in_env_example():
    source = (DEPLOY / "gunicorn.conf.py").read_text(encoding="utf-8")
    knobs = set(re.findall(r'"(GUNICORN_[A-Z_]+)"', source))
    assert {"GUNICORN_BIND", "GUNICORN_WORKERS", "GUNICORN_FORWARDED_ALLOW_IPS"} <= knobs
    text = (DEPLOY / "env.example").read_text(encoding="utf-8")
    assert sorted(k for k in knobs if not re.search(rf"^(# )?{k}=", text, re.M)) == []


# check --deploy -----------------------------------------------------------------------------


def _check_deploy(tmp_path, **overrides) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` in a fresh process with env.example's values (a real
    secret; files under tmp_path), nothing inherited from the test environment."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(env_example())
    env.update(
        SECRET_KEY=secrets.token_urlsafe(64),
        VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "var" / "media"),
        STATIC_ROOT=str(tmp_path / "static"),
        SIGNING_KEYS_DIR=str(tmp_path / "keys"),
        EXCHANGE_DIR=str(tmp_path / "var" / "exchange"),
    )
    env.update(overrides)
    return run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_with_the_production_settings_of_env_example(tmp_path):
    example = env_example()
    assert example["DEBUG"] == "0"
    assert example["SECURE_SSL_REDIRECT"] == "1"
    assert example["SECURE_COOKIES"] == "1"
    assert int(example["SECURE_HSTS_SECONDS"]) >= 31536000
    result = _check_deploy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_the_hsts_knobs(tmp_path):
    result = _check_deploy(tmp_path, SECURE_HSTS_INCLUDE_SUBDOMAINS="0", SECURE_HSTS_PRELOAD="0")
    assert result.returncode == 1
    assert "security.W005" in result.stderr + result.stdout
    assert "security.W021" in result.stderr + result.stdout


# /healthz -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_answers_ok_after_a_database_round_trip(settings, django_assert_num_queries):
    settings.CELERY_BROKER_URL = ""
    with django_assert_num_queries(1):
        response = Client().get("/healthz")
    assert (response.status_code, response.content) == (200, b"ok")
    assert response["Content-Type"] == "text/plain"
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_is_down(settings, monkeypatch):
    settings.CELERY_BROKER_URL = ""

    def broken():
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken)
    response = Client().get("/healthz")
    assert (response.status_code, response.content) == (503, b"database unavailable")


@pytest.mark.django_db
def test_healthz_is_503_when_the_broker_does_not_answer(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = Client().get("/healthz")
    assert (response.status_code, response.content) == (503, b"broker unavailable")


@pytest.mark.django_db
def test_healthz_pings_the_configured_redis_broker(settings):
    broker = os.environ.get("CELERY_BROKER_URL")
    if not broker:
        pytest.skip("needs CELERY_BROKER_URL (Redis; .ci/run sets it)")
    settings.CELERY_BROKER_URL = broker
    response = Client().get("/healthz")
    assert (response.status_code, response.content) == (200, b"ok")


@pytest.mark.django_db
def test_healthz_is_read_only_and_exempt_from_the_https_redirect(settings):
    settings.CELERY_BROKER_URL = ""
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # built after the change: SecurityMiddleware reads it at start
    assert client.get("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
    redirected = client.get("/accounts/login/")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://testserver/accounts/login/"


# Protected downloads ------------------------------------------------------------------------


def test_accel_redirect_quotes_the_storage_name_and_keeps_the_disposition(settings):
    settings.PROTECTED_MEDIA_PREFIX = "/protected"
    response = accel_redirect_response(
        "imports/名单 1.xlsx", content_type="application/vnd.ms-excel", as_attachment=True
    )
    assert response.content == b""
    assert response["X-Accel-Redirect"] == ("/protected/imports/%E5%90%8D%E5%8D%95%201.xlsx")
    assert response["Content-Type"] == "application/vnd.ms-excel"
    assert response["Content-Disposition"] == (
        "attachment; filename*=utf-8''%E5%90%8D%E5%8D%95%201.xlsx"
    )
    settings.PROTECTED_MEDIA_PREFIX = ""
    assert accel_redirect_response("a.pdf", content_type="application/pdf") is None


@pytest.fixture
def rendered(db):
    """A skill-level certificate issued by an institution, its signed PDF stored."""
    inst = institution()
    issuer_officer = officer(inst, "inst-officer")
    (case,) = passed_cases((BOTH,))
    services.certificates_open(case_ids=[case.pk])
    certificate = Certificate.objects.get(case=case, kind="skill")
    services.certificate_approve(actor=issuer_officer, certificate=certificate)
    services.certificate_issue(actor=issuer_officer, certificate=certificate, on=date(2026, 11, 20))
    assert certificate_pdf_store(certificate.pk) is True
    return Certificate.objects.get(pk=certificate.pk), issuer_officer


def _api_pdf(user, certificate):
    api = APIClient()
    api.force_authenticate(user)
    return api.get(f"/api/v1/certificates/{certificate.pk}/pdf/", HTTP_ACCEPT="application/pdf")


def test_the_pdf_is_streamed_by_django_without_a_prefix(rendered, settings):
    certificate, user = rendered
    settings.PROTECTED_MEDIA_PREFIX = ""
    response = _api_pdf(user, certificate)
    assert response.status_code == 200
    assert not response.has_header("X-Accel-Redirect")
    with default_storage.open(certificate.pdf, "rb") as handle:
        assert b"".join(response.streaming_content) == handle.read()


def test_behind_nginx_the_pdf_is_an_x_accel_redirect_with_the_same_headers(rendered, settings):
    certificate, user = rendered
    settings.PROTECTED_MEDIA_PREFIX = ""
    streamed = _api_pdf(user, certificate)
    settings.PROTECTED_MEDIA_PREFIX = "/protected/"
    for response in (
        _api_pdf(user, certificate),
        _page_client(user).get(reverse("issuance:certificate-pdf", args=[certificate.pk])),
    ):
        assert response.status_code == 200
        assert response.content == b""
        assert response["X-Accel-Redirect"] == f"/protected/{certificate.pdf}"
        assert response["Content-Type"] == streamed["Content-Type"] == "application/pdf"
        assert (
            response["Content-Disposition"]
            == streamed["Content-Disposition"]
            == (f'attachment; filename="certificate-{certificate.pk}.pdf"')
        )


def test_behind_nginx_a_lost_pdf_file_still_gets_the_officers_message(rendered, settings):
    certificate, user = rendered
    settings.PROTECTED_MEDIA_PREFIX = "/protected/"
    default_storage.delete(certificate.pdf)
    response = _api_pdf(user, certificate)
    assert response.status_code == 404
    assert response.json() == {"detail": "证书PDF文件缺失，请联系管理员重新生成"}
    assert not response.has_header("X-Accel-Redirect")


def test_behind_nginx_another_issuers_officer_gets_no_redirect(rendered, settings):
    certificate, _user = rendered
    settings.PROTECTED_MEDIA_PREFIX = "/protected/"
    stranger = officer(institution(code="inst-s9999", institution_code="9999"), "stranger")
    response = _api_pdf(stranger, certificate)
    assert response.status_code == 404
    assert not response.has_header("X-Accel-Redirect")


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def photographed(db):
    coord = coordinator()
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (1, 2, 3)).save(buffer, "PNG")
    candidate = case_services.candidate_create(
        actor=coord,
        id_number=make_id_number(),
        name="王垚",
        phone="13800138000",
        education="senior",
        photo=SimpleUploadedFile("p.png", buffer.getvalue()),
    )
    return candidate, coord


def test_behind_nginx_the_candidate_photo_is_an_x_accel_redirect(photographed, settings):
    candidate, coord = photographed
    url = reverse("cases:candidate-photo", args=[candidate.pk])
    settings.PROTECTED_MEDIA_PREFIX = ""
    streamed = _page_client(coord).get(url)
    assert b"".join(streamed.streaming_content)[:3] == b"\xff\xd8\xff"
    settings.PROTECTED_MEDIA_PREFIX = "/protected/"
    response = _page_client(coord).get(url)
    assert response.status_code == 200
    assert response.content == b""
    assert response["X-Accel-Redirect"] == f"/protected/{candidate.photo.name}"
    for header in ("Content-Type", "Content-Disposition", "Cache-Control"):
        assert response[header] == streamed[header], header
    assert response["Cache-Control"] == "private, max-age=300"
    # The permission check comes first: a grader is refused, with no redirect to follow.
    grader = UserFactory(username="a-grader", roles=["grader"])
    refused = _page_client(grader).get(url)
    assert refused.status_code == 403
    assert not refused.has_header("X-Accel-Redirect")


# gunicorn -----------------------------------------------------------------------------------


def _gunicorn(monkeypatch, **env) -> dict:
    for key in [k for k in os.environ if k.startswith("GUNICORN_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {
        k: v
        for k, v in runpy.run_path(str(DEPLOY / "gunicorn.conf.py")).items()
        if not k.startswith("_") and k not in {"multiprocessing", "os"}
    }


def test_gunicorn_config_names_only_real_settings_with_env_overrides(monkeypatch):
    from gunicorn.config import Config

    known = Config().settings
    values = _gunicorn(monkeypatch)
    assert sorted(set(values) - set(known)) == []
    assert values["workers"] == 2 * os.cpu_count() + 1
    assert (values["bind"], values["forwarded_allow_ips"]) == ("127.0.0.1:8000", "127.0.0.1,::1")
    assert values["control_socket_disable"] is True
    values = _gunicorn(monkeypatch, GUNICORN_WORKERS="3", GUNICORN_BIND="0.0.0.0:8000")
    assert (values["workers"], values["bind"]) == (3, "0.0.0.0:8000")
    config = Config()
    for key, value in values.items():
        config.set(key, value)  # gunicorn's own validators accept every value
    assert config.workers == 3


# nginx --------------------------------------------------------------------------------------


def _nginx_locations() -> dict[str, str]:
    text = (DEPLOY / "nginx" / "joint-evaluation.conf").read_text(encoding="utf-8")
    blocks = re.finditer(r"^\s*location\s+([^{\n]+)\{([^}]*)\}", text, re.M)
    return {m[1].strip(): m[2] for m in blocks}


def test_nginx_serves_static_and_protected_files_from_the_settings_paths():
    example, locations = env_example(), _nginx_locations()
    assert f"alias {example['STATIC_ROOT']}/;" in locations["/static/"]
    assert "expires 1y;" in locations["/static/"]
    protected = locations[example["PROTECTED_MEDIA_PREFIX"]]
    assert "internal;" in protected
    assert f"alias {example['MEDIA_ROOT']}/;" in protected
    assert "return 404;" in locations["/media/"]


def test_nginx_rate_limits_verification_and_accepts_the_largest_import():
    text = (DEPLOY / "nginx" / "joint-evaluation.conf").read_text(encoding="utf-8")
    example, locations = env_example(), _nginx_locations()
    per_minute = int(example["VERIFY_RATE"].removesuffix("/m"))
    assert f"zone=joint_verify:10m rate={per_minute}r/m;" in text
    for path in ("/verify/", "/api/v1/verify/"):
        assert "limit_req zone=joint_verify" in locations[path]
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in locations[path]
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in locations[path]
    (size,) = re.findall(r"client_max_body_size (\d+)m;", text)
    # The import limit plus room for the multipart envelope: the app answers the excess.
    assert 0 < int(size) * 2**20 - int(example["IMPORT_MAX_BYTES"]) <= 2 * 2**20
    assert "server 127.0.0.1:8000 " in text  # deploy/Dockerfile's nginx stage rewrites it


def test_nginx_config_passes_nginx_t(tmp_path):
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (the file is also checked in the nginx image)")
    site = (DEPLOY / "nginx" / "joint-evaluation.conf").read_text(encoding="utf-8")
    run(
        ["/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=test", "-keyout", tmp_path / "privkey.pem", "-out", tmp_path / "fullchain.pem"],
        check=True,
    )  # fmt: skip
    (tmp_path / "site.conf").write_text(site.replace("/etc/ssl/joint/", f"{tmp_path}/"))
    temp = " ".join(
        f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ {temp} uwsgi_temp_path {tmp_path}/u; scgi_temp_path {tmp_path}/s;\n"
        f"access_log off; include {tmp_path}/site.conf; }}\n"
    )
    result = run(
        [nginx, "-t", "-p", tmp_path, "-c", tmp_path / "nginx.conf", "-e", tmp_path / "error.log"],
        check=False,
    )
    assert result.returncode == 0, result.stderr


# docker-compose and Dockerfile ----------------------------------------------------------------


def test_compose_runs_the_stack_with_healthchecks():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    services_ = compose["services"]
    assert set(services_) == {"postgres", "redis", "migrate", "web", "worker", "beat", "nginx"}
    assert services_["postgres"]["image"].startswith("postgres:15")
    assert services_["redis"]["image"].startswith("redis:7")
    for name in ("postgres", "redis", "web", "worker", "beat", "nginx"):
        assert services_[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services_["web"]["healthcheck"]["test"])
    for name in ("migrate", "web", "worker", "beat"):
        assert services_[name]["env_file"] == "env", name
        assert services_[name]["environment"]["PROTECTED_MEDIA_PREFIX"] == "/protected/"
        assert services_[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert services_[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services_["web"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services_["nginx"]["depends_on"]["web"] == {"condition": "service_healthy"}
    worker = services_["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["command"][:4] == ["celery", "-A", "config", "worker"]
    assert {"fair", "--prefetch-multiplier=1"} <= set(worker["command"])
    assert services_["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services_["beat"]["deploy"]["replicas"] == 1
    # nginx reads the media the app writes, at the path the site file aliases.
    media_volume = "var:" + str(Path(env_example()["MEDIA_ROOT"]).parent)
    assert media_volume in services_["web"]["volumes"]
    assert media_volume + ":ro" in services_["nginx"]["volumes"]
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "var", "keys"}


def test_compose_file_passes_docker_compose_config(tmp_path):
    docker = shutil.which("docker")
    if docker is None or run([docker, "compose", "version"], check=False).returncode:
        pytest.skip("docker compose is not installed (the YAML is checked above)")
    env = DEPLOY / "env"
    created = not env.exists()
    if created:
        env.write_text("")
    try:
        result = run(
            [docker, "compose", "-f", DEPLOY / "docker-compose.yml", "config", "-q"],
            env={**os.environ, "POSTGRES_PASSWORD": "x"},
            check=False,
        )
    finally:
        if created:
            env.unlink()
    assert result.returncode == 0, result.stderr


def test_the_image_installs_the_cjk_fonts_and_harfbuzz_subsetting():
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-slim-bookworm AS app" in dockerfile
    for package in ("fonts-noto-cjk", "libharfbuzz-subset0"):
        assert re.search(rf"^\s+{package} \\$", dockerfile, re.M), package
    assert "RUN pip install .\n" in dockerfile
    assert "manage.py collectstatic --no-input" in dockerfile
    assert 'CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi"]' in dockerfile


# systemd --------------------------------------------------------------------------------------


def _unit(name: str) -> dict[str, list[str]]:
    text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8").replace("\\\n", " ")
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            entries.setdefault(key, []).append(" ".join(value.split()))
    return entries


@pytest.mark.parametrize(
    "name", ["joint-web.service", "joint-worker@.service", "joint-beat.service"]
)
def test_systemd_units_read_the_env_file_and_are_hardened(name):
    unit = _unit(name)
    assert unit["EnvironmentFile"] == ["/etc/joint-evaluation/env"]
    assert unit["User"] == ["joint"]
    for key, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
    ]:
        assert unit[key] == [value], key
    assert "/srv/joint/var" in unit["ReadWritePaths"][0].split()
    assert unit["WantedBy"] == ["joint-evaluation.target"]


def test_systemd_commands():
    (web,) = _unit("joint-web.service")["ExecStart"]
    assert web.endswith("gunicorn -c /srv/joint/app/deploy/gunicorn.conf.py config.wsgi")
    (worker,) = _unit("joint-worker@.service")["ExecStart"]
    assert "celery -A config worker" in worker
    assert "-O fair --prefetch-multiplier=1 --concurrency=1 --hostname=worker%i@%H" in worker
    (beat,) = _unit("joint-beat.service")["ExecStart"]
    assert "celery -A config beat" in beat
    assert "--schedule=/srv/joint/var/celerybeat-schedule" in beat


def test_systemd_analyze_verifies_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The units point at the production venv; here, at this one.
    venv_bin = Path(sys.executable).parent
    for unit in (DEPLOY / "systemd").iterdir():
        text = unit.read_text(encoding="utf-8").replace("/srv/joint/venv/bin", str(venv_bin))
        (tmp_path / unit.name).write_text(text)
    (tmp_path / "joint-worker@1.service").write_text(
        (tmp_path / "joint-worker@.service").read_text()
    )
    units = ["joint-web.service", "joint-worker@1.service", "joint-beat.service"]
    result = run([analyze, "verify", "--man=no", *units, "joint-evaluation.target"],
                 cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_pdf_rendering_has_its_own_queue_that_every_worker_consumes():
    """A backlog of PDFs must not hold up short work; workers started without -Q (the
    systemd unit, compose, the smoke script) still take both queues."""
    from config.celery import app

    router = app.amqp.router
    for name in ("issuance.tasks.certificate_render", "issuance.tasks.certificates_render"):
        assert router.route({}, name)["queue"].name == "pdf"
    for name in ("jobs.tasks.job_run", "cases.tasks.candidate_import_run"):
        assert router.route({}, name)["queue"].name == "celery"
    # The configured queues (app.amqp.queues also holds those tests declare on the fly).
    assert [queue.name for queue in app.conf.task_queues] == ["celery", "pdf"]
    for path in ("deploy/docker-compose.yml", *Path("deploy/systemd").glob("*.service")):
        assert " -Q " not in Path(path).read_text(encoding="utf-8")
