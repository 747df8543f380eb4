"""Helpers shared by the feature tests (importable: pytest puts this directory on sys.path)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.features import FeatureConfig, IncrementalFeatureEngine


def random_candles(n: int, seed: int, gap_every: int, timeframe: str = "30m") -> pd.DataFrame:
    """A seeded random-walk series of ``n`` candles with a random gap about every
    ``gap_every`` bars, occasional flat closes and zero volumes."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    close[rng.random(n) < 0.1] = np.nan
    close = pd.Series(close).ffill().bfill().fillna(50.0).to_numpy()  # repeated closes
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.01, n)) * close * (rng.random(n) > 0.1)
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(2, 1, n) * (rng.random(n) > 0.1)
    steps = np.where(rng.random(n) < 1.0 / gap_every, rng.integers(2, 5, n), 1)
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.cumsum(steps) * 30, unit="min")
    return pd.DataFrame({
        "timestamp": ts, "open": open_, "high": high, "low": low, "close": close,
        "volume": volume, "exchange": "testex", "symbol": "ETH/USD", "timeframe": timeframe,
    })


def run_engine(candles: pd.DataFrame, config: FeatureConfig | None = None) -> pd.DataFrame:
    """Feed ``candles`` one at a time through a fresh engine; rows aligned with the input."""
    engine = IncrementalFeatureEngine(config, timeframe=str(candles["timeframe"].iloc[0]))
    out = engine.update_many(candles)
    out.index = candles.index
    return out


def run_engine_per_candle(
    candles: pd.DataFrame, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """Like :func:`run_engine` but through the public ``update(mapping)`` path, one dict each."""
    engine = IncrementalFeatureEngine(config)  # timeframe read from the first candle
    rows = [engine.update(candle) for candle in candles.to_dict("records")]
    return pd.DataFrame(rows, index=candles.index, dtype=np.float64)
