# The two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# fontconfig (fc-match): the seal's font for issuance.pdf; fonts-droid-fallback and
# fonts-dejavu-core: the TrueType fonts of the reportlab floor in bench/bench_pdf.py.
DEB_PACKAGES := fonts-noto-cjk libharfbuzz-subset0 fontconfig chromium poppler-utils zbar-tools \
	fonts-droid-fallback fonts-dejavu-core
HOST ?= 127.0.0.1
PORT ?= 8000
# The embedded development setup: SQLite under var/, Celery eager, DEBUG on.
DEV_ENV := DEBUG=$${DEBUG:-1} SECRET_KEY=$${SECRET_KEY:-development-only-insecure-key}
TEST_ENV := SECRET_KEY=$${SECRET_KEY:-test-only-insecure-key} DJANGO_ALLOW_ASYNC_UNSAFE=true

.PHONY: run test lint format deps debs bench demo migrate clean smoke

run: deps debs
	$(DEV_ENV) $(PY) manage.py migrate --no-input
	$(DEV_ENV) $(PY) manage.py demo --candidates 30 --skip-if-loaded
	$(DEV_ENV) $(PY) manage.py demo_accounts
	$(DEV_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

test: deps debs
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SECRET_KEY=lint $(PY) manage.py makemigrations --check --dry-run

format: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every benchmark on the database DATABASE_URL names (SQLite when unset). Issue 5's
# verification figure is one against PostgreSQL: when DATABASE_URL is unset and the
# machine's PostgreSQL answers at BENCH_DATABASE_URL, `verify` runs again against it
# (its throwaway database is test_<name>; the server-level `postgres` database is only
# used to check that PostgreSQL answers).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/bench
bench: deps debs
	$(TEST_ENV) $(PY) -m bench
	@if [ -z "$$DATABASE_URL" ] && $(PY) -c 'import sys, psycopg; \
		psycopg.connect(sys.argv[1].rsplit("/", 1)[0] + "/postgres", connect_timeout=3).close()' \
		'$(BENCH_DATABASE_URL)' 2>/dev/null; then \
		echo "verify again on PostgreSQL ($(BENCH_DATABASE_URL))"; \
		$(TEST_ENV) DATABASE_URL='$(BENCH_DATABASE_URL)' $(PY) -m bench verify; \
	fi

# The production stack on loopback (gunicorn, two Celery workers, beat) against the
# machine's PostgreSQL and Redis, driven through HTTP from registration to verification.
smoke: deps debs
	deploy/smoke.sh

# Python: a venv with the project's pinned ranges, reinstalled when pyproject changes.
deps: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

# Debian: CJK fonts and HarfBuzz subsetting for WeasyPrint, chromium for browser tests.
debs:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf var/db.sqlite3 var/media
