"""`backtest` stage: the model's out-of-sample signals through the risk engine, with costs,
beside buy-and-hold and the baselines; metrics and curves for DVC, plots and trades to MLflow,
a self-contained HTML report per series.

By default the model is the stacked ensemble and its predictions are its walk-forward
out-of-fold P(up) (``models/ensemble/oof.parquet``: every row predicted by an ensemble fitted on
earlier folds only). The trial universe -- every zoo model and the ensemble at every band of
``backtest.trial_bands`` -- is backtested on the same bars for the probability of backtest
overfitting and the deflated Sharpe ratio (:mod:`candlecast.backtest.trials`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from candlecast.backtest import (
    BacktestResult,
    Lineage,
    build_report,
    buy_and_hold,
    prepare_market,
    run_event_driven,
    run_vectorized,
    write_report,
)
from candlecast.backtest.signals import probability_signal, sign_signal
from candlecast.backtest.trials import TrialSet, run_trials
from candlecast.config import Params
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import ZooPaths
from candlecast.tracking import configure_mlflow, git_commit

log = logging.getLogger(__name__)


def _series_inputs(
    paths: Paths, series: SeriesId, predictions: pd.DataFrame, features: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The candles of the prediction period and the aligned predictions/features per candle."""
    mine = predictions[predictions[JOIN_KEY] == series.key]
    if mine.empty:
        raise ValueError(f"no predictions for {series.key}")
    candles = CandleStore(paths.validated).read(series)
    start = mine[EVENT_TIMESTAMP].min() - series.step
    candles = candles[candles["timestamp"] >= start].reset_index(drop=True)
    close_time = candles["timestamp"] + series.step
    aligned = pd.DataFrame({EVENT_TIMESTAMP: close_time})
    aligned = aligned.merge(mine[[EVENT_TIMESTAMP, "prob_up"]], on=EVENT_TIMESTAMP, how="left")
    feats = features[features[JOIN_KEY] == series.key]
    aligned = aligned.merge(
        feats[[EVENT_TIMESTAMP, "atr", "logret_1", "ema_dist_20"]], on=EVENT_TIMESTAMP, how="left"
    )
    return candles, aligned


def backtest_series(
    params: Params, candles: pd.DataFrame, aligned: pd.DataFrame, model_name: str
) -> list[BacktestResult]:
    """Model (event-driven, full risk engine) first, then buy-and-hold and the baselines."""
    cfg = params.backtest
    market = prepare_market(candles, candles["timeframe"].iloc[0])
    prob = aligned["prob_up"].to_numpy()
    signal = probability_signal(prob, cfg.band, cfg.run.allow_short)
    side_prob = np.where(signal >= 0, prob, 1.0 - prob)
    results = [
        run_event_driven(
            market, signal, params.risk, params.costs, cfg.run,
            atr=aligned["atr"].to_numpy(), probability=side_prob, name=model_name,
        ),
        buy_and_hold(market, params.costs, cfg.run),
    ]
    for name, column in (("persistence", "logret_1"), ("momentum", "ema_dist_20")):
        baseline = sign_signal(aligned[column].to_numpy(), cfg.run.allow_short)
        results.append(run_vectorized(market, baseline, params.costs, cfg.run, name=name))
    return results


def load_predictions(path: Path, model: str | None = None) -> pd.DataFrame:
    """Out-of-sample P(up) rows (``series_id``, ``event_timestamp``, ``prob_up``, ``model``) of
    a hold-out predictions file (test split only) or a walk-forward OOF file (``series`` /
    ``timestamp`` columns); ``model`` keeps one model's rows."""
    frame = pd.read_parquet(path).rename(columns={"series": JOIN_KEY, "timestamp": EVENT_TIMESTAMP})
    if "split" in frame.columns:
        frame = frame[frame["split"] == "test"]
    if "model" not in frame.columns:
        frame = frame.assign(model=model or path.parent.name)
    if model is not None:
        frame = frame[frame["model"] == model]
        if frame.empty:
            raise ValueError(f"{path} has no predictions of model {model!r}")
    return frame[[JOIN_KEY, EVENT_TIMESTAMP, "model", "prob_up"]].reset_index(drop=True)


def trial_predictions(params: Params, paths: Paths) -> pd.DataFrame:
    """Every zoo model's and the ensemble file's OOF predictions: the trial universe."""
    zoo = ZooPaths(paths.root)
    files = [zoo.model_dir(name) / "oof.parquet" for name in params.models.run]
    files.append(paths.root / params.backtest.predictions)
    frames = [load_predictions(f) for f in dict.fromkeys(files) if f.exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def series_trials(params: Params, candles: pd.DataFrame, aligned: pd.DataFrame,
                  trials: pd.DataFrame, series: SeriesId) -> TrialSet | None:
    """The trial universe on this series' bars (None if it has fewer than two trials)."""
    mine = trials[trials[JOIN_KEY] == series.key]
    probabilities = {}
    for model, rows in mine.groupby("model", sort=True):
        merged = aligned[[EVENT_TIMESTAMP]].merge(
            rows[[EVENT_TIMESTAMP, "prob_up"]], on=EVENT_TIMESTAMP, how="left",
            validate="one_to_one")
        probabilities[str(model)] = merged["prob_up"].to_numpy()
    if len(probabilities) * len(params.backtest.trial_bands) < 2:
        return None
    market = prepare_market(candles, candles["timeframe"].iloc[0])
    return run_trials(market, probabilities, params.backtest.trial_bands, params.costs,
                      params.backtest.run)


def n_trials(params: Params, trials: TrialSet | None) -> int:
    """Configurations tried: ``backtest.n_trials`` if set, else the trial universe plus the
    Optuna trials of the LightGBM tuning (each a configuration we chose among)."""
    if params.backtest.n_trials is not None:
        return params.backtest.n_trials
    universe = trials.n_trials if trials is not None else 1
    tuning = params.models.lightgbm.tuning
    tuned = tuning.n_trials if "lightgbm" in params.models.run and tuning.enabled else 0
    return universe + max(tuned - 1, 0)


def run_backtest(params: Params, paths: Paths) -> dict[str, object]:
    cfg = params.backtest
    source = paths.root / cfg.predictions
    if not source.exists():
        raise FileNotFoundError(f"backtest.predictions {source} is missing; run the stage that "
                                "writes it first (dvc repro)")
    predictions = load_predictions(source, cfg.model)
    trials = trial_predictions(params, paths)
    features = pd.read_parquet(paths.features)
    run_info = _model_run(paths, cfg.run_info)
    data_version = (run_info.get("lineage", {}).get("data_version")
                    or run_info.get("evaluation", {}).get("eval.data_version", "unknown"))
    lineage = Lineage(
        data_version=data_version,
        git_commit=git_commit(paths.root),
        model_run_id=run_info.get("mlflow_run_id", "unknown"),
        params={"params_hash": params.hash(), "backtest": cfg.model_dump(mode="json")},
    )
    out_root = paths.root / "reports" / "backtest"
    summary: dict[str, object] = {}
    primary_dir: Path | None = None
    for series in params.ingest.series:
        candles, aligned = _series_inputs(paths, series, predictions, features)
        results = backtest_series(params, candles, aligned, cfg.model)
        universe = series_trials(params, candles, aligned, trials, series)
        report = build_report(
            results, lineage, n_trials=n_trials(params, universe), title=f"{series.key}",
            trial_sharpes=None if universe is None else universe.sharpes,
            trial_returns=None if universe is None else universe.returns,
        )
        series_dir = out_root / series.key.replace("/", "-").replace(":", "_")
        write_report(report, series_dir)
        primary_dir = primary_dir or series_dir
        overfitting = dict(report.metrics["overfitting"])
        if universe is not None:
            overfitting["trials"] = list(universe.names)
        summary[series.key] = {
            name: {k: values.get(k) for k in _DVC_KEYS}
            for name, values in report.metrics["strategies"].items()
        } | {"overfitting": overfitting}
        log.info("backtest %s: %s", series.key, summary[series.key][cfg.model])
    paths.metrics.mkdir(parents=True, exist_ok=True)
    (paths.metrics / "backtest.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert primary_dir is not None
    for name in ("equity.csv", "drawdown.csv"):
        (paths.plots / f"backtest_{name}").write_bytes((primary_dir / name).read_bytes())
    _log_to_mlflow(params, paths, run_info, out_root)
    return summary


_DVC_KEYS = ("total_return", "annualized_return", "sharpe", "sortino", "calmar", "max_drawdown",
             "trade_count", "win_rate", "profit_factor", "exposure", "costs_paid", "final_equity")


def _model_run(paths: Paths, run_info: str) -> dict:
    path = paths.root / run_info
    return json.loads(path.read_text()) if path.exists() else {}


def _log_to_mlflow(params: Params, paths: Paths, run_info: dict, out_root: Path) -> None:
    run_id = run_info.get("mlflow_run_id")
    if not run_id:
        return
    configure_mlflow(params.mlflow.tracking_uri, params.mlflow.artifact_root,
                     params.mlflow.experiment, paths.root)
    with mlflow.start_run(run_id=run_id):
        for folder in sorted(p for p in out_root.iterdir() if p.is_dir()):
            for name in ("equity_drawdown.png", "trades.csv", "report.html", "metrics.json"):
                if (folder / name).exists():
                    mlflow.log_artifact(str(folder / name), f"backtest/{folder.name}")
