# One entry point for people and CI. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install demo test lint e2e e2e-kind bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@if command -v npm >/dev/null; then \
		for kit in examples/receivers/express examples/publishers/node; do \
			(cd $$kit && npm ci --silent --no-audit --no-fund) || exit 1; \
		done; \
	else echo "npm not found: the Express receiver and Node publisher tests will skip"; fi
	touch $(STAMP)

install: $(STAMP)

## The whole flow on this machine with no cluster: API stand-in, real operator, verifying receiver.
demo: $(STAMP)
	$(BIN)/webhook-operator demo

## Unit, integration, fault and benchmark-smoke tiers; the e2e tier skips without a cluster.
test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check operator tests benchmarks examples
	$(BIN)/ruff format --check operator tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e -m e2e

e2e-kind:
	scripts/e2e-kind.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
