# The two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEB_PACKAGES := fonts-noto-cjk libharfbuzz-subset0 chromium poppler-utils zbar-tools
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

bench: deps debs
	$(TEST_ENV) $(PY) -m bench

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
