"""Rule baselines a quant judges a model against, as target positions (pure, arrays in and out).

Each function returns one target per bar (a signed fraction of equity, NaN in warm-up: hold),
decided from bars up to and including that bar's close only; the target backtester
(:func:`~candlecast.backtest.targets.run_targets`) trades them with the same costs, fill rules
and risk engine as the policy. Parameters are fixed up front (``backtest.rules`` in
``params.yaml``), never tuned on the windows they are scored on.

* buy-and-hold: always 1;
* volatility-targeted buy-and-hold: ``min(1, target / annualized vol)``;
* SMA crossover: long while SMA(fast) > SMA(slow), flat otherwise;
* Donchian breakout: long when the close breaks above the highest high of the previous
  ``entry`` bars, flat when it breaks below the lowest low of the previous ``exit`` bars;
* time-series momentum: the sign of the last ``lookback``-bar return, volatility-targeted,
  long/short.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class RuleConfig(BaseModel):
    """Fixed parameters of the rule baselines (bars of the series' timeframe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sma_fast: int = Field(default=48, ge=1)
    sma_slow: int = Field(default=192, ge=2)
    donchian_entry: int = Field(default=96, ge=1)
    donchian_exit: int = Field(default=48, ge=1)
    tsmom_lookback: int = Field(default=336, ge=1)
    vol_target: float = Field(default=0.5, gt=0, le=10)
    #: no order for a vol-target resize smaller than this (fraction of equity)
    min_change: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> RuleConfig:
        if not self.sma_fast < self.sma_slow:
            raise ValueError(f"backtest.rules: sma_fast ({self.sma_fast}) must be below "
                             f"sma_slow ({self.sma_slow})")
        return self


def vol_target_size(volatility: np.ndarray, target: float, bars_per_year: float,
                    cap: float = 1.0) -> np.ndarray:
    """``min(cap, target / (vol x sqrt(bars_per_year)))`` per bar; NaN where vol is unknown."""
    vol = np.asarray(volatility, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        size = target / (vol * np.sqrt(bars_per_year))
    size = np.where(vol > 0, np.minimum(size, cap), np.nan)
    return size


def _trailing(values: np.ndarray, window: int, kind: str) -> np.ndarray:
    """Max/min/mean of the ``window`` values BEFORE each position (NaN until there are)."""
    out = np.full(len(values), np.nan)
    if len(values) <= window:
        return out
    view = np.lib.stride_tricks.sliding_window_view(values[:-1], window)
    reduce = {"max": np.max, "min": np.min, "mean": np.mean}[kind]
    out[window:] = reduce(view, axis=1)
    return out


def sma_crossover_targets(close: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """1 while SMA(fast) > SMA(slow) of the closes up to the bar, else 0; NaN in warm-up."""
    c = np.asarray(close, dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(c)])
    out = np.full(len(c), np.nan)
    if len(c) < slow:
        return out
    end = np.arange(slow, len(c) + 1)
    fast_ma = (csum[end] - csum[end - fast]) / fast
    slow_ma = (csum[end] - csum[end - slow]) / slow
    out[slow - 1:] = (fast_ma > slow_ma).astype(float)
    return out


def donchian_targets(high: np.ndarray, low: np.ndarray, close: np.ndarray, entry: int,
                     exit_: int) -> np.ndarray:
    """Long (1) from a close above the previous ``entry`` bars' highest high until a close
    below the previous ``exit_`` bars' lowest low (0); NaN in warm-up."""
    c = np.asarray(close, dtype=float)
    upper = _trailing(np.asarray(high, dtype=float), entry, "max")
    lower = _trailing(np.asarray(low, dtype=float), exit_, "min")
    out = np.full(len(c), np.nan)
    state = 0.0
    start = max(entry, exit_)
    for t in range(start, len(c)):
        if state == 0.0 and c[t] > upper[t]:
            state = 1.0
        elif state == 1.0 and c[t] < lower[t]:
            state = 0.0
        out[t] = state
    return out


def tsmom_targets(close: np.ndarray, lookback: int, volatility: np.ndarray, target: float,
                  bars_per_year: float) -> np.ndarray:
    """``sign(log(close_t / close_{t-lookback}))`` x the vol-target size; NaN in warm-up."""
    c = np.asarray(close, dtype=float)
    signal = np.full(len(c), np.nan)
    signal[lookback:] = np.sign(np.log(c[lookback:] / c[:-lookback]))
    return signal * vol_target_size(volatility, target, bars_per_year)


def rule_targets(high: np.ndarray, low: np.ndarray, close: np.ndarray, volatility: np.ndarray,
                 config: RuleConfig, bars_per_year: float) -> dict[str, np.ndarray]:
    """Every rule baseline's targets, by name (the report's strategy names)."""
    size = vol_target_size(volatility, config.vol_target, bars_per_year)
    return {
        "vol_target_hold": size,
        "sma_crossover": sma_crossover_targets(close, config.sma_fast, config.sma_slow),
        "donchian": donchian_targets(high, low, close, config.donchian_entry,
                                     config.donchian_exit),
        "tsmom": tsmom_targets(close, config.tsmom_lookback, volatility, config.vol_target,
                               bars_per_year),
    }
