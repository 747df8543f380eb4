"""What the ``policy`` and ``backtest`` stages (and the ops challenger comparison) read: per
series, the validated candles of the out-of-sample period and, aligned to each candle, the
forecasts made at its close (every horizon), the ATR and the features the rule baselines use.

A forecast row's event time is its candle's CLOSE (the Feast convention), so the forecast of
candle ``t`` is known when ``t`` closes and first acts on ``t + 1`` (the backtester fills at the
next open). A candle without a forecast row (a gap, warm-up) gets NaN: the policy keeps what it
holds and opens nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from candlecast.backtest.inputs import Market, prepare_market
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.policy.tuning import SeriesWindow

#: feature columns carried per bar for the rule baselines and reports
BASELINE_FEATURES: tuple[str, ...] = ("atr", "logret_1", "ema_dist_20", "rv_48")


@dataclass(frozen=True)
class SeriesForecasts:
    """One series over the forecast period: candles, the fold and forecasts per candle."""

    series: SeriesId
    candles: pd.DataFrame
    fold: np.ndarray  # the walk-forward fold of each candle's forecast, -1 where none
    forecasts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]  # h -> er, vol, prob_up
    features: pd.DataFrame  # BASELINE_FEATURES per candle (NaN where unknown)

    @property
    def key(self) -> str:
        return self.series.key

    def rows(self, folds: Iterable[int]) -> np.ndarray:
        """Candle positions from the first to the last candle forecast in ``folds``."""
        inside = np.flatnonzero(np.isin(self.fold, list(folds)))
        if len(inside) == 0:
            raise ValueError(f"{self.key}: no forecasts in folds {sorted(folds)}")
        return np.arange(inside[0], inside[-1] + 1)

    def market(self, rows: np.ndarray) -> Market:
        return prepare_market(self.candles.iloc[rows].reset_index(drop=True),
                              str(self.candles["timeframe"].iloc[0]))

    def window(self, folds: Iterable[int]) -> SeriesWindow:
        """The :class:`SeriesWindow` of ``folds`` (contiguous test windows: one span)."""
        rows = self.rows(folds)
        return SeriesWindow(self.key, self.market(rows),
                            self.features["atr"].to_numpy(dtype=float)[rows],
                            {h: tuple(a[rows] for a in arrays)  # type: ignore[misc]
                             for h, arrays in self.forecasts.items()})


def load_series_forecasts(
    store: CandleStore, series: Sequence[SeriesId], predictions: pd.DataFrame,
    features: pd.DataFrame,
) -> list[SeriesForecasts]:
    """Per series, the candles covering ``predictions`` (one model's rows: ``series``,
    ``timestamp`` (close), ``horizon``, ``fold``, ``prob_up``, ``exp_ret``, ``volatility``)
    with every horizon's forecast aligned per candle."""
    out = []
    for sid in series:
        mine = predictions[predictions["series"] == sid.key]
        if mine.empty:
            raise ValueError(f"no forecasts for {sid.key}")
        candles = store.read(sid)
        start, end = mine["timestamp"].min() - sid.step, mine["timestamp"].max() - sid.step
        candles = candles[(candles["timestamp"] >= start) & (candles["timestamp"] <= end)]
        candles = candles.reset_index(drop=True)
        close = pd.DatetimeIndex(candles["timestamp"] + sid.step)
        fold = (mine.drop_duplicates("timestamp").set_index("timestamp")["fold"]
                .reindex(close).fillna(-1).to_numpy(dtype=int))
        forecasts = {}
        for h, rows in mine.groupby("horizon", sort=True):
            keyed = rows.set_index("timestamp")
            if not keyed.index.is_unique:
                raise ValueError(f"{sid.key} horizon {h}: duplicate forecast times")
            aligned = keyed.reindex(close)
            forecasts[int(h)] = tuple(aligned[c].to_numpy(dtype=float)
                                      for c in ("exp_ret", "volatility", "prob_up"))
        feats = features[features["series_id"] == sid.key].set_index("event_timestamp")
        aligned_features = feats.reindex(close)[list(BASELINE_FEATURES)].reset_index(drop=True)
        out.append(SeriesForecasts(sid, candles, fold, forecasts, aligned_features))
    return out
