"""Prefect flows of the candlecast pipeline: one flow per `dvc.yaml` stage, plus the whole chain.

Thin by design: every task calls a stage function of `candlecast.pipeline`; `dvc repro` runs
`python flows/pipeline.py <stage>`, and the same flows are what Prefect deployments schedule.
Without a configured Prefect server, Prefect runs them against a temporary local one.
"""

from __future__ import annotations

import os
import sys

# offline by default: no telemetry from Prefect's temporary server, MLflow or Feast
for _name, _value in (
    ("DO_NOT_TRACK", "1"),
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("FEAST_USAGE", "False"),
    # patience for Prefect's temporary API server on a busy 2-core machine (default: 20 s)
    ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"),
):
    os.environ.setdefault(_name, _value)

from pathlib import Path  # noqa: E402

from prefect import flow, task  # noqa: E402

from candlecast.config import load_params  # noqa: E402
from candlecast.pipeline.paths import Paths  # noqa: E402
from candlecast.pipeline.runner import STAGES, run_stage  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _stage_task(stage: str):
    @task(name=stage, retries=0, log_prints=True)
    def _run(root: str, params_file: str) -> dict:
        paths = Paths(Path(root))
        return run_stage(stage, load_params(params_file), paths)

    return _run


_TASKS = {stage: _stage_task(stage) for stage in STAGES}


def _flow_for(stage: str):
    @flow(name=f"candlecast-{stage}", log_prints=True)
    def _flow(root: str = str(ROOT), params_file: str = str(ROOT / "params.yaml")) -> dict:
        return _TASKS[stage](root, params_file)

    _flow.__name__ = f"{stage.replace('-', '_')}_flow"
    return _flow


ingest_flow = _flow_for("ingest")
validate_flow = _flow_for("validate")
features_flow = _flow_for("features")
feature_store_flow = _flow_for("feature-store")
train_flow = _flow_for("train")
evaluate_flow = _flow_for("evaluate")
backtest_flow = _flow_for("backtest")
FLOWS = {
    "ingest": ingest_flow,
    "validate": validate_flow,
    "features": features_flow,
    "feature-store": feature_store_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
    "backtest": backtest_flow,
}


@flow(name="candlecast-pipeline", log_prints=True)
def pipeline_flow(root: str = str(ROOT), params_file: str = str(ROOT / "params.yaml")) -> dict:
    """Every stage in order (what `dvc repro` does, without DVC's caching)."""
    return {stage: _TASKS[stage](root, params_file) for stage in STAGES}


if __name__ == "__main__":
    from candlecast.cli import run_stage_command

    raise SystemExit(run_stage_command(FLOWS, sys.argv[1:]))
