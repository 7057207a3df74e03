# Two commands matter: `make run` (install everything, then run) and `make test`.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/app.lock | sha256sum | cut -c1-12)

.PHONY: run setup test test-fast lint typecheck bench clean

run: setup
	$(VENV)/bin/scrm up

setup: $(STAMP)
	bash scripts/rasa-venv.sh >/dev/null
	$(VENV)/bin/scrm train >/dev/null
	bash scripts/dev-env.sh

$(STAMP):
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "pip>=24"
	$(VENV)/bin/pip install -q -c requirements/app.lock -e '.[dev]'
	touch $@

# The whole suite: lint, types, then unit, contract and integration tests (real Redis,
# real Rasa, embedded MongoDB; MONGODB_URL=... adds a real server to the contract suite).
test: $(STAMP)
	bash scripts/rasa-venv.sh >/dev/null
	$(VENV)/bin/ruff check bot store webhooks scrm tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -p no:cacheprovider

# The fast tier: everything in-process or on Redis; no Rasa, no database server process.
# Two workers (pytest-xdist): each test uses its own Redis namespace and ports.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -p no:cacheprovider -m "not rasa and not server" -n 2

lint:
	$(VENV)/bin/ruff check bot store webhooks scrm tests bench

typecheck:
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
