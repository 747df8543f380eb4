"""The walk-forward model zoo end to end on a miniature real-data project (the `quick` profile):
out-of-fold only, MLflow layout, the registered ensemble, reruns, the champion rule, failed
folds, the research notebook, and bad input at the command line.

The scenario is one test on purpose: its steps build on each other (a rerun, a failure) and
running it once keeps the suite inside its time budget under ``pytest -n 2``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
from mini_project import make_mini_project
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

from candlecast.config import load_params
from candlecast.evaluation.metrics import METRIC_NAMES
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.models import registry
from candlecast.models.baselines import MomentumModel
from candlecast.models.ensemble import Ensemble
from candlecast.pipeline.compare_stage import comparison_tables
from candlecast.pipeline.ensemble_stage import _decide, load_zoo_predictions, stacking_inputs
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.runner import run_stage, zoo_plan
from candlecast.pipeline.zoo_common import SERIES, TIME, ZooPaths, load_zoo_data

pytestmark = pytest.mark.slow
PREP = ("ingest", "validate", "features", "feature-store")
BIN = Path(sys.executable).parent
ALL = list(registry.MODEL_NAMES)


def _run(paths, params, plan):
    return {f"{s}@{a}" if a else s: run_stage(s, params, paths, a) for s, a in plan}


def _runs(paths, query):
    mlflow.set_tracking_uri(f"sqlite:///{paths.root / 'mlruns.db'}")
    return mlflow.search_runs(experiment_names=["candlecast"], filter_string=query)


def test_zoo_keys_are_the_feature_store_keys():
    assert (SERIES, TIME) == (JOIN_KEY, EVENT_TIMESTAMP)


def test_the_zoo_end_to_end(tmp_path, repo_root, monkeypatch):
    project = make_mini_project(repo_root, tmp_path / "mini", overrides={"models": {"run": ALL}})
    paths = Paths(project)
    params = load_params(paths.params)
    _run(paths, params, [(stage, None) for stage in PREP])
    first = _run(paths, params, zoo_plan(params))

    _every_prediction_is_out_of_fold(paths, params)
    metrics = _the_comparison_has_every_model_on_the_same_rows(paths, params)
    _mlflow_shows_models_folds_and_trials(paths, params, first)
    _the_registered_champion_serves_feature_windows(paths, params)

    # same params and data -> the same predictions and metrics; the champion does not move
    zoo_dir = paths.root / "models" / "zoo"
    oof = {m: pd.read_parquet(zoo_dir / m / "oof.parquet") for m in params.models.run}
    again = _run(paths, params, [("train-model", m) for m in params.models.run]
                 + [("ensemble", None), ("compare", None)])
    for model, frame in oof.items():
        pd.testing.assert_frame_equal(
            frame, pd.read_parquet(paths.root / f"models/zoo/{model}/oof.parquet")
        )
    rerun = json.loads((paths.root / "metrics/models.json").read_text())
    assert {k: v for k, v in rerun.items() if k != "champion"} == {
        k: v for k, v in metrics.items() if k != "champion"
    }
    _the_champion_moves_only_on_improvement(paths, params, first, again)
    _the_backtest_replays_the_ensemble_out_of_fold(paths, params)

    _the_research_notebook_runs(paths)
    _a_failing_fold_is_reported(paths, params, monkeypatch)


def _every_prediction_is_out_of_fold(paths, params):
    horizon, bar = params.label_horizon, pd.Timedelta(params.ingest.timeframe.replace("m", "min"))
    for model in params.models.run:
        oof = pd.read_parquet(paths.root / f"models/zoo/{model}/oof.parquet")
        folds = pd.read_csv(paths.root / f"models/zoo/{model}/folds.csv")
        for _, fold in folds.iterrows():
            start, end = pd.Timestamp(fold["test_start"]), pd.Timestamp(fold["test_end"])
            assert pd.Timestamp(fold["train_end"]) + horizon * bar < start
            rows = oof[(oof["fold"] == fold["fold"]) & (oof["model"] == fold["model"])]
            assert len(rows) == fold["n_test"] > 0
            assert rows["timestamp"].between(start, end).all()
    ensemble = pd.read_parquet(paths.root / "models/ensemble/oof.parquet")
    assert ensemble["fold"].min() >= params.ensemble.min_train_folds


def _the_comparison_has_every_model_on_the_same_rows(paths, params):
    metrics = json.loads((paths.root / "metrics/models.json").read_text())
    models = metrics["models"]
    expected = {"base_rate", "persistence", "momentum", "lightgbm", "chronos", "transformer",
                "ensemble", "simple_average"}
    assert set(models) == expected
    assert len({models[m]["n"] for m in models}) == 1  # every row of the table: the same bars
    for values in models.values():
        assert 0.6 < values["log_loss"] < 0.8 and 0 <= values["accuracy"] <= 1
    assert metrics["evaluated_folds"] == [1, 2]
    assert set(metrics["by_fold"]["lightgbm"]) == {"fold_0", "fold_1", "fold_2"}
    assert any(key.startswith("regime_") for key in metrics["by_regime"]["ensemble"])
    assert metrics["champion"]["decision"] == "champion"
    for name in ("comparison.csv", "per_fold.csv", "per_regime.csv", "calibration.csv"):
        assert (paths.root / "reports/models" / name).stat().st_size > 0
    for name in ("calibration.png", "metric_by_fold.png", "calibration/lightgbm.csv"):
        assert (paths.root / "plots/models" / name).stat().st_size > 0
    return metrics


def _mlflow_shows_models_folds_and_trials(paths, params, first):
    parent = first["compare"]["mlflow_parent_run_id"]
    assert {r.get("mlflow_parent_run_id") for r in first.values() if isinstance(r, dict)} <= {
        parent, None
    }
    pipeline = _runs(paths, "tags.`candlecast.kind` = 'pipeline'")
    assert pipeline["run_id"].tolist() == [parent]
    assert "comparison" in {a.path for a in MlflowClient().list_artifacts(parent)}
    models = _runs(paths, f"tags.`mlflow.parentRunId` = '{parent}' and "
                          "tags.`candlecast.kind` = 'model'")
    assert set(models["tags.model"]) == {"base_rate", "persistence", "momentum", "lightgbm",
                                         "chronos", "transformer", "ensemble", "simple_average"}
    assert (models["tags.fold"] == "all").all()
    families = dict(zip(models["tags.model"], models["tags.model_family"], strict=True))
    assert families["lightgbm"] == "gbm" and families["chronos"] == "foundation"
    assert families["transformer"] == "neural" and families["momentum"] == "baseline"
    for name in ("log_loss", "brier", "auc", "ic", "pnl_net"):
        assert models[f"metrics.{name}"].notna().all()
    lightgbm = models.loc[models["tags.model"] == "lightgbm", "run_id"].item()
    folds = _runs(paths, f"tags.`mlflow.parentRunId` = '{lightgbm}'")
    assert sorted(folds["tags.fold"]) == ["0", "1", "2"]
    assert set(folds["tags.candlecast.kind"]) == {"fold"}
    assert {f"metrics.{m}" for m in METRIC_NAMES if m != "ic"} <= set(folds.columns)
    trials = _runs(paths, "tags.`candlecast.kind` = 'trial'")
    n_trials = params.models.lightgbm.tuning.n_trials
    assert len(trials) == 3 * n_trials
    assert set(trials["tags.mlflow.parentRunId"]) == set(folds["run_id"])


def _the_registered_champion_serves_feature_windows(paths, params):
    name = params.ensemble.registered_model
    client = MlflowClient()
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == "1" and champion.tags["decision.basis"] == "first"
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs[:2] == [JOIN_KEY, EVENT_TIMESTAMP] and "rsi" in inputs
    window_rows = model.metadata.metadata["candlecast"]["window_rows"]
    assert window_rows == params.ensemble.window_rows
    training = pd.read_parquet(paths.training_set)
    series = training[training[JOIN_KEY] == training[JOIN_KEY].iloc[0]]
    window = series.tail(window_rows)[inputs].reset_index(drop=True)
    window[EVENT_TIMESTAMP] = window[EVENT_TIMESTAMP].dt.tz_convert("UTC").dt.tz_localize(None)
    served = model.predict(window)
    assert len(served) == 1 and 0 < served["prob_up"].iloc[0] < 1
    bundle = Ensemble.load(paths.root / "models/ensemble/serving")
    local_last = bundle.predict(window, rows="last")
    local_all = bundle.predict(window, rows="all")
    np.testing.assert_allclose(served["prob_up"], local_last["prob_up"])
    # the fast last-row path equals the full computation's last row (float32 batches differ
    # in the last bits)
    np.testing.assert_allclose(local_all.iloc[[-1]][["prob_up", "prob_chronos"]].to_numpy(),
                               local_last[["prob_up", "prob_chronos"]].to_numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown to this ensemble"):
        bundle.predict(window.assign(**{JOIN_KEY: "kraken:DOGE/USD:30m"}))


def _the_champion_moves_only_on_improvement(paths, params, first, again):
    name = params.ensemble.registered_model
    client = MlflowClient()
    assert again["ensemble"]["registered_version"] == "2"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) == "2"
    assert challenger.tags["decision.basis"] == "same-window"
    assert "does not beat champion v1" in challenger.tags["decision.reason"]
    # a champion whose out-of-sample score was worse on the same window is beaten
    client.set_model_version_tag(name, "1", "eval.log_loss", "0.99")
    zoo = load_zoo_data(params, paths)
    evaluation = first["ensemble"]["evaluation"]
    window = pd.read_parquet(paths.root / "models/ensemble/oof.parquet").query(
        "model == 'ensemble' and fold == 2"
    )
    decision = _decide(params, zoo, evaluation, window)
    assert decision.alias == "champion" and "beats champion v1" in decision.reason


def _the_backtest_replays_the_ensemble_out_of_fold(paths, params):
    """The default backtest: the ensemble's walk-forward OOF signals through the risk engine,
    with the PBO/DSR over every zoo model and the ensemble at every band."""
    assert params.backtest.model == "ensemble"
    summary = run_stage("backtest", params, paths)
    oof = pd.read_parquet(paths.root / "models/ensemble/oof.parquet")
    models = sorted({*oof["model"], "base_rate", "persistence", "momentum", *ALL} - {"baselines"})
    bands = params.backtest.trial_bands
    tuned = params.models.lightgbm.tuning.n_trials - 1
    for series in params.ingest.series:
        result = summary[series.key]
        assert {"ensemble", "buy_and_hold", "persistence", "momentum"} <= set(result)
        overfitting = result["overfitting"]
        assert sorted(overfitting["trials"]) == sorted(
            f"{m}@band={b:g}" for m in models for b in bands)
        assert overfitting["n_trials"] == len(models) * len(bands) + tuned
        assert 0.0 <= overfitting["pbo"] <= 1.0
        assert overfitting["deflated_sharpe"]["n_trials"] == overfitting["n_trials"]
        if result["ensemble"]["trade_count"]:
            assert result["ensemble"]["costs_paid"]["total"] > 0
    equity = pd.read_csv(paths.plots / "backtest_equity.csv")
    first_prediction = oof["timestamp"].min()
    assert pd.to_datetime(equity["timestamp"], utc=True).min() >= first_prediction - pd.Timedelta(
        params.ingest.timeframe.replace("m", "min"))


def _the_research_notebook_runs(paths):
    notebook = nbformat.read(
        Path(__file__).resolve().parents[2] / "notebooks" / "research.ipynb", as_version=4
    )
    os.environ["CANDLECAST_ROOT"] = str(paths.root)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(paths.root)}}).execute()
    finally:
        os.environ.pop("CANDLECAST_ROOT")
    text = json.dumps([c.get("outputs", []) for c in notebook.cells if c.cell_type == "code"])
    assert "lightgbm" in text and "simple_average" in text and "champion" in text
    assert "image/png" in text


class _FailsInFoldOne(MomentumModel):
    family = "neural"

    def __init__(self, fold):
        super().__init__(name="transformer")
        self.fold = fold

    def fit(self, X, y, *, X_val=None, y_val=None):
        if self.fold == 1:
            raise RuntimeError("out of memory (simulated)")
        return super().fit(X, y)


def _a_failing_fold_is_reported(paths, params, monkeypatch):
    spec = registry.ModelSpec("transformer", "neural", lambda s: ("transformer",),
                              lambda s, ctx: [_FailsInFoldOne(ctx.fold)], lambda s, h: 0)
    monkeypatch.setitem(registry.MODELS, "transformer", spec)
    result = run_stage("train-model", params, paths, "transformer")
    assert result["failed_folds"] == [
        {"model": "transformer", "fold": 1, "error": "RuntimeError: out of memory (simulated)"}
    ]
    folds = pd.read_csv(paths.root / "models/zoo/transformer/fold_metrics.csv")
    assert folds.set_index("fold").loc[1, "status"] == "failed"
    run_id = result["mlflow_run_ids"]["transformer"]
    assert mlflow.get_run(run_id).data.tags["failed_folds"] == "1"
    failed = _runs(paths, f"tags.`mlflow.parentRunId` = '{run_id}' and tags.fold = '1'")
    assert failed["status"].item() == "FAILED"
    assert "simulated" in failed["tags.error"].item()
    zoo = load_zoo_data(params, paths)
    inputs = stacking_inputs(params, zoo, ZooPaths(paths.root))
    assert inputs["excluded"]["transformer"] == "failed in fold(s) 1"
    assert "transformer" not in inputs["included"]
    base, failures = load_zoo_predictions(params, ZooPaths(paths.root))
    tables = comparison_tables(base.assign(regime=0), failures, [1, 2], params)
    pooled = tables["pooled"].set_index("model")
    assert pooled.loc["transformer", "n_failed_folds"] == 1
    per_fold = tables["per_fold"].set_index(["model", "fold"])
    assert per_fold.loc[("transformer", 1), "status"] == "failed"


def _cli(project, *args):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "python"), "flows/pipeline.py", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def test_bad_model_input_fails_before_any_stage_runs(tmp_path, repo_root):
    project = make_mini_project(repo_root, tmp_path / "proj",
                                overrides={"models": {"run": ["baselines", "xgboost"]}})
    done = _cli(project, "ingest")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: invalid params") and "unknown model 'xgboost'" in lines[0]
    assert not (project / "data" / "raw").exists()

    project = make_mini_project(repo_root, tmp_path / "proj2",
                                overrides={"models": {"run": ["baselines"]}})
    done = _cli(project, "train-model", "chronos")
    assert done.returncode == 1
    assert "model 'chronos' is not in models.run ['baselines']" in done.stderr
    assert not (project / "models").exists()
