"""gunicorn settings: `gunicorn -c deploy/gunicorn.conf.py config.wsgi`.

Every value can be overridden from the environment (GUNICORN_*), so the same file serves
the systemd unit, the container and deploy/smoke.sh. Django's own settings come from the
environment as usual (deploy/env.example).
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


# Where nginx reaches us: a loopback port on one machine, 0.0.0.0:8000 in a container
# (nginx in its own container), or unix:/run/joint-evaluation/gunicorn.sock.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Sync workers: the views are short database round trips, and anything slow (PDF
# rendering, imports, batch issuance) runs in Celery. The classic 2 x cores + 1 keeps a
# core busy while other workers wait on PostgreSQL.
workers = _int("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count() + 1)
worker_class = "sync"

# A request still running after `timeout` seconds is a stuck worker: killed and replaced.
# 60 s covers the longest synchronous request (an officer's ZIP or merged print file of
# a few hundred certificates); nginx's proxy_read_timeout is a little longer.
timeout = _int("GUNICORN_TIMEOUT", 60)
# On SIGTERM (deploy, systemctl stop) requests in flight get this long to finish.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)

# Recycle workers now and then (with jitter, so they do not all restart together):
# bounds the memory a long-lived process accumulates (WeasyPrint font caches in tickets).
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# Trust X-Forwarded-For / X-Forwarded-Proto only from the nginx in front of us: the
# loopback on one machine; in docker-compose set GUNICORN_FORWARDED_ALLOW_IPS to the
# proxy network's addresses (or "*" when only nginx can reach the port). Django itself
# reads X-Forwarded-Proto through SECURE_PROXY_SSL_HEADER and the client address
# through TRUSTED_PROXY_COUNT.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logs to stdout/stderr: journald or the container runtime collects them.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The client as nginx saw it (X-Forwarded-For), the request, status, size, and the
# duration in milliseconds (%(M)s), for spotting slow endpoints in the access log.
access_log_format = (
    '%({x-forwarded-for}i)s %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
)

# Each worker imports the application itself (no preload_app): a HUP (`systemctl reload
# joint-web`) then starts workers on the new code while the old ones finish their
# requests. With preload the master would keep serving the code it loaded at start.
preload_app = False

# gunicorn >= 25.1 opens a control socket (for gunicornc) by default in $XDG_RUNTIME_DIR
# or ~/.gunicorn/: one path for every gunicorn of the user, in a home directory that is
# read-only under the systemd unit. Only where asked for (joint-web.service sets it).
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True

# Worker heartbeat files in memory, not on a possibly slow disk (containers).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
