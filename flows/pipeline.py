"""Prefect flows of the candlecast pipeline: one flow per `dvc.yaml` stage, plus the whole chain.

Thin by design: every task calls a stage function of `candlecast.pipeline`; `dvc repro` runs
`python flows/pipeline.py <stage> [model]`, and the same flows are what Prefect deployments
schedule. Without a configured Prefect server, Prefect runs them against a temporary local one.
"""

from __future__ import annotations

import sys

from candlecast.runtime import set_offline_defaults, set_reproducible_numerics

set_offline_defaults()  # before Prefect/MLflow/Feast are imported: no telemetry, patience
set_reproducible_numerics()  # before torch/numpy load: the same bits on every AVX2 CPU

from pathlib import Path  # noqa: E402

from prefect import flow, task  # noqa: E402

from candlecast.config import load_params  # noqa: E402
from candlecast.pipeline.paths import Paths  # noqa: E402
from candlecast.pipeline.runner import (  # noqa: E402
    ALL_STAGES,
    decision_plan,
    pipeline_plan,
    run_stage,
    zoo_plan,
)

ROOT = Path(__file__).resolve().parent.parent


def _stage_task(stage: str):
    @task(name=stage, retries=0, log_prints=True)
    def _run(root: str, params_file: str, arg: str | None = None) -> dict:
        paths = Paths(Path(root))
        return run_stage(stage, load_params(params_file), paths, arg)

    return _run


_TASKS = {stage: _stage_task(stage) for stage in ALL_STAGES}


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
regime_flow = _flow_for("regime")
ensemble_flow = _flow_for("ensemble")
compare_flow = _flow_for("compare")


@flow(name="candlecast-train-model", log_prints=True, flow_run_name="train-model-{model}")
def train_model_flow(
    model: str, root: str = str(ROOT), params_file: str = str(ROOT / "params.yaml")
) -> dict:
    """One zoo model, walk-forward (DVC stage ``train-model@<model>``)."""
    return _TASKS["train-model"].with_options(name=f"train-model-{model}")(
        root, params_file, model
    )


policy_flow = _flow_for("policy")
backtest_flow = _flow_for("backtest")
register_flow = _flow_for("register")
package_flow = _flow_for("package")
FLOWS = {
    "ingest": ingest_flow,
    "validate": validate_flow,
    "features": features_flow,
    "feature-store": feature_store_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
    "regime": regime_flow,
    "train-model": train_model_flow,
    "ensemble": ensemble_flow,
    "compare": compare_flow,
    "policy": policy_flow,
    "backtest": backtest_flow,
    "register": register_flow,
    "package": package_flow,
}


def _run_plan(plan: list, root: str, params_file: str) -> dict:
    """Run ``(stage, arg)`` pairs in order, each as its stage's task; results by stage name."""
    return {f"{stage}@{arg}" if arg else stage: _TASKS[stage](root, params_file, arg)
            for stage, arg in plan}


@flow(name="candlecast-zoo", log_prints=True)
def zoo_flow(root: str = str(ROOT), params_file: str = str(ROOT / "params.yaml")) -> dict:
    """The walk-forward model zoo up to a registered model: regime, every model of models.run,
    ensemble, compare, policy, backtest, register."""
    params = load_params(params_file)
    return _run_plan(zoo_plan(params) + decision_plan(params), root, params_file)


@flow(name="candlecast-pipeline", log_prints=True)
def pipeline_flow(root: str = str(ROOT), params_file: str = str(ROOT / "params.yaml")) -> dict:
    """Every stage in order (what `dvc repro` does, without DVC's caching)."""
    return _run_plan(pipeline_plan(load_params(params_file)), root, params_file)


if __name__ == "__main__":
    from candlecast.cli import run_stage_command

    raise SystemExit(run_stage_command(FLOWS, sys.argv[1:]))
