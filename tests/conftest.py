"""Shared fixtures: the small real sample and a seeded OHLCV generator."""

from __future__ import annotations

import os
from pathlib import Path

from candlecast.runtime import set_reproducible_numerics

# the pipeline's numeric kernels (candlecast.runtime), set before numpy or torch loads: a stage
# run in a test process computes what `dvc repro` computes, and so does every subprocess the
# tests start (Dask workers, services); without this, a test that imports flows/pipeline.py
# pinned os.environ halfway through a worker's life, and its children then disagreed with it
set_reproducible_numerics()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from candlecast.data.sample import load_sample  # noqa: E402

# the tests run offline: no library may try to send telemetry (subprocesses inherit these)
for _name, _value in {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "FEAST_USAGE": "False",
    "BENTOML_DO_NOT_TRACK": "true",
}.items():
    os.environ.setdefault(_name, _value)

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ROOT = REPO_ROOT / "data" / "sample"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def btc_30m() -> pd.DataFrame:
    """Real Bitfinex BTC/USD 30m candles, the full bundled file (about 35,000 rows)."""
    return load_sample(SAMPLE_ROOT, "bitfinex_30m", "BTC/USD")


@pytest.fixture(scope="session")
def btc_1h() -> pd.DataFrame:
    """Real Coinbase BTC/USD hourly candles (about 20,000 rows), oldest first."""
    return load_sample(SAMPLE_ROOT, "coinbase_1h", "BTC/USD")


def make_candles(
    n: int,
    seed: int = 0,
    start: str = "2024-01-01",
    timeframe: str = "1h",
    symbol: str = "BTC/USD",
    exchange: str = "testex",
) -> pd.DataFrame:
    """A seeded random-walk candle table in canonical form (valid OHLC, positive volume)."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(timeframe.replace("m", "min") if timeframe.endswith("m") else timeframe)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(3, 0.5, n)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=n, freq=step, tz="UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": timeframe,
        }
    )


@pytest.fixture
def candle_factory():
    """Call ``candle_factory(n, seed=...)`` for a seeded synthetic candle table."""
    return make_candles
