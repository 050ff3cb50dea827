# Every target bootstraps its own tools: uv into .uv/, the project into .venv/ (from uv.lock).
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .uv/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: run test test-slow lint format bench bench-peers clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

run: $(VENV)/.synced ## start the daemon (web transport on http://127.0.0.1:8765 by default)
	$(VENV)/bin/musher run

test: $(VENV)/.synced ## run the fast test suite (two workers: most tests wait on subprocesses)
	$(VENV)/bin/pytest -q -m "not slow" -n 2 --dist worksteal

test-slow: $(VENV)/.synced ## run the crash loops and soaks
	$(VENV)/bin/pytest -q -m slow

lint: $(VENV)/.synced ## ruff check, ruff format --check, mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.synced
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.synced ## print benchmark figures as JSON lines
	$(VENV)/bin/python -m bench

PEERS_ARGS ?=
bench-peers: $(VENV)/.synced ## musher vs nanobot-ai and hermes-agent (installs them into .cache/peers/)
	$(VENV)/bin/python -m bench.peers $(PEERS_ARGS)

clean:
	rm -rf .venv .uv .pytest_cache .mypy_cache .ruff_cache
