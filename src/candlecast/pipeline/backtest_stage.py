"""`backtest` stage: the model's out-of-sample signals through the risk engine, with costs,
beside buy-and-hold and the baselines; metrics and curves for DVC, plots and trades to MLflow,
a self-contained HTML report per series."""

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
from candlecast.config import Params
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.feature_store.definitions import EVENT_TIMESTAMP, JOIN_KEY
from candlecast.pipeline.paths import Paths
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


def run_backtest(params: Params, paths: Paths) -> dict[str, object]:
    cfg = params.backtest
    source = paths.root / cfg.predictions
    predictions = pd.read_parquet(source)
    if "split" in predictions.columns:
        predictions = predictions[predictions["split"] == "test"]
    if "model" in predictions.columns:
        predictions = predictions[predictions["model"] == cfg.model]
    features = pd.read_parquet(paths.features)
    run_info = _model_run(paths, cfg.run_info)
    lineage = Lineage(
        data_version=run_info.get("lineage", {}).get("data_version", "unknown"),
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
        report = build_report(results, lineage, n_trials=cfg.n_trials, title=f"{series.key}")
        series_dir = out_root / series.key.replace("/", "-").replace(":", "_")
        write_report(report, series_dir)
        primary_dir = primary_dir or series_dir
        summary[series.key] = {
            name: {k: values.get(k) for k in _DVC_KEYS}
            for name, values in report.metrics["strategies"].items()
        } | {"overfitting": report.metrics["overfitting"]}
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
