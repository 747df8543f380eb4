"""Edges the ops checks share: the project's MLflow store, registered versions, scoring a
registered ensemble on chosen rows, and per-bar net returns from the backtester.

Signals go through the same path as the ``backtest`` stage: ``probability_signal`` -> the
event-driven backtester with the risk engine and the cost model (``backtest_series``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from candlecast.backtest.metrics import simple_returns
from candlecast.backtest.summary import equity_with_start
from candlecast.config import Params
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import SERIES, TIME, lineage
from candlecast.tracking import Lineage, configure_mlflow, file_digest


def setup_mlflow(params: Params, paths: Paths) -> Any:
    from mlflow.tracking import MlflowClient

    s = params.mlflow
    configure_mlflow(s.tracking_uri, s.artifact_root, s.experiment, paths.root)
    return MlflowClient()


def project_lineage(params: Params, paths: Paths) -> Lineage:
    """Lineage of what the ops loop reads now: the training set's digest, params, commit."""
    data = file_digest(paths.training_set) if paths.training_set.exists() else "unknown"
    return lineage(params, paths, data)


def load_training_set(params: Params, paths: Paths) -> pd.DataFrame:
    if not paths.training_set.exists():
        raise FileNotFoundError(
            f"{paths.training_set} is missing; run the feature-store stage (or refresh) first"
        )
    frame = pd.read_parquet(paths.training_set)
    frame[TIME] = pd.to_datetime(frame[TIME], utc=True)
    return frame.sort_values([TIME, SERIES], kind="stable").reset_index(drop=True)


def trained_until(version: Any) -> pd.Timestamp:
    """The last decision time a registered ensemble version was trained on (``oof_end``)."""
    end = version.tags.get("oof_end")
    if not end:
        raise ValueError(
            f"model version {version.name}/{version.version} has no oof_end tag: cannot tell "
            "which rows it was trained on"
        )
    return pd.Timestamp(end).tz_localize("UTC") if pd.Timestamp(end).tzinfo is None \
        else pd.Timestamp(end)


def score_rows(model_uri: str, history: pd.DataFrame, keys: pd.DataFrame,
               bar: pd.Timedelta) -> np.ndarray:
    """P(up) of a registered ensemble for the ``keys`` rows (``series_id``, ``event_timestamp``),
    fed the feature history it needs before them; NaN where it gives none."""
    import mlflow

    from candlecast.common.time import naive_utc

    model = mlflow.pyfunc.load_model(model_uri)
    needed = model.metadata.get_input_schema().input_names()
    missing = [c for c in needed if c not in history.columns]
    if missing:
        raise ValueError(f"{model_uri} needs columns {missing[:5]} the training set lacks")
    window = int((model.metadata.metadata or {}).get("candlecast", {}).get("window_rows", 1))
    start = keys[TIME].min() - window * bar
    frame = history[(history[TIME] >= start) & (history[TIME] <= keys[TIME].max())
                    & history[SERIES].isin(keys[SERIES].unique())]
    frame = naive_utc(frame[needed].reset_index(drop=True), TIME)
    scored = model.predict(frame, params={"rows": "all"})
    scored = scored.assign(**{TIME: pd.to_datetime(scored[TIME], utc=True)})
    keyed = scored.set_index([SERIES, TIME])["prob_up"]
    index = pd.MultiIndex.from_frame(keys[[SERIES, TIME]])
    return keyed.reindex(index).to_numpy(dtype=float)


def aligned_inputs(candles: pd.DataFrame, predictions: pd.DataFrame, features: pd.DataFrame,
                   step: pd.Timedelta) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candles of the prediction period and, per candle, the P(up) and features known at its
    close (the ``backtest`` stage's alignment: event time = candle close)."""
    start = predictions[TIME].min() - step
    end = predictions[TIME].max() - step
    candles = candles[(candles["timestamp"] >= start) & (candles["timestamp"] <= end)]
    candles = candles.reset_index(drop=True)
    aligned = pd.DataFrame({TIME: candles["timestamp"] + step})
    aligned = aligned.merge(predictions[[TIME, "prob_up"]], on=TIME, how="left")
    cols = [c for c in ("atr", "logret_1", "ema_dist_20") if c in features.columns]
    aligned = aligned.merge(features[[TIME, *cols]], on=TIME, how="left")
    return candles, aligned


def net_returns(params: Params, paths: Paths, predictions: pd.DataFrame,
                name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-bar net returns of the event-driven backtest (risk engine, costs) of P(up)
    ``predictions`` (``series_id, event_timestamp, prob_up``), per series; and the results."""
    from candlecast.pipeline.backtest_stage import backtest_series

    features = pd.read_parquet(paths.features)
    features[TIME] = pd.to_datetime(features[TIME], utc=True)
    store = CandleStore(paths.validated)
    frames, results = [], {}
    for key, mine in predictions.groupby(SERIES, sort=True):
        series = SeriesId.from_key(str(key))
        candles, aligned = aligned_inputs(
            store.read(series), mine, features[features[SERIES] == key], series.step
        )
        result = backtest_series(params, candles, aligned, name)
        results[key] = result
        ret = simple_returns(equity_with_start(result[0]))
        frames.append(pd.DataFrame({SERIES: key, "timestamp": result[0].timestamps,
                                    "ret": ret}))
    return pd.concat(frames, ignore_index=True), results
