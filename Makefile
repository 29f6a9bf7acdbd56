# Two commands matter: `make demo` and `make test`. Both build the virtual
# environment from requirements.lock first, so every machine gets the same packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-run

.PHONY: demo test lint typecheck unit bench lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ehr-bridge demo --workdir $(DEMO_DIR)

test: lint typecheck unit

LINT_PATHS := src tests $(wildcard benchmarks)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# Issue 7's performance figures against the simulator on loopback, each next to its target.
# Not part of `make test`: the full run takes most of an hour (BENCH_ARGS=--quick: minutes).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_all.py $(BENCH_ARGS)

# Re-resolve the pinned versions after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^ehr-bridge' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
