"""The ccxt adapter against a fake Binance on 127.0.0.1, using the real sync ccxt client."""

from __future__ import annotations

import socket
import sys
from email.utils import format_datetime
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_binance import Fault  # noqa: E402
from ingest_helpers import HOUR_MS, LISTING, fake_exchange_fixture  # noqa: E402, F401

from candlecast.exchange import (  # noqa: E402
    CcxtOhlcvSource,
    PermanentExchangeError,
    TransientExchangeError,
    UnknownExchangeError,
    create_exchange,
    override_api_urls,
)
from candlecast.exchange.ccxt_source import parse_retry_after  # noqa: E402

LISTING_MS = int(LISTING.value // 1_000_000)


def source_for(server, timeout_ms: int = 250) -> CcxtOhlcvSource:
    source = CcxtOhlcvSource.create(
        "binance", timeout_ms=timeout_ms, rate_limit_ms=1, api_url=server.url
    )
    source.load_markets()
    return source


def test_create_exchange_turns_on_ccxt_rate_limiting_and_timeout() -> None:
    exchange = create_exchange("kraken", timeout_ms=1234)
    assert exchange.enableRateLimit is True
    assert exchange.timeout == 1234
    assert exchange.rateLimit > 0  # the exchange's own limit is kept unless overridden
    assert create_exchange("kraken", rate_limit_ms=7).rateLimit == 7
    assert not exchange.apiKey and not exchange.secret  # public data only: no credentials


def test_unknown_exchange_names_it_and_suggests() -> None:
    with pytest.raises(UnknownExchangeError, match=r"unknown exchange id 'binanse'.*binance"):
        create_exchange("binanse")


def test_override_rewrites_every_api_host_and_keeps_paths() -> None:
    exchange = create_exchange("binance")
    before = dict(exchange.urls["api"])
    override_api_urls(exchange, "http://127.0.0.1:9")
    after = exchange.urls["api"]
    assert set(after) == set(before)
    for key, url in after.items():
        assert url.startswith("http://127.0.0.1:9/")
        assert url.split("/", 3)[3] == before[key].split("/", 3)[3]
    with pytest.raises(ValueError, match="absolute URL"):
        override_api_urls(exchange, "127.0.0.1:9")


def test_markets_timeframes_and_page_limit(fake_exchange) -> None:
    fake, server = fake_exchange
    source = source_for(server)
    assert source.symbols() == {"BTC/USDT", "ETH/USDT"}
    assert {"1m", "1h", "1d"} <= source.timeframes()
    assert source.supports_ohlcv()
    assert source.max_page_limit("BTC/USDT") == 1000  # ccxt's features for binance spot
    paths = [r.path for r in fake.requests]
    assert "/api/v3/exchangeInfo" in paths  # the real ccxt client really hit the fake
    assert "secret" not in repr(source).lower()


def test_fetch_page_matches_the_fake_history_and_respects_the_page_cap(fake_exchange) -> None:
    fake, server = fake_exchange
    source = source_for(server)
    since = LISTING_MS + 5 * HOUR_MS
    page = source.fetch_ohlcv_page("BTC/USDT", "1h", since, 1000)
    assert len(page) == fake.max_limit == 100
    assert [c[0] for c in page] == [since + i * HOUR_MS for i in range(100)]
    raw = fake.candle("BTCUSDT", 5, since)
    assert page[0] == (since, *(float(x) for x in raw[1:6]))
    (request,) = fake.klines_requests()
    assert request.params["startTime"] == str(since) and request.params["symbol"] == "BTCUSDT"


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [
        (Fault("http", status=429, retry_after="2"), "rate_limit", 2.0),
        (Fault("http", status=418), "rate_limit", None),
        (Fault("http", status=500), "unavailable", None),
        (Fault("http", status=502), "unavailable", None),
        (Fault("http", status=503, retry_after="1.5"), "unavailable", 1.5),
        (Fault("malformed"), "malformed", None),
        (Fault("timeout", delay_s=0.6), "timeout", None),
    ],
    ids=["429", "418", "500", "502", "503", "malformed", "timeout"],
)
def test_faults_become_transient_errors(fake_exchange, fault, kind, retry_after) -> None:
    fake, server = fake_exchange
    fake.faults[0] = fault
    source = source_for(server)
    with pytest.raises(TransientExchangeError) as caught:
        source.fetch_ohlcv_page("BTC/USDT", "1h", LISTING_MS, 100)
    assert caught.value.kind == kind
    assert caught.value.retry_after_s == retry_after
    assert caught.value.exchange == "binance" and "\n" not in str(caught.value)
    # The next request (no fault) works with the same client.
    assert len(source.fetch_ohlcv_page("BTC/USDT", "1h", LISTING_MS, 100)) == 100


def test_unknown_symbol_is_permanent(fake_exchange) -> None:
    _, server = fake_exchange
    source = source_for(server)
    with pytest.raises(PermanentExchangeError, match="DOGE/USDT"):
        source.fetch_ohlcv_page("DOGE/USDT", "1h", LISTING_MS, 100)


def test_connection_refused_is_a_transient_network_error() -> None:
    with socket.socket() as sock:  # find a free port, then leave it closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = CcxtOhlcvSource.create("binance", timeout_ms=500, api_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientExchangeError) as caught:
        source.load_markets()
    assert caught.value.kind == "network"


def test_parse_retry_after() -> None:
    now = pd.Timestamp("2024-05-01 12:00", tz="UTC")
    assert parse_retry_after("3", now.timestamp()) == 3.0
    assert parse_retry_after(" 0.5 ", now.timestamp()) == 0.5
    http_date = format_datetime((now + pd.Timedelta(seconds=30)).to_pydatetime(), usegmt=True)
    assert parse_retry_after(http_date, now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after("-4", now.timestamp()) == 0.0
    assert parse_retry_after("soon", now.timestamp()) is None
    assert parse_retry_after(None, now.timestamp()) is None
