"""Reference strategies every report shows beside the model: buy-and-hold, SMA crossover."""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.inputs import Market, prepare_market
from candlecast.backtest.result import BacktestResult
from candlecast.backtest.vectorized import run_vectorized


def buy_and_hold(
    candles: pd.DataFrame | Market,
    costs: CostConfig | None = None,
    config: BacktestConfig | None = None,
    name: str = "buy_and_hold",
) -> BacktestResult:
    """Buy at the second bar's open (the first decision is at the first close), hold to the end,
    with the same costs as the strategy."""
    market = candles if isinstance(candles, Market) else prepare_market(candles)
    return run_vectorized(market, np.ones(market.n, dtype=np.int8), costs, config, name=name)


def sma_crossover_signal(close: np.ndarray, fast: int = 10, slow: int = 30,
                         long_only: bool = True) -> np.ndarray:
    """+1 while SMA(fast) > SMA(slow), else 0 (or -1 when not ``long_only``); 0 in warm-up."""
    if not 0 < fast < slow:
        raise ValueError(f"need 0 < fast < slow, got fast={fast}, slow={slow}")
    close = np.asarray(close, dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(close)])
    sig = np.zeros(len(close), dtype=np.int8)
    if len(close) < slow:
        return sig
    fast_ma = (csum[slow:] - csum[slow - fast:-fast]) / fast
    slow_ma = (csum[slow:] - csum[:-slow]) / slow
    sig[slow - 1:] = np.where(fast_ma > slow_ma, 1, 0 if long_only else -1)
    return sig
