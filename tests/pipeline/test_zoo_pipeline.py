"""The walk-forward model zoo end to end on a miniature real-data project (the `quick` profile):
every horizon out-of-fold only, MLflow layout, the policy chosen walk-forward, the backtest, the
registered ensemble with its policy, reruns, the champion rule on net Sharpe, failed folds, the
research notebook, and bad input at the command line.

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
from candlecast.pipeline.ensemble_stage import load_zoo_predictions, stacking_inputs
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.register_stage import _decide
from candlecast.pipeline.runner import AFTER_ZOO, run_stage, zoo_plan
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


DECIDE = [(stage, None) for stage in AFTER_ZOO if stage != "package"]


def test_the_zoo_end_to_end(tmp_path, repo_root, monkeypatch):
    project = make_mini_project(repo_root, tmp_path / "mini", overrides={"models": {"run": ALL}})
    paths = Paths(project)
    params = load_params(paths.params)
    _run(paths, params, [(stage, None) for stage in PREP])
    first = _run(paths, params, zoo_plan(params) + DECIDE)

    _every_prediction_is_out_of_fold(paths, params)
    metrics = _the_comparison_has_every_model_on_the_same_rows(paths, params)
    _mlflow_shows_models_folds_and_trials(paths, params, first)
    _the_policy_is_chosen_on_earlier_folds_only(paths, params, first)
    _the_registered_champion_serves_feature_windows(paths, params)

    # same params and data -> the same predictions and metrics; the champion does not move
    zoo_dir = paths.root / "models" / "zoo"
    oof = {m: pd.read_parquet(zoo_dir / m / "oof.parquet") for m in params.models.run}
    again = _run(paths, params, [("train-model", m) for m in params.models.run]
                 + [("ensemble", None), ("compare", None), *DECIDE])
    for model, frame in oof.items():
        pd.testing.assert_frame_equal(
            frame, pd.read_parquet(paths.root / f"models/zoo/{model}/oof.parquet")
        )
    assert _metrics(paths) == metrics
    _the_champion_moves_only_on_improvement(paths, params, first, again)
    _the_backtest_trades_the_policy_beside_the_baselines(paths, params, first)

    _the_research_notebook_runs(paths)
    _a_failing_fold_is_reported(paths, params, monkeypatch)


def _metrics(paths):
    return {f.stem: json.loads(f.read_text())
            for f in sorted((paths.root / "metrics" / "models").glob("*.json"))}


def _every_prediction_is_out_of_fold(paths, params):
    purge, bar = params.zoo_horizon, pd.Timedelta(params.ingest.timeframe.replace("m", "min"))
    for model in params.models.run:
        oof = pd.read_parquet(paths.root / f"models/zoo/{model}/oof.parquet")
        folds = pd.read_csv(paths.root / f"models/zoo/{model}/folds.csv")
        assert set(folds["horizon"]) == set(params.models.horizons_of(model))
        for _, fold in folds.iterrows():
            start, end = pd.Timestamp(fold["test_start"]), pd.Timestamp(fold["test_end"])
            assert pd.Timestamp(fold["train_end"]) + purge * bar < start
            rows = oof[(oof["fold"] == fold["fold"]) & (oof["model"] == fold["model"])
                       & (oof["horizon"] == fold["horizon"])]
            assert len(rows) == fold["n_test"] > 0
            assert rows["timestamp"].between(start, end).all()
    ensemble = pd.read_parquet(paths.root / "models/ensemble/oof.parquet")
    assert ensemble["fold"].min() >= params.ensemble.min_train_folds
    assert set(ensemble["horizon"]) == set(params.models.horizons)
    assert ensemble["exp_ret"].notna().all() and (ensemble["volatility"] > 0).all()


def _the_comparison_has_every_model_on_the_same_rows(paths, params):
    metrics = _metrics(paths)
    expected = {"base_rate", "persistence", "momentum", "lightgbm", "chronos", "transformer",
                "ensemble", "simple_average"}
    at = {h: {name.split("@h")[0]: v for name, v in metrics.items() if name.endswith(f"@h{h}")}
          for h in params.models.horizons}
    assert set(at[1]) == expected
    assert set(at[4]) == expected - {"chronos"}  # models.model_horizons: chronos at h1 only
    for models in at.values():
        assert len({m["n"] for m in models.values()}) == 1  # every row of a table: same bars
        for values in models.values():
            assert 0.6 < values["log_loss"] < 0.8 and 0 <= values["accuracy"] <= 1
            assert values["folds"] == "1,2"
    comparison = pd.read_csv(paths.root / "reports/models/comparison.csv")
    assert set(comparison["horizon"]) == set(params.models.horizons)
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
    assert set(zip(models["tags.model"], models["tags.horizon"], strict=True)) == {
        (m, str(h)) for h in params.models.horizons
        for m in ("base_rate", "persistence", "momentum", "lightgbm", "transformer",
                  "ensemble", "simple_average")} | {("chronos", "1")}
    assert (models["tags.fold"] == "all").all()
    families = dict(zip(models["tags.model"], models["tags.model_family"], strict=True))
    assert families["lightgbm"] == "gbm" and families["chronos"] == "foundation"
    assert families["transformer"] == "neural" and families["momentum"] == "baseline"
    for name in ("log_loss", "brier", "auc", "ic", "pnl_net"):
        assert models[f"metrics.{name}"].notna().all()
    lightgbm = models.loc[(models["tags.model"] == "lightgbm") & (models["tags.horizon"] == "4"),
                          "run_id"].item()
    folds = _runs(paths, f"tags.`mlflow.parentRunId` = '{lightgbm}'")
    assert sorted(folds["tags.fold"]) == ["0", "1", "2"]
    assert set(folds["tags.candlecast.kind"]) == {"fold"}
    assert {f"metrics.{m}" for m in METRIC_NAMES if m != "ic"} <= set(folds.columns)
    trials = _runs(paths, "tags.`candlecast.kind` = 'trial'")
    n_trials = params.models.lightgbm.tuning.n_trials
    assert len(trials) == 3 * n_trials * len(params.models.horizons)
    policy = _runs(paths, "tags.`candlecast.kind` = 'policy'")
    assert len(policy) == 1 and policy["tags.mlflow.parentRunId"].item() == parent


def _the_policy_is_chosen_on_earlier_folds_only(paths, params, first):
    """Fold 2 is traded with the policy searched on fold 1's bars; every candidate is kept."""
    folds = json.loads((paths.root / "models/policy/folds.json").read_text())
    assert list(folds) == ["2"]
    assert folds["2"]["tuned_on_folds"] == [1]
    oof = pd.read_parquet(paths.root / "models/ensemble/oof.parquet")
    fold2_start = oof.loc[oof["fold"] == 2, "timestamp"].min()
    assert pd.Timestamp(folds["2"]["tuning_end"]) < fold2_start
    trials = pd.read_csv(paths.root / "models/policy/trials.csv")
    n = params.policy.tuning.n_trials
    assert sorted(trials["search"].unique()) == ["deploy", "fold2"]
    assert (trials.groupby("search").size() == n).all()
    assert first["policy"]["configurations_tried"] == 2 * n


def _the_registered_champion_serves_feature_windows(paths, params):
    name = params.ensemble.registered_model
    client = MlflowClient()
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == "1" and champion.tags["decision.basis"] == "first"
    assert champion.tags["decision.criterion"] == "sharpe"
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs[:2] == [JOIN_KEY, EVENT_TIMESTAMP] and "rsi" in inputs
    meta = model.metadata.metadata["candlecast"]
    assert meta["window_rows"] == params.ensemble.window_rows
    assert meta["horizons"] == list(params.models.horizons)
    deploy = json.loads((paths.root / "models/policy/deploy.json").read_text())
    assert meta["policy"] == deploy["policy"]  # the policy is versioned with the model
    training = pd.read_parquet(paths.training_set)
    series = training[training[JOIN_KEY] == training[JOIN_KEY].iloc[0]]
    window = series.tail(meta["window_rows"])[inputs].reset_index(drop=True)
    window[EVENT_TIMESTAMP] = window[EVENT_TIMESTAMP].dt.tz_convert("UTC").dt.tz_localize(None)
    served = model.predict(window)
    assert len(served) == 1 and 0 < served["prob_up"].iloc[0] < 1
    for h in params.models.horizons:
        assert 0 < served[f"prob_up_{h}"].iloc[0] < 1 and np.isfinite(served[f"exp_ret_{h}"]).all()
    assert served["prob_up_1"].iloc[0] == served["prob_up"].iloc[0]  # h1 is the primary
    bundle = Ensemble.load(paths.root / "models/registered/serving")
    assert bundle.policy == deploy["policy"]
    local_last = bundle.predict(window, rows="last")
    local_all = bundle.predict(window, rows="all")
    np.testing.assert_allclose(served["prob_up_4"], local_last["prob_up_4"])
    # the fast last-row path equals the full computation's last row (float32 batches differ
    # in the last bits), for every horizon and the forecast volatility
    cols = ["prob_up", "prob_chronos", "prob_up_4", "exp_ret_4", "volatility"]
    np.testing.assert_allclose(local_all.iloc[[-1]][cols].to_numpy(),
                               local_last[cols].to_numpy(), rtol=1e-5)
    ns = window[EVENT_TIMESTAMP].astype("datetime64[ns]").astype("int64").to_numpy()
    values = window[bundle.feature_columns].to_numpy(dtype=float)
    only = bundle.predict_last(window[JOIN_KEY].iloc[0], ns, values, horizons=[4])
    assert only["exp_ret_4"] == pytest.approx(local_last["exp_ret_4"].iloc[0], rel=1e-5)
    assert "exp_ret_1" not in only  # only the asked horizon's stack ran
    with pytest.raises(ValueError, match="unknown to this ensemble"):
        bundle.predict(window.assign(**{JOIN_KEY: "kraken:DOGE/USD:30m"}))


def _the_champion_moves_only_on_improvement(paths, params, first, again):
    name = params.ensemble.registered_model
    client = MlflowClient()
    assert again["register"]["registered_version"] == "2"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1", \
        (again["register"]["decision"], first["register"]["decision"])
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) == "2"
    assert challenger.tags["decision.basis"] == "same-window"
    assert "does not beat champion v1" in challenger.tags["decision.reason"]
    # a champion whose net Sharpe was lower on the same window is beaten -- whatever the
    # log losses (as long as the guards pass)
    client.set_model_version_tag(name, "1", "eval.net_sharpe", "-99")
    zoo = load_zoo_data(params, paths)
    evaluation = first["register"]["evaluation"]
    score = registered_score(first["register"])
    decision = _decide(params, paths, zoo, evaluation, score)
    assert decision.alias == "champion" and "beats champion v1" in decision.reason, \
        decision.reason


def registered_score(summary):
    from candlecast.models.champion import ModelScore

    return ModelScore.from_tags(summary["evaluation"], "eval")


def _the_backtest_trades_the_policy_beside_the_baselines(paths, params, first):
    """The walk-forward policy on the ensemble's forecasts through the risk engine beside
    buy-and-hold and every rule baseline; DSR over every configuration tried, PBO over the
    model x policy universe; metrics a table of strategies."""
    summary = json.loads((paths.root / "reports/backtest/summary.json").read_text())
    strategies = {"policy", "buy_and_hold", "vol_target_hold", "sma_crossover", "donchian",
                  "tsmom"}
    assert set(summary["book"]) == strategies
    for series in params.ingest.series:
        assert strategies <= set(summary["series"][series.key])
    over = summary["overfitting"]
    trials = pd.read_csv(paths.root / "models/policy/trials.csv")
    assert over["search_candidates"] == len(trials)
    assert over["universe"] == 2 * trials["label"].nunique()  # ensemble + simple average
    tuned = params.models.lightgbm.tuning.n_trials - 1
    assert over["n_trials"] == (len(trials) + over["universe"] + 4 + tuned
                                + params.backtest.prior_trials)
    assert 0.0 <= over["pbo"] <= 1.0
    if summary["book"]["policy"]["trade_count"]:
        assert summary["book"]["policy"]["costs_paid"]["total"] > 0
    files = {f.stem for f in (paths.root / "metrics/backtest").glob("*.json")}
    assert files == strategies | {"overfitting", "policy_fold2"}
    headline = json.loads((paths.root / "metrics/backtest/policy.json").read_text())
    assert set(headline) == {"total_return", "sharpe", "calmar", "max_drawdown", "trade_count",
                             "exposure", "annual_turnover", "costs_paid"}
    equity = pd.read_csv(paths.plots / "backtest" / "equity.csv")
    assert strategies <= set(equity.columns)
    assert equity["policy"].iloc[0] == pytest.approx(
        params.backtest.run.initial_equity * len(params.ingest.symbols), rel=0.05)
    from candlecast.pipeline.report import render

    text = render(summary, markdown=True)
    assert "policy (walk-forward)" in text and "Donchian breakout" in text and "PBO" in text


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
    assert "lightgbm" in text and "simple_average" in text and "policy" in text
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
    error = "RuntimeError: out of memory (simulated)"
    assert result["failed_folds"] == [{"model": "transformer", "fold": 1, "error": error}
                                      for _ in params.models.horizons_of("transformer")]
    folds = pd.read_csv(paths.root / "models/zoo/transformer/fold_metrics.csv")
    assert (folds.set_index("fold").loc[1, "status"] == "failed").all()
    run_id = result["mlflow_run_ids"]["transformer@h1"]
    assert mlflow.get_run(run_id).data.tags["failed_folds"] == "1"
    failed = _runs(paths, f"tags.`mlflow.parentRunId` = '{run_id}' and tags.fold = '1'")
    assert failed["status"].item() == "FAILED"
    assert "simulated" in failed["tags.error"].item()
    base, failures = load_zoo_predictions(params, ZooPaths(paths.root))
    regime = pd.read_parquet(paths.root / "models/zoo/regime/regime.parquet")
    inputs = stacking_inputs(params, 4, base, failures, regime)
    assert inputs["excluded"]["transformer"] == "failed in fold(s) 1"
    assert "transformer" not in inputs["included"]
    one = base[base["horizon"] == 1].drop(columns=["horizon"])
    tables = comparison_tables(one.assign(regime=0),
                               failures[failures["horizon"] == 1].drop(columns=["horizon"]),
                               [1, 2], params)
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
