# The project's two commands: `make demo` (the main job, offline) and `make test` (ruff, mypy, pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install lint typecheck pytest test demo bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23.2"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest --cov=callcov_provider --cov-report= -q
	$(BIN)/python -m coverage combine -q 2>/dev/null || true
	$(BIN)/python -m coverage report --include='callcov_provider/hooks/*,callcov_provider/models.py,callcov_provider/exceptions.py' --fail-under=90
	$(BIN)/python -m coverage report

test: lint typecheck pytest

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf .demo .coverage .coverage.* .mypy_cache .ruff_cache
