"""`ops refresh --feed stream`: the candles the streaming trader stored are taken as they are;
the ccxt REST ingest runs only for the series the stream lags on (real sync ccxt client against
the fake Binance on 127.0.0.1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from ingest_helpers import LISTING, NOW, fake_exchange_fixture  # noqa: E402, F401

from candlecast.config import parse_params  # noqa: E402
from candlecast.data.schema import SeriesId  # noqa: E402
from candlecast.data.store import CandleStore  # noqa: E402
from candlecast.exchange import CcxtOhlcvSource  # noqa: E402
from candlecast.ops.refresh import ingest_step, stream_step  # noqa: E402
from candlecast.pipeline.paths import Paths  # noqa: E402

BTC = SeriesId("binance", "BTC/USDT", "1h")
ETH = SeriesId("binance", "ETH/USDT", "1h")


def _params(**trade_stream):
    return parse_params({
        "ingest": {"source": "ccxt", "exchange": "binance", "symbols": ["BTC/USDT", "ETH/USDT"],
                   "timeframe": "1h", "since": "2024-01-01",
                   "ccxt": {"rate_limit_ms": 1, "timeout_ms": 500, "max_retries": 1,
                            "backoff_base_s": 0.01}},
        "trade": {"exchange": "binance", "symbols": ["BTC/USDT"], "timeframe": "1h",
                  "feed": "stream", "stream": trade_stream},
    })


def test_refresh_stream_polls_rest_only_where_the_stream_lags(tmp_path, fake_exchange):
    fake, server = fake_exchange
    paths = Paths(tmp_path)
    store = CandleStore(paths.raw)
    # the streaming trader stored BTC up to the last closed candle; ETH stopped 10 hours ago
    last_closed = NOW.floor("h") - pd.Timedelta(hours=1)
    store.upsert(BTC, fake.expected("BTC/USDT", "1h", LISTING, last_closed + pd.Timedelta("1h")))
    store.upsert(ETH, fake.expected("ETH/USDT", "1h", LISTING, last_closed - pd.Timedelta("9h")))
    btc_before = store.path(BTC).read_bytes()
    source = CcxtOhlcvSource.create("binance", timeout_ms=500, rate_limit_ms=1,
                                    api_url=server.url)
    out = stream_step(_params(), paths, now=NOW, source=source)
    assert out["source"] == "stream" and out["rest_symbols"] == ["ETH/USDT"]
    assert out["series"][BTC.key]["lag_candles"] == 0
    assert out["series"][ETH.key]["lag_candles"] == 10
    assert out["rest"]["new_rows"] == 10
    symbols = {r.params.get("symbol") for r in fake.klines_requests()}
    assert symbols == {"ETHUSDT"}  # nothing polled for the streamed series
    assert store.path(BTC).read_bytes() == btc_before
    pd.testing.assert_frame_equal(
        store.read(ETH), fake.expected("ETH/USDT", "1h", LISTING, NOW))


def test_refresh_stream_needs_live_candles_in_the_pipeline_store(tmp_path):
    paths = Paths(tmp_path)
    with pytest.raises(ValueError, match="candle_store"):
        stream_step(_params(candle_store="data/traded"), paths)
    sample = parse_params({"trade": {"feed": "stream"}})
    with pytest.raises(ValueError, match="ingest.source: ccxt"):
        ingest_step(sample, paths, feed="stream")
    with pytest.raises(ValueError, match="'poll' or 'stream'"):
        ingest_step(sample, paths, feed="websocket")
