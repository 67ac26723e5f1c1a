# Bitworks Message. Two commands on a fresh machine (Python 3.11 or 3.12 and git):
#   make dev    install, start Postgres, migrate, seed, serve HTTP :3000 and WebSocket :3001
#   make test   install, start Postgres, migrate, run the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM := .venv-sam/bin/sam
STAMP := $(VENV)/.installed
N8N := .local/n8n/.bitworks-installed

.PHONY: install dev test test-quick test-all lint validate build bench bench-check clean

$(STAMP): requirements-dev.txt layers/common/requirements.txt
	@$(PYTHON) -c 'import sys; v=sys.version_info[:2]; sys.exit(0 if (3,11)<=v<=(3,12) else "Python 3.11 or 3.12 needed (pgserver has no wheels for 3.13); or set DATABASE_URL and PYTHON=python3.x")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

$(SAM): requirements-sam.txt
	test -d .venv-sam || $(PYTHON) -m venv .venv-sam
	.venv-sam/bin/pip install -q -r requirements-sam.txt
	touch $(SAM)

# The n8n-marked tests run the example workflows in a real n8n 2.8.4 (npm + a sqlite3 build: about
# 7 minutes, once). Without npm, or if the install fails, those tests skip and say why.
$(N8N): | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
	  timeout 1200 $(PY) -m tools.n8n_local install || echo "make: n8n could not be installed: the n8n tests will be skipped"; \
	else echo "make: npm not found: the n8n tests will be skipped"; fi

dev: install
	$(PY) -m tools.dev

test: install $(SAM) $(N8N)
	$(PY) -m pytest

test-quick: install
	$(PY) -m pytest -m "not e2e and not browser and not slow and not n8n"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

validate: $(SAM)
	$(SAM) validate --lint

build: $(SAM)
	$(SAM) build

bench: install
	$(PY) -m bench.run

bench-check: install
	$(PY) -m bench.run --check

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
