"""Cross-sectional features: each coin against the universe at the same bar, point in time.

One definition, two ways to compute it that agree to float rounding (tested):
:func:`compute_cross_section` over whole histories (batch) and
:class:`~candlecast.features.cross_section_engine.CrossSectionEngine` one bar at a time (live).
Both take the per-coin features of :mod:`candlecast.features` (known at each candle's close)
and look at nothing later; a coin without a bar at a time (a gap, not yet listed) is simply
absent from that bar's cross-section, never filled with a made-up value.

Per coin (``series_id``) at a bar, among the coins present with a finite value:

* ``xs_rank_<f>``: the coin's average rank of feature ``f`` scaled to [0, 1]
  (``(rank - 1) / (n - 1)``, ties share their average rank) and ``xs_z_<f>``: its z-score
  ``(x - mean) / std`` (population std; 0 when all values are equal);
* ``xs_rel_<h>``: its ``logret_<h>`` minus the equal-weight basket's (the mean over the coins);
* against the reference return ``m`` (the basket's mean ``logret_1``, or one coin's, e.g.
  BTC), over the last ``beta_window`` bars of the time grid where both are known:
  ``xs_beta`` (OLS slope), ``xs_corr``, ``xs_resid_vol`` (std of the part ``m`` does not
  explain) and ``xs_resid_<R>``: the sum of the bar residuals ``logret_1 - beta x m`` over the
  last ``residual_window`` bars (idiosyncratic momentum).

Per universe (``universe_id``) at a bar: ``mkt_ret_<h>`` (basket ``logret_<h>``), ``mkt_disp_<h>``
(cross-sectional std of ``logret_<h>``), ``mkt_breadth`` (share of coins whose
``breadth_feature`` is positive), ``mkt_vol`` (std of ``m`` over ``beta_window`` bars) and
``mkt_coins`` (coins with a bar). Fewer than ``min_coins`` coins with a value: NaN.

Windows are counted on the regular time grid (bars of the timeframe), not in rows: a bar no
coin has still ages a window. Labels (:func:`cross_section_labels`): the coin's forward log
return minus the basket's over the same horizon, ``fwd_rel_<h>``, and its sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

SERIES = "series_id"
UNIVERSE = "universe_id"
TIME = "event_timestamp"
BASKET = "basket"


class CrossSectionConfig(BaseModel):
    """The cross-sectional features (``cross_section:`` in ``params.yaml``); off unless the
    portfolio path turns it on (``profiles/portfolio.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    #: per-coin features ranked and z-scored within the universe at each bar
    rank_features: tuple[str, ...] = ("logret_4", "logret_16", "logret_48", "ema_dist_20",
                                      "rsi", "rv_48", "volume_z", "bb_pct_b")
    #: ``logret_<h>`` horizons turned into returns relative to the basket (features.return_horizons)
    relative_horizons: tuple[int, ...] = (1, 4, 16, 48)
    #: ``basket`` (the equal-weight mean of the coins present) or one symbol of the universe
    reference: str = BASKET
    beta_window: int = Field(default=336, ge=2, le=100_000)
    beta_min_periods: int = Field(default=96, ge=2, le=100_000)
    residual_window: int = Field(default=48, ge=1, le=100_000)
    breadth_feature: str = "logret_48"
    min_coins: int = Field(default=3, ge=2, le=10_000)
    #: the Feast service of the pooled model: candle features, the coin view, the universe view
    feature_service: str = "portfolio_model_v1"

    @field_validator("rank_features", "relative_horizons")
    @classmethod
    def _distinct(cls, values: tuple) -> tuple:  # type: ignore[type-arg]
        if len(set(values)) != len(values):
            raise ValueError(f"cross_section lists must not repeat values, got {list(values)}")
        return values

    def check(self, feature_names: Sequence[str], symbols: Sequence[str]) -> None:
        """Raise unless every input exists: ``feature_names`` of the per-coin features and the
        universe's ``symbols``."""
        known = set(feature_names)
        missing = [c for c in self.input_columns() if c not in known]
        if missing:
            raise ValueError(f"cross_section needs per-coin features {missing}; they are not "
                             "in the feature set (features.*)")
        if self.reference != BASKET and self.reference not in symbols:
            raise ValueError(f"cross_section.reference {self.reference!r} must be 'basket' or "
                             f"one of ingest.symbols {list(symbols)}")
        if self.min_coins > len(symbols):
            raise ValueError(f"cross_section.min_coins ({self.min_coins}) exceeds the "
                             f"{len(symbols)} coins of the universe")
        if self.beta_min_periods > self.beta_window:
            raise ValueError("cross_section.beta_min_periods must be <= beta_window")

    def input_columns(self) -> list[str]:
        """The per-coin feature columns the cross-section reads."""
        cols = ["logret_1", *self.rank_features, *(f"logret_{h}" for h in self.relative_horizons),
                self.breadth_feature]
        return list(dict.fromkeys(cols))

    @property
    def residual_min_periods(self) -> int:
        return (self.residual_window + 1) // 2


def coin_feature_names(config: CrossSectionConfig) -> list[str]:
    """Per-coin cross-sectional columns (the coin view), in order."""
    return [*(f"xs_rank_{f}" for f in config.rank_features),
            *(f"xs_z_{f}" for f in config.rank_features),
            *(f"xs_rel_{h}" for h in config.relative_horizons),
            "xs_beta", "xs_corr", "xs_resid_vol", f"xs_resid_{config.residual_window}"]


def universe_feature_names(config: CrossSectionConfig) -> list[str]:
    """Universe-level columns (the universe view), in order."""
    return [*(f"mkt_ret_{h}" for h in config.relative_horizons),
            *(f"mkt_disp_{h}" for h in config.relative_horizons),
            "mkt_breadth", "mkt_vol", "mkt_coins"]


def universe_key(exchange: str, timeframe: str, symbols: Sequence[str]) -> str:
    """The universe's entity key: ``exchange:timeframe:SYM1,SYM2,...`` (symbols in order)."""
    return f"{exchange}:{timeframe}:{','.join(symbols)}"


# ---------------------------------------------------------------- the per-bar cross-section

def _count_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a (bars, coins) array: count, mean and population std of the finite values."""
    finite = np.isfinite(x)
    n = finite.sum(axis=1)
    filled = np.where(finite, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1) / n
        dev = np.where(finite, x - mean[:, None], 0.0)
        std = np.sqrt((dev * dev).sum(axis=1) / n)
    return n, mean, std


def average_rank(x: np.ndarray) -> np.ndarray:
    """Per row of a (bars, coins) array: each finite value's average rank among the row's
    finite values, scaled to [0, 1] (``(rank - 1) / (n - 1)``); NaN where not finite or fewer
    than two values."""
    finite = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    chunk = max(1, 4_000_000 // max(1, x.shape[1] ** 2))
    for lo in range(0, len(x), chunk):
        part, ok = x[lo:lo + chunk], finite[lo:lo + chunk]
        a, b = part[:, :, None], part[:, None, :]
        both = ok[:, :, None] & ok[:, None, :]
        less = ((b < a) & both).sum(axis=2)
        equal = ((b == a) & both).sum(axis=2)
        n = ok.sum(axis=1)[:, None]
        rank = less + (equal + 1) / 2.0  # 1-based average rank
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = (rank - 1.0) / (n - 1.0)
        out[lo:lo + chunk] = np.where(ok & (n > 1), scaled, np.nan)
    return out


def cross_section_rows(values: Mapping[str, np.ndarray], config: CrossSectionConfig
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The per-bar part of the definition (no windows) for (bars, coins) arrays of the input
    columns: per-coin columns (bars, coins) and universe columns (bars,). The batch path calls
    it on whole histories, the engine on one bar: the same code."""
    k = config.min_coins
    coins: dict[str, np.ndarray] = {}
    market: dict[str, np.ndarray] = {}
    for f in config.rank_features:
        x = values[f]
        n, mean, std = _count_mean_std(x)
        enough = (n >= k)[:, None] & np.isfinite(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(std[:, None] > 0, (x - mean[:, None]) / std[:, None], 0.0)
        coins[f"xs_rank_{f}"] = np.where(enough, average_rank(x), np.nan)
        coins[f"xs_z_{f}"] = np.where(enough, z, np.nan)
    for h in config.relative_horizons:
        x = values[f"logret_{h}"]
        n, mean, std = _count_mean_std(x)
        ok = n >= k
        coins[f"xs_rel_{h}"] = np.where(ok[:, None] & np.isfinite(x), x - mean[:, None], np.nan)
        market[f"mkt_ret_{h}"] = np.where(ok, mean, np.nan)
        market[f"mkt_disp_{h}"] = np.where(ok, std, np.nan)
    breadth = values[config.breadth_feature]
    finite = np.isfinite(breadth)
    n = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (finite & (np.where(finite, breadth, 0.0) > 0)).sum(axis=1) / n
    market["mkt_breadth"] = np.where(n >= k, share, np.nan)
    return coins, market


def reference_return(logret_1: np.ndarray, config: CrossSectionConfig,
                     symbols: Sequence[str]) -> np.ndarray:
    """The reference return ``m`` per bar: the basket's mean ``logret_1`` over the coins with
    one (at least ``min_coins``), or the reference coin's own."""
    if config.reference != BASKET:
        return logret_1[:, list(symbols).index(config.reference)].copy()
    n, mean, _ = _count_mean_std(logret_1)
    return np.where(n >= config.min_coins, mean, np.nan)


def beta_columns(sums: Mapping[str, np.ndarray], min_periods: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(beta, corr, resid_vol)`` from window sums of the pairs (``n``, ``x``, ``y``, ``xx``,
    ``xy``, ``yy``; x = reference, y = coin): OLS slope, correlation and the residual std
    (ddof 1); NaN below ``min_periods`` pairs or without variance."""
    n = sums["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sums["x"] / n, sums["y"] / n
        vx = (sums["xx"] - n * mx * mx) / (n - 1)
        vy = (sums["yy"] - n * my * my) / (n - 1)
        cxy = (sums["xy"] - n * mx * my) / (n - 1)
        ok = (n >= min_periods) & (vx > 0)
        beta = np.where(ok, cxy / vx, np.nan)
        corr = np.where(ok & (vy > 0), cxy / np.sqrt(vx * vy), np.nan)
        resid = np.where(ok, np.sqrt(np.maximum(vy - cxy * cxy / vx, 0.0)), np.nan)
    return beta, corr, resid


def window_std(total: np.ndarray, squares: np.ndarray, n: np.ndarray, min_periods: int
               ) -> np.ndarray:
    """Sample std (ddof 1) from a window's sum, sum of squares and count."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        var = (squares - n * mean * mean) / (n - 1)
    return np.where(n >= min_periods, np.sqrt(np.maximum(var, 0.0)), np.nan)


# ---------------------------------------------------------------- batch

def _window_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last ``window`` rows (fewer at the start) along axis 0."""
    padded = np.concatenate([np.zeros((window - 1, *a.shape[1:])), a])
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    return view.sum(axis=-1)


def _grid(times: pd.Series, step: pd.Timedelta) -> pd.DatetimeIndex:
    stamps = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).unique().sort_values()
    grid = pd.date_range(stamps[0], stamps[-1], freq=step)
    if not stamps.isin(grid).all():
        bad = stamps[~stamps.isin(grid)][0]
        raise ValueError(f"event time {bad} is off the {step} grid starting at {stamps[0]}")
    return grid


def compute_cross_section(
    features: pd.DataFrame, symbols: Sequence[str], series_ids: Sequence[str],
    step: pd.Timedelta, config: CrossSectionConfig, universe_id: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Batch cross-section of the per-coin ``features`` (long: ``series_id``,
    ``event_timestamp`` (close) and :meth:`CrossSectionConfig.input_columns`) for the universe
    ``series_ids`` (``symbols`` in the same order). Returns the coin table (one row per input
    row of those series: ``series_id, event_timestamp`` + :func:`coin_feature_names`) and the
    universe table (one row per grid time where a coin has a bar: ``universe_id,
    event_timestamp`` + :func:`universe_feature_names`)."""
    if len(symbols) != len(series_ids):
        raise ValueError("symbols and series_ids must match one to one")
    mine = features[features[SERIES].isin(series_ids)]
    if mine.empty:
        raise ValueError(f"no feature rows for the universe {list(series_ids)}")
    if mine.duplicated([SERIES, TIME]).any():
        raise ValueError("features hold duplicate (series_id, event_timestamp) rows")
    grid = _grid(mine[TIME], step)
    present = np.zeros((len(grid), len(series_ids)), dtype=bool)
    where: list[np.ndarray] = []
    columns = config.input_columns()
    arrays = {c: np.full((len(grid), len(series_ids)), np.nan) for c in columns}
    for j, sid in enumerate(series_ids):
        rows = mine[mine[SERIES] == sid]
        at = grid.get_indexer(pd.DatetimeIndex(pd.to_datetime(rows[TIME], utc=True)))
        present[at, j] = True
        where.append(at)
        for c in columns:
            arrays[c][at, j] = rows[c].to_numpy(dtype=float)
    coins, market = cross_section_rows(arrays, config)
    m = reference_return(arrays["logret_1"], config, symbols)
    r = arrays["logret_1"]
    pair = np.isfinite(r) & np.isfinite(m)[:, None]
    x = np.where(pair, m[:, None], 0.0)
    y = np.where(pair, r, 0.0)
    w = config.beta_window
    sums = {"n": _window_sum(pair.astype(float), w), "x": _window_sum(x, w),
            "y": _window_sum(y, w), "xx": _window_sum(x * x, w), "xy": _window_sum(x * y, w),
            "yy": _window_sum(y * y, w)}
    beta, corr, resid_vol = beta_columns(sums, config.beta_min_periods)
    e = r - beta * m[:, None]
    e_ok = np.isfinite(e)
    rw = config.residual_window
    resid_sum = _window_sum(np.where(e_ok, e, 0.0), rw)
    resid_n = _window_sum(e_ok.astype(float), rw)
    coins["xs_beta"], coins["xs_corr"], coins["xs_resid_vol"] = beta, corr, resid_vol
    coins[f"xs_resid_{rw}"] = np.where(resid_n >= config.residual_min_periods, resid_sum, np.nan)
    m_ok = np.isfinite(m)
    mz = np.where(m_ok, m, 0.0)
    market["mkt_vol"] = window_std(_window_sum(mz, w), _window_sum(mz * mz, w),
                                   _window_sum(m_ok.astype(float), w), config.beta_min_periods)
    market["mkt_coins"] = present.sum(axis=1).astype(float)
    parts = []
    names = coin_feature_names(config)
    for j, sid in enumerate(series_ids):
        at = np.sort(where[j])
        part = pd.DataFrame({name: coins[name][at, j] for name in names})
        part.insert(0, TIME, grid[at])
        part.insert(0, SERIES, sid)
        parts.append(part)
    coin_table = pd.concat(parts, ignore_index=True)
    any_bar = present.any(axis=1)
    universe = pd.DataFrame({name: market[name][any_bar]
                             for name in universe_feature_names(config)})
    universe.insert(0, TIME, grid[any_bar])
    universe.insert(0, UNIVERSE, universe_id)
    return coin_table, universe


def cross_section_labels(labels: pd.DataFrame, series_ids: Sequence[str],
                         horizons: Sequence[int], min_coins: int) -> pd.DataFrame:
    """Relative targets from the per-coin labels (long: ``series_id``, ``event_timestamp``,
    ``fwd_logret_<h>``): ``fwd_rel_<h>`` = the coin's forward log return minus the mean over
    the coins with one at that bar (at least ``min_coins``), and ``label_rel_up_<h>`` (1 above
    the basket, 0 below, NaN when equal or unknown). Labels are future by definition: targets
    only, never features."""
    mine = labels[labels[SERIES].isin(series_ids)].copy()
    out = mine[[SERIES, TIME]].copy()
    for h in horizons:
        col = f"fwd_logret_{h}"
        grouped = mine.groupby(TIME)[col]
        count, mean = grouped.transform("count"), grouped.transform("mean")
        rel = (mine[col] - mean).where(count >= min_coins)
        out[f"fwd_rel_{h}"] = rel
        out[f"label_rel_up_{h}"] = np.where(rel > 0, 1.0, np.where(rel < 0, 0.0, np.nan))
    return out
