# The project's two commands: `make demo` (the main job, offline) and `make test` (ruff, mypy, pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install lint typecheck pytest test test-distributed matrix-install test-matrix demo bench clean clean-matrix

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

# -- the production shape: `make test-distributed` ---------------------------------------------------------
# PostgreSQL and Redis (Debian packages, apt-get installed when absent) on free loopback ports in a throwaway
# directory, then Airflow with CeleryExecutor: scheduler, dag-processor, api-server, two Celery workers and
# two triggerers, each its own process group. CALLCOV_DISTRIBUTED_CALLS sets the size of the daily batch.
DISTRIBUTED_STAMP := $(VENV)/.installed-distributed
$(DISTRIBUTED_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[distributed]"
	@touch $@

test-distributed: $(DISTRIBUTED_STAMP)
	@start=$$(date +%s); \
	PYTHONPATH=$(CURDIR) $(BIN)/python -m pytest -m distributed -s -q -rfE tests/distributed; rc=$$?; \
	echo "test-distributed: $$(( $$(date +%s) - start ))s, exit $$rc"; exit $$rc

# -- the Airflow version matrix: `make test-matrix` ----------------------------------------------------------
# The unit and dag.test() integration suites on Airflow 2.11.2, the newest 3.0.x and the newest 3.x, each in
# its own venv (.venv-af2.11, .venv-af3.0, .venv-af3.x) installed as a user would: `pip install` with pip's
# own resolution, no constraints file. The venvs install and test in parallel (MATRIX_JOBS at a time); each
# pytest session makes its own throwaway AIRFLOW_HOME (tests/conftest.py). Logs: .venv-<name>/*.log.
MATRIX := af2.11 af3.0 af3.x
MATRIX_JOBS ?= 3
MATRIX_PYTHON ?= $(PYTHON)
MATRIX_SUITES ?= tests/unit tests/integration
MATRIX_REQUIRES_af2.11 := "apache-airflow==2.11.2"
# Airflow 3.0.x bounds neither fastapi nor universal-pathlib, and their newest releases break it: fastapi
# 0.132+ refuses the JSON bodies of 3.0's task runner (every task fails), universal-pathlib 0.3 breaks its
# ObjectStoragePath. A user installing 3.0 without Airflow's constraints file needs the same two caps.
MATRIX_REQUIRES_af3.0 := "apache-airflow==3.0.6" "fastapi<0.132" "universal-pathlib<0.3"
MATRIX_REQUIRES_af3.x := "apache-airflow>=3,<4"

.PRECIOUS: .venv-%/.installed
.venv-%/.installed: pyproject.toml
	@set -e; start=$$(date +%s); venv=.venv-$*; log=$$venv/install.log; \
	test -x $$venv/bin/python || $(MATRIX_PYTHON) -m venv $$venv; \
	if ! { $$venv/bin/python -m pip install --upgrade "pip>=23.2" && \
	       $$venv/bin/python -m pip install -e ".[test]" $(MATRIX_REQUIRES_$*); } >$$log 2>&1; then \
		grep -v "^WARNING: Location" $$log | tail -n 40; echo "matrix $*: install FAILED (log: $$log)"; exit 1; \
	fi; \
	airflow=$$($$venv/bin/python -c "from importlib.metadata import version; print(version('apache-airflow'))"); \
	echo "matrix $*: installed Airflow $$airflow in $$(( $$(date +%s) - start ))s"; \
	touch $@

matrix-test-%: .venv-%/.installed
	@start=$$(date +%s); venv=.venv-$*; log=$$venv/pytest.log; \
	airflow=$$($$venv/bin/python -c "from importlib.metadata import version; print(version('apache-airflow'))"); \
	if $$venv/bin/python -m pytest -q -rfE $(MATRIX_SUITES) >$$log 2>&1; then rc=0; else rc=$$?; fi; \
	if [ $$rc -ne 0 ]; then grep -E "^(E  |FAILED |ERROR |[a-z_/]+\.py:[0-9]+: )" $$log | head -n 80; fi; \
	echo "matrix $* (Airflow $$airflow): $$(tail -n 1 $$log | tr -d '=') in $$(( $$(date +%s) - start ))s"; \
	exit $$rc

matrix-install: $(addprefix .venv-,$(addsuffix /.installed,$(MATRIX)))

test-matrix:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory -k -j$(MATRIX_JOBS) --output-sync=target $(addprefix matrix-test-,$(MATRIX)); \
	rc=$$?; echo "test-matrix: $(MATRIX) in $$(( $$(date +%s) - start ))s, exit $$rc"; exit $$rc

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf .demo .coverage .coverage.* .mypy_cache .ruff_cache

clean-matrix:
	rm -rf $(addprefix .venv-,$(MATRIX))
