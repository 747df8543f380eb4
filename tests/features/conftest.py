"""Fixtures for the feature tests: batch and incremental features of the real BTC 30m file,
and a synthetic series built to hit every special case (flat bars, zero volume, gaps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feature_helpers import run_engine

from candlecast.features import compute_features


@pytest.fixture(scope="session")
def btc_batch(btc_30m: pd.DataFrame) -> pd.DataFrame:
    return compute_features(btc_30m)


@pytest.fixture(scope="session")
def btc_incremental(btc_30m: pd.DataFrame) -> pd.DataFrame:
    return run_engine(btc_30m)


@pytest.fixture(scope="session")
def edge_candles() -> pd.DataFrame:
    """600 synthetic 30m candles with every degenerate case the definitions special-case:
    a dead-flat stretch (all prices equal, zero volume: zero ranges, zero std, zero ATR), a
    stretch of unchanged closes with moving highs/lows, constant non-zero volume, a 40% spike,
    and gaps of several kinds (missing bars, a 1-bar run, a misaligned timestamp)."""
    rng = np.random.default_rng(7)
    n = 600
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    close[100:230] = close[99]  # unchanged closes
    close[320] *= 1.4  # spike
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    high[100:200] = low[100:200] = open_[100:200] = close[100:200]  # dead flat bars
    volume = rng.lognormal(3, 0.5, n)
    volume[100:200] = 0.0
    volume[240:300] = 5.0
    ts = pd.date_range("2024-03-01", periods=n, freq="30min", tz="UTC")
    frame = pd.DataFrame({
        "timestamp": ts, "open": open_, "high": high, "low": low, "close": close,
        "volume": volume, "exchange": "testex", "symbol": "BTC/USD", "timeframe": "30m",
    })
    # gaps: one inside the flat stretch (so a run starts flat: ATR exactly 0), missing bars,
    # a 1-bar run, and a misaligned timestamp (a gap before and after it)
    frame = frame.drop(index=[110, 400, 401, 402, 450, 452])
    frame.loc[500, "timestamp"] += pd.Timedelta(minutes=1)
    return frame.reset_index(drop=True)

