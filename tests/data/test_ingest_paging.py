"""Paging, planning and error paths of the ingest against an in-process scripted source.

These cover behaviours the fake HTTP exchange cannot easily produce (overlapping pages, unsorted
rows, week candles not aligned to the Unix epoch, an exchange without OHLCV) and run in
milliseconds.
"""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from candlecast.data.ingest import DEFAULT_PAGE_LIMIT, IngestError, ingest_ccxt, ingest_config
from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.exchange import PermanentExchangeError, TransientExchangeError

HOUR = 3_600_000
START = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday
START_MS = int(START.value // 1_000_000)


def candle(ts: int) -> tuple[int, float, float, float, float, float]:
    price = 100.0 + (ts - START_MS) / HOUR
    return (ts, price, price + 1, price - 1, price + 0.5, 10.0)


class ScriptedSource:
    """An OhlcvSource over a fixed list of candle open times, with optional quirks."""

    id = "scripted"

    def __init__(
        self,
        times: list[int],
        *,
        overlap: int = 0,
        shuffle: bool = False,
        page_cap: int = 50,
        market_failures: int = 0,
        ohlcv: bool = True,
        limit: int | None = 50,
        permanent_at: int | None = None,
    ) -> None:
        self.times = sorted(times)
        self.overlap, self.shuffle, self.page_cap = overlap, shuffle, page_cap
        self.market_failures, self.ohlcv, self.limit = market_failures, ohlcv, limit
        self.permanent_at = permanent_at
        self.calls: list[tuple[int, int | None]] = []

    def load_markets(self) -> None:
        if self.market_failures:
            self.market_failures -= 1
            raise TransientExchangeError(self.id, "timeout", "markets timed out")

    def supports_ohlcv(self) -> bool:
        return self.ohlcv

    def symbols(self) -> frozenset[str]:
        return frozenset({"BTC/USD"})

    def timeframes(self) -> frozenset[str] | None:
        return None

    def max_page_limit(self, symbol: str) -> int | None:
        return self.limit

    def fetch_ohlcv_page(self, symbol, timeframe, since_ms, limit):
        self.calls.append((since_ms, limit))
        if self.permanent_at is not None and len(self.calls) > self.permanent_at:
            raise PermanentExchangeError(self.id, "market delisted")
        first = next((i for i, t in enumerate(self.times) if t >= since_ms), len(self.times))
        first = max(0, first - self.overlap)  # re-serve a few older candles, like some APIs do
        page = [candle(t) for t in self.times[first : first + min(limit, self.page_cap)]]
        return list(reversed(page)) if self.shuffle else page


def ingest(source, store, now, **overrides):
    fields = {
        "exchange": "scripted",
        "symbols": ["BTC/USD"],
        "timeframe": "1h",
        "since": START.isoformat(),
        "max_retries": 2,
    }
    fields.update(overrides)
    return ingest_ccxt(
        ingest_config(**fields),
        store,
        source=source,
        now=now,
        sleep=lambda s: None,
        rng=random.Random(1),
    )


SERIES = SeriesId("scripted", "BTC/USD", "1h")


@pytest.mark.parametrize(("overlap", "shuffle"), [(0, False), (3, False), (5, True)])
def test_overlapping_or_unsorted_pages_give_each_candle_once(tmp_path, overlap, shuffle) -> None:
    times = [START_MS + i * HOUR for i in range(500)]
    source = ScriptedSource(times, overlap=overlap, shuffle=shuffle)
    store = CandleStore(tmp_path)
    report = ingest(source, store, now=START + pd.Timedelta(hours=500))
    got = store.read(SERIES)
    assert [int(t.value // 1_000_000) for t in got["timestamp"]] == times
    assert got["close"].tolist() == [candle(t)[4] for t in times]
    assert report.series[0].pages == 1 + math.ceil(450 / (50 - overlap))


def test_page_limit_comes_from_config_then_exchange_then_default(tmp_path) -> None:
    times = [START_MS + i * HOUR for i in range(30)]
    now = START + pd.Timedelta(hours=30)
    for config_limit, exchange_limit, used in [(7, 50, 7), (None, 20, 20), (None, None, None)]:
        source = ScriptedSource(times, limit=exchange_limit, page_cap=10)
        ingest(source, CandleStore(tmp_path / str(used)), now, page_limit=config_limit)
        assert {limit for _, limit in source.calls} == {used or DEFAULT_PAGE_LIMIT}


def test_week_candles_not_aligned_to_the_epoch(tmp_path) -> None:
    week = 7 * 24 * HOUR
    times = [START_MS + i * week for i in range(10)]  # Mondays; the epoch was a Thursday
    now = START + pd.Timedelta(weeks=9, days=3)  # the 10th week is still open
    store = CandleStore(tmp_path)
    ingest(ScriptedSource(times), store, now, timeframe="1w")
    stored = store.read(SeriesId("scripted", "BTC/USD", "1w"))["timestamp"]
    assert list(stored) == [START + pd.Timedelta(weeks=i) for i in range(9)]


def test_end_of_exchange_data_is_asked_twice_then_accepted(tmp_path) -> None:
    times = [START_MS + i * HOUR for i in range(120)]  # exchange lags: stops 10h before now
    source = ScriptedSource(times)
    report = ingest(source, CandleStore(tmp_path), now=START + pd.Timedelta(hours=130))
    assert report.series[0].fetched == 120
    assert report.series[0].retries == 1  # the one confirmation of the empty page
    assert source.calls[-1][0] == source.calls[-2][0] == START_MS + 120 * HOUR


def test_transient_market_failures_are_retried_and_reported(tmp_path) -> None:
    source = ScriptedSource([START_MS + i * HOUR for i in range(5)], market_failures=2)
    report = ingest(source, CandleStore(tmp_path), now=START + pd.Timedelta(hours=5))
    assert report.setup_retries == 2 and report.retries == 2


def test_market_loading_that_never_recovers_is_an_ingest_error(tmp_path) -> None:
    source = ScriptedSource([START_MS], market_failures=10)
    with pytest.raises(IngestError, match=r"^scripted: could not load markets: .*after 3 attempts"):
        ingest(source, CandleStore(tmp_path / "s"), now=START + pd.Timedelta(hours=5))
    assert not (tmp_path / "s").exists()


def test_permanent_errors_are_not_retried(tmp_path) -> None:
    source = ScriptedSource([START_MS + i * HOUR for i in range(200)], permanent_at=2)
    with pytest.raises(IngestError, match="download failed, nothing written: market delisted"):
        ingest(source, CandleStore(tmp_path / "s"), now=START + pd.Timedelta(hours=200))
    assert len(source.calls) == 3 and not (tmp_path / "s").exists()


def test_exchange_without_ohlcv_is_rejected(tmp_path) -> None:
    with pytest.raises(IngestError, match="has no fetch_ohlcv"):
        ingest(ScriptedSource([], ohlcv=False), CandleStore(tmp_path), now=START)


def test_now_callable_is_read_once(tmp_path) -> None:
    reads = []

    def clock() -> pd.Timestamp:
        reads.append(1)
        return START + pd.Timedelta(hours=3, minutes=10)

    report = ingest(
        ScriptedSource([START_MS + i * HOUR for i in range(10)]), CandleStore(tmp_path), now=clock
    )
    assert len(reads) == 1 and report.fetched == 3
    assert report.now == START + pd.Timedelta(hours=3, minutes=10)


def test_naive_now_is_utc(tmp_path) -> None:
    report = ingest(
        ScriptedSource([START_MS + i * HOUR for i in range(10)]),
        CandleStore(tmp_path),
        now=pd.Timestamp("2024-01-01 02:00"),
    )
    assert report.fetched == 2 and str(report.now.tz) == "UTC"
