# The two commands: `make run` (set up, then `dvc repro` on the bundled data) and `make test`.
# Both create or reuse .venv and install the locked dependencies; nothing needs to be installed first
# except Python 3.11.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

# Prefect runs each flow against a temporary local API server when none is configured; give it
# time to start on a busy 2-core machine (Prefect's default is 20 s).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
# Nothing calls home: the pipeline runs offline (telemetry of Prefect, MLflow, Feast, BentoML).
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export FEAST_USAGE ?= False
export BENTOML_DO_NOT_TRACK ?= true

.PHONY: run test setup lint bench mlflow-ui

run: setup
	$(BIN)/candlecast repro  # = dvc repro, with one local Prefect API server for all stages
	$(BIN)/candlecast report  # the backtest: policy beside buy-and-hold and the rule baselines
	$(BIN)/dvc metrics show --md metrics/models  # every model and horizon, out of sample

test: setup
	$(BIN)/python -m compileall -q src  # imports stay fast where PYTHONDONTWRITEBYTECODE is set
	$(BIN)/python -m pytest -n 2 --timeout 900 $(PYTEST_ARGS)

setup: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	# torch first, alone: the CPU build; anything else would pull the CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

lint: setup
	$(BIN)/ruff check src tests flows feature_repo bench
	$(BIN)/mypy src

bench: setup
	$(BIN)/python bench/run_all.py

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns.db --port 5000
