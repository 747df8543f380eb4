"""The one scoring path of a model with its policy, shared by the ``backtest`` and ``register``
stages and the ops challenger comparison.

* :func:`score_registered`: a registered ensemble's forecasts (every horizon: P(up), expected
  return, volatility) on chosen rows, fed the feature history it needs before them, with the
  policy and cost model bundled with it;
* :func:`trade_forecasts`: forecasts -> the walk-forward (or bundled) policy -> the target
  backtester through the risk engine with the full cost model, per series; the book's per-bar
  net returns and the per-series results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest.book import book_curve
from candlecast.backtest.result import BacktestResult
from candlecast.backtest.targets import run_targets
from candlecast.common.time import naive_utc
from candlecast.config import Params
from candlecast.data.store import CandleStore
from candlecast.pipeline.decision_inputs import SeriesForecasts, load_series_forecasts
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import SERIES, TIME
from candlecast.policy import FoldedDecider, Policy, PolicyConfig


@dataclass(frozen=True)
class Scored:
    """A registered model's forecasts on the asked rows (long: ``series, timestamp, horizon,
    fold, prob_up, exp_ret, volatility``; ``fold`` 0) and its bundled policy and costs."""

    forecasts: pd.DataFrame
    policy: PolicyConfig | None
    costs: dict[str, Any] | None
    horizons: list[int]


def score_registered(model_uri: str, history: pd.DataFrame, keys: pd.DataFrame,
                     bar: pd.Timedelta) -> Scored:
    """Forecasts of a registered ensemble for the ``keys`` rows (``series_id``,
    ``event_timestamp``); NaN where it gives none."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    needed = model.metadata.get_input_schema().input_names()
    missing = [c for c in needed if c not in history.columns]
    if missing:
        raise ValueError(f"{model_uri} needs columns {missing[:5]} the training set lacks")
    meta = (model.metadata.metadata or {}).get("candlecast", {})
    window = int(meta.get("window_rows", 1))
    start = keys[TIME].min() - window * bar
    frame = history[(history[TIME] >= start) & (history[TIME] <= keys[TIME].max())
                    & history[SERIES].isin(keys[SERIES].unique())]
    frame = naive_utc(frame[needed].reset_index(drop=True), TIME)
    scored = model.predict(frame, params={"rows": "all"})
    scored = scored.assign(**{TIME: pd.to_datetime(scored[TIME], utc=True)})
    keyed = scored.set_index([SERIES, TIME])
    index = pd.MultiIndex.from_frame(keys[[SERIES, TIME]])
    horizons = [int(h) for h in meta.get("horizons", [])] or sorted(
        int(c.removeprefix("prob_up_")) for c in scored.columns if c.startswith("prob_up_"))
    parts = []
    for h in horizons:
        part = keyed.reindex(index)
        parts.append(pd.DataFrame({
            "series": keys[SERIES].to_numpy(), "timestamp": keys[TIME].to_numpy(),
            "horizon": h, "fold": 0,
            "prob_up": part[f"prob_up_{h}"].to_numpy(dtype=float),
            "exp_ret": part[f"exp_ret_{h}"].to_numpy(dtype=float),
            "volatility": part["volatility"].to_numpy(dtype=float)}))
    policy = meta.get("policy")
    return Scored(pd.concat(parts, ignore_index=True),
                  None if policy is None else PolicyConfig.model_validate(policy),
                  meta.get("costs"), horizons)


def score_probabilities(model_uri: str, history: pd.DataFrame, keys: pd.DataFrame,
                        bar: pd.Timedelta, horizon: int) -> np.ndarray:
    """P(up) at ``horizon`` of a registered ensemble on the ``keys`` rows (NaN where none)."""
    scored = score_registered(model_uri, history, keys, bar)
    rows = scored.forecasts[scored.forecasts["horizon"] == horizon]
    if rows.empty:
        raise ValueError(f"{model_uri} has no horizon {horizon}; it has {scored.horizons}")
    return rows["prob_up"].to_numpy(dtype=float)


def load_features(paths: Paths) -> pd.DataFrame:
    features = pd.read_parquet(paths.features, columns=[
        "series_id", "event_timestamp", "atr", "logret_1", "ema_dist_20", "rv_48"])
    features["event_timestamp"] = pd.to_datetime(features["event_timestamp"], utc=True)
    return features


def trade_forecasts(
    params: Params, paths: Paths, forecasts: pd.DataFrame,
    policies: Mapping[int, PolicyConfig | None], name: str = "policy",
    inputs: list[SeriesForecasts] | None = None,
) -> tuple[pd.Series, dict[str, BacktestResult]]:
    """Trade ``forecasts`` (long rows with ``fold``) with ``policies[fold]`` (None: flat) per
    series, from the first to the last forecast of those folds, through the risk engine with
    the full cost model: the book's per-bar net simple returns (indexed by close time) and the
    result per series."""
    if inputs is None:
        inputs = load_series_forecasts(CandleStore(paths.validated), params.ingest.series,
                                       forecasts, load_features(paths))
    folds = sorted(policies)
    results = {}
    for series in inputs:
        rows = series.rows(folds)
        market = series.market(rows)
        fold = pd.Series(series.fold[rows]).replace(-1, np.nan).ffill().bfill()
        segment = np.searchsorted(folds, fold.to_numpy(dtype=int))
        built = [None if policies[f] is None else Policy(policies[f], params.costs,
                                                         market.bars_per_year) for f in folds]
        arrays = {h: tuple(a[rows] for a in v) for h, v in series.forecasts.items()}
        results[series.key] = run_targets(
            market, FoldedDecider(built, segment, arrays), params.risk, params.costs,
            params.backtest.run, atr=series.features["atr"].to_numpy(dtype=float)[rows],
            name=name)
    curve = book_curve(list(results.values()))
    start = sum(r.initial_equity for r in results.values())
    returns = np.diff(np.concatenate([[start], curve.to_numpy()])) / np.concatenate(
        [[start], curve.to_numpy()[:-1]])
    return pd.Series(returns, index=curve.index, name=name), results
