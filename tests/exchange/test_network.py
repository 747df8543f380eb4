"""One tiny real fetch from a real exchange. Off by default; run with ``pytest -m network``."""

from __future__ import annotations

import pandas as pd
import pytest

from candlecast.data.ingest import ingest_ccxt, ingest_config
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore


@pytest.mark.network
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("exchange", "symbol"), [("kraken", "BTC/USD")])
def test_ingest_a_few_hours_from_a_real_exchange(tmp_path, exchange, symbol) -> None:
    now = pd.Timestamp.now(tz="UTC")
    since = (now - pd.Timedelta(hours=6)).floor("h")
    config = ingest_config(
        exchange=exchange,
        symbols=[symbol],
        timeframe="1h",
        since=since.isoformat(),
        max_retries=3,
        timeout_ms=20_000,
    )
    store = CandleStore(tmp_path)
    report = ingest_ccxt(config, store, now=now)
    stored = store.read(SeriesId(exchange, symbol, "1h"))
    assert 4 <= len(stored) <= 6 and len(stored) == report.series[0].fetched
    assert stored["timestamp"].min() >= since
    assert (stored["timestamp"] + pd.Timedelta(hours=1) <= now).all()  # closed candles only
    assert stored["timestamp"].diff().dropna().eq(pd.Timedelta(hours=1)).all()
    assert (stored["high"] >= stored[["open", "close"]].max(axis=1)).all()
