"""What the portfolio stages read: every coin's candles of the out-of-sample period on one
time axis, and the forecasts made at each bar's close (the pooled ensemble's expected return
relative to the basket per horizon, its volatility) with the coin's beta and correlation to
the basket (the cross-section) and the momentum baseline's score.

Per coin this is :func:`~candlecast.pipeline.decision_inputs.load_series_forecasts` (the
policy stages' loader); the coins are then put on the union of their bars. A bar a coin does
not have stays NaN for it (never filled in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from candlecast.backtest.inputs import Market
from candlecast.config import Params
from candlecast.data.store import CandleStore
from candlecast.features.cross_section import SERIES, TIME
from candlecast.pipeline.decision_inputs import SeriesForecasts, load_series_forecasts
from candlecast.pipeline.paths import Paths
from candlecast.pipeline.zoo_common import ZooPaths
from candlecast.portfolio.deciders import BookWindow, ForecastPanel


@dataclass(frozen=True)
class BookInputs:
    """Every coin of the universe over the forecast period, on one axis."""

    symbols: tuple[str, ...]
    series: list[SeriesForecasts]
    ts_ns: np.ndarray  # the axis: union of the coins' candle open times
    where: np.ndarray  # (bars, coins) row of each coin's candles, -1 where it has none
    fold: np.ndarray  # (bars,) the walk-forward fold of the axis bar, -1 where none
    panel: ForecastPanel  # the model's forecasts on the whole axis
    momentum: np.ndarray  # (bars, coins) the momentum baseline's score

    def span(self, folds: Iterable[int]) -> tuple[int, int]:
        """Axis bars ``start .. stop - 1`` from the first to the last bar of ``folds``."""
        inside = np.flatnonzero(np.isin(self.fold, list(folds)))
        if len(inside) == 0:
            raise ValueError(f"no forecasts in folds {sorted(folds)}")
        return int(inside[0]), int(inside[-1]) + 1

    def window(self, folds: Iterable[int], panel: ForecastPanel | None = None) -> BookWindow:
        """The :class:`BookWindow` of ``folds`` (with another panel on the same axis, e.g. a
        baseline's scores)."""
        start, stop = self.span(folds)
        markets: dict[str, Market] = {}
        atr: dict[str, np.ndarray] = {}
        for j, s in enumerate(self.series):
            rows = self.where[start:stop, j]
            rows = rows[rows >= 0]
            markets[self.symbols[j]] = s.market(rows)
            atr[self.symbols[j]] = s.features["atr"].to_numpy(dtype=float)[rows]
        return BookWindow(markets, atr, (panel or self.panel).rows(start, stop))


def _coin_columns(path: Paths, columns: list[str]) -> pd.DataFrame:
    frame = pd.read_parquet(path.cross_section, columns=[SERIES, TIME, *columns])
    frame[TIME] = pd.to_datetime(frame[TIME], utc=True)
    return frame


def load_book_inputs(params: Params, paths: Paths, model: str | None = None) -> BookInputs:
    """The book's inputs for the out-of-sample forecasts of ``model`` (``portfolio.model``
    by default: the ensemble; ``simple_average`` for the PBO universe)."""
    oof = pd.read_parquet(ZooPaths(paths.root).ensemble_dir / "oof.parquet")
    rows = oof[oof["model"] == (model or params.portfolio.model)]
    if rows.empty:
        raise ValueError(f"the ensemble's out-of-sample forecasts have no model {model!r}")
    feats = pd.read_parquet(paths.features, columns=[
        SERIES, TIME, "atr", "logret_1", "ema_dist_20", "rv_48",
        params.portfolio.baselines.momentum_feature])
    feats[TIME] = pd.to_datetime(feats[TIME], utc=True)
    series = load_series_forecasts(CandleStore(paths.validated), params.ingest.series, rows,
                                   feats)
    symbols = tuple(s.series.symbol for s in series)
    ts = np.unique(np.concatenate([pd.DatetimeIndex(s.candles["timestamp"]).as_unit("ns").asi8
                                   for s in series]))
    n, k = len(ts), len(series)
    where = np.full((n, k), -1, dtype=np.int64)
    fold = np.full(n, -1, dtype=np.int64)
    horizons = sorted(series[0].forecasts)
    er = {h: np.full((n, k), np.nan) for h in horizons}
    vol, beta, corr, momentum = (np.full((n, k), np.nan) for _ in range(4))
    xs = _coin_columns(paths, ["xs_beta", "xs_corr"]).set_index([SERIES, TIME])
    mom_col = params.portfolio.baselines.momentum_feature
    for j, s in enumerate(series):
        own = pd.DatetimeIndex(s.candles["timestamp"]).as_unit("ns").asi8
        at = np.searchsorted(ts, own)
        where[at, j] = np.arange(len(own))
        fold[at] = np.maximum(fold[at], s.fold)
        for h in horizons:
            er[h][at, j] = s.forecasts[h][0]
        forecast_vol = s.forecasts[horizons[0]][1]
        vol[at, j] = np.where(np.isfinite(forecast_vol), forecast_vol,
                              s.features["rv_48"].to_numpy(dtype=float))
        close = pd.DatetimeIndex(s.candles["timestamp"] + s.series.step)
        keyed = xs.loc[s.key].reindex(close) if s.key in xs.index.get_level_values(0) else None
        if keyed is not None:
            beta[at, j] = keyed["xs_beta"].to_numpy(dtype=float)
            corr[at, j] = keyed["xs_corr"].to_numpy(dtype=float)
        own_feats = feats[feats[SERIES] == s.key].set_index(TIME)[mom_col].reindex(close)
        momentum[at, j] = own_feats.to_numpy(dtype=float)
    bar_ns = int(series[0].series.step.value)
    panel = ForecastPanel(symbols, ts, bar_ns, er, vol, beta, corr)
    return BookInputs(symbols, series, ts, where, fold, panel, momentum)
