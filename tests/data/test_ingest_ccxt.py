"""End-to-end ingest: the real sync ccxt client against a fake Binance on 127.0.0.1.

The expected tables come from the fake's own deterministic history (``FakeBinance.expected``),
computed independently of the ingest code path.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_binance import Fault  # noqa: E402
from ingest_helpers import (  # noqa: E402, F401
    HOUR_MS,
    LISTING,
    NOW,
    RecordingSleep,
    fake_exchange_fixture,
    fast_config,
    tree_digest,
)

from candlecast.data.ingest import IngestError, ingest_ccxt, ingest_config  # noqa: E402
from candlecast.data.schema import SeriesId, conform  # noqa: E402
from candlecast.data.store import CandleStore  # noqa: E402

BTC = SeriesId("binance", "BTC/USDT", "1h")
ETH = SeriesId("binance", "ETH/USDT", "1h")


def run(server, store: CandleStore, sleep=None, progress=None, **overrides):
    config = ingest_config(**fast_config(**overrides))
    return ingest_ccxt(
        config,
        store,
        api_url=server.url,
        now=NOW,
        sleep=sleep or RecordingSleep(),
        rng=random.Random(0),
        progress=progress,
    )


def expected(fake, symbol: str = "BTC/USDT", start=LISTING, end=NOW) -> pd.DataFrame:
    return conform(fake.expected(symbol, "1h", start, end))


def assert_complete(store: CandleStore, fake, series: SeriesId = BTC, start=LISTING) -> None:
    got = store.read(series)
    assert got["timestamp"].is_unique and got["timestamp"].is_monotonic_increasing
    pd.testing.assert_frame_equal(got, expected(fake, series.symbol, start))


def test_pages_through_2000_candles_at_100_per_page(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    pages_seen = []
    report = run(server, store, progress=pages_seen.append)
    assert_complete(store, fake)
    assert len(store.read(BTC)) == 2000
    (series,) = report.series
    assert (series.fetched, series.new_rows, series.stored_rows) == (2000, 2000, 2000)
    assert series.pages == 20  # the next page would start at the open candle: not asked
    assert series.retries == 0 and report.retries == 0
    assert series.first == LISTING and series.last == NOW - pd.Timedelta(minutes=90)
    # Each request starts right after the previous page's last candle: no gap, no overlap.
    starts = [int(r.params["startTime"]) for r in fake.klines_requests()]
    first_ms = int(LISTING.value // 1_000_000)
    assert starts == [first_ms + i * 100 * HOUR_MS for i in range(20)]
    assert [p.page for p in pages_seen] == list(range(1, 21))
    assert [p.candles for p in pages_seen] == [100 * i for i in range(1, 21)]
    assert {p.expected for p in pages_seen} == {2000}
    assert pages_seen[-1].last_timestamp == series.last


def test_never_stores_the_still_open_candle(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    start = LISTING + pd.Timedelta(hours=5)  # so the last page ends with the open candle
    report = run(server, store, since=start.isoformat())
    open_candle = NOW.floor("h")  # opened 08:00, closes 09:00 > now (08:30)
    last_page_start = int(fake.klines_requests()[-1].params["startTime"])
    last_page = fake.rows("BTCUSDT", "1h", last_page_start, None, 100)
    assert last_page[-1][0] == int(open_candle.value // 1_000_000)  # it was served ...
    assert store.read(BTC)["timestamp"].max() == open_candle - pd.Timedelta(hours=1)  # ... not kept
    assert report.series[0].fetched == 1995
    assert_complete(store, fake, start=start)


def test_two_symbols_and_an_explicit_until(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    until = pd.Timestamp("2024-01-20 05:00", tz="UTC")
    report = run(server, store, symbols=["BTC/USDT", "ETH/USDT"], until=until.isoformat())
    for series in (BTC, ETH):
        pd.testing.assert_frame_equal(
            store.read(series), expected(fake, series.symbol, LISTING, until)
        )
    assert [s.fetched for s in report.series] == [19 * 24 + 5] * 2
    assert store.series() == [BTC, ETH]


def test_resumes_from_the_last_stored_candle(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    run(server, store, until="2024-02-01")
    assert len(store.read(BTC)) == 31 * 24
    fake.requests.clear()
    report = run(server, store, since=None)  # since not needed once something is stored
    first_start = int(fake.klines_requests()[0].params["startTime"])
    assert first_start == int(pd.Timestamp("2024-02-01", tz="UTC").value // 1_000_000)
    assert report.series[0].new_rows == 2000 - 31 * 24
    assert report.series[0].window_start == pd.Timestamp("2024-02-01", tz="UTC")
    assert_complete(store, fake)


def test_rerun_is_idempotent_byte_for_byte(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    run(server, store)
    before = tree_digest(tmp_path)
    fake.requests.clear()
    report = run(server, store)  # up to date: nothing to ask for
    assert report.new_rows == 0 and report.pages == 0 and fake.klines_requests() == []
    report = run(server, store, resume=False, since="2024-02-10")  # overlapping re-download
    assert report.fetched > 1000 and report.new_rows == 0
    assert tree_digest(tmp_path) == before


def test_backfills_before_the_stored_range_without_refetching_it(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    run(server, store, since="2024-02-01", until="2024-02-05")
    fake.requests.clear()
    run(server, store, since="2024-01-01")
    starts = [int(r.params["startTime"]) for r in fake.klines_requests()]
    stored_first = int(pd.Timestamp("2024-02-01", tz="UTC").value // 1_000_000)
    stored_next = int(pd.Timestamp("2024-02-05", tz="UTC").value // 1_000_000)
    assert stored_next in starts  # second segment resumes after the stored range
    assert not any(stored_first <= s < stored_next for s in starts)
    assert_complete(store, fake)


def test_exchange_gaps_are_kept_not_invented(tmp_path) -> None:
    from fake_binance import FakeBinance, FakeServer
    from ingest_helpers import NOW_MS

    holes = frozenset(range(95, 230))  # a hole longer than a page, across page boundaries
    fake = FakeBinance(now_ms=NOW_MS, holes=holes)
    with FakeServer(fake) as server:
        store = CandleStore(tmp_path)
        report = run(server, store)
    assert report.series[0].fetched == 2000 - len(holes)
    assert_complete(store, fake)


FAULTS = {
    "timeout": [Fault("timeout", delay_s=0.6)],
    "429-retry-after": [Fault("http", status=429, retry_after="2")],
    "500": [Fault("http", status=500)],
    "502-503": [Fault("http", status=502), Fault("http", status=503)],
    "malformed-json": [Fault("malformed")],
    "duplicated-page": [Fault("duplicate")],
    "mixed-burst": [Fault("http", status=429), Fault("malformed"), Fault("http", status=503)],
}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
def test_recovers_from_faults_without_gaps_or_duplicates(fake_exchange, tmp_path, faults) -> None:
    fake, server = fake_exchange
    for i, fault in enumerate(faults):
        fake.faults[7 + i] = fault  # mid-download, consecutive requests
    store = CandleStore(tmp_path)
    sleep = RecordingSleep()
    report = run(server, store, sleep=sleep)
    assert_complete(store, fake)
    assert report.series[0].retries == len(faults) == len(sleep.calls)
    assert all(0 < s <= 5.0 for s in sleep.calls)
    served = [r.fault for r in fake.klines_requests() if r.fault]
    assert served == [f.kind for f in faults]


def test_honours_retry_after(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    fake.faults[3] = Fault("http", status=429, retry_after="3")
    fake.faults[4] = Fault("http", status=429, retry_after="3600")
    sleep = RecordingSleep()
    run(server, CandleStore(tmp_path), sleep=sleep)
    assert sleep.calls == [3.0, 5.0]  # the header's value, then capped at backoff_max_s


def test_retries_exhausted_raises_one_line_and_leaves_the_store_untouched(
    fake_exchange, tmp_path
) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    run(server, store, until="2024-02-01")
    before = tree_digest(tmp_path)
    fake.faults.update({n: Fault("http", status=503) for n in range(25, 40)})
    with pytest.raises(IngestError) as caught:
        run(server, store, symbols=["BTC/USDT", "ETH/USDT"], max_retries=2)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("binance ETH/USDT 1h: download failed, nothing written")
    assert "after 3 attempts" in message and "unavailable" in message
    # BTC (fetched fully before ETH failed) was not written either.
    assert tree_digest(tmp_path) == before


def test_crash_after_k_pages_then_rerun_completes(fake_exchange, tmp_path) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path)
    run(server, store, until="2024-01-15")
    before = tree_digest(tmp_path)

    class Crash(RuntimeError):
        pass

    def crash_on_page_5(progress) -> None:
        if progress.page == 5:
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        run(server, store, since=None, progress=crash_on_page_5)
    assert tree_digest(tmp_path) == before
    run(server, store, since=None)
    assert_complete(store, fake)


def test_failed_write_rolls_back_every_series(fake_exchange, tmp_path, monkeypatch) -> None:
    fake, server = fake_exchange
    store = CandleStore(tmp_path / "store")
    run(server, store, until="2024-01-03")  # BTC stored, ETH not yet
    before = tree_digest(tmp_path)
    real_upsert = CandleStore.upsert

    def failing_upsert(self, series, candles):
        if series.symbol == "ETH/USDT":
            real_upsert(self, series, candles)  # the file is written, then the "disk" fails
            raise OSError("disk full")
        return real_upsert(self, series, candles)

    monkeypatch.setattr(CandleStore, "upsert", failing_upsert)
    with pytest.raises(OSError, match="disk full"):
        run(server, store, symbols=["BTC/USDT", "ETH/USDT"])
    assert tree_digest(tmp_path) == before  # BTC bytes restored, ETH file and folders gone


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"exchange": "binanse"}, r"^unknown exchange id 'binanse'.*did you mean binance"),
        ({"symbols": ["DOGE/USDT"]}, r"^binance: unknown symbol 'DOGE/USDT'"),
        ({"timeframe": "7m"}, r"^binance: timeframe '7m' is not offered"),
        ({"since": None}, r"^binance BTC/USDT 1h: nothing stored yet.*set since"),
        ({"since": "2024-03-24T08:00"}, r"^binance BTC/USDT 1h: the exchange returned no closed"),
        ({"since": "2023-01-01", "until": "2023-06-01"}, r"returned no closed candles"),
    ],
    ids=["exchange", "symbol", "timeframe", "no-since", "only-open-candle", "before-listing"],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    fake_exchange, tmp_path, overrides, pattern
) -> None:
    _, server = fake_exchange
    root = tmp_path / "store"
    with pytest.raises(IngestError, match=pattern) as caught:
        run(server, CandleStore(root), **overrides)
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)
    assert not root.exists()


def test_since_after_until_is_rejected_before_any_request(fake_exchange) -> None:
    fake, _ = fake_exchange
    with pytest.raises(IngestError, match=r"since \(2024-02-01\) must be before until"):
        ingest_config(**fast_config(since="2024-02-01", until="2024-01-01"))
    assert fake.requests == []


def test_report_to_dict_is_json_ready(fake_exchange, tmp_path) -> None:
    import json

    _, server = fake_exchange
    report = run(server, CandleStore(tmp_path), until="2024-01-02")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["fetched"] == 24 and data["series"][0]["series"] == "binance:BTC/USDT:1h"
    assert data["series"][0]["first"] == "2024-01-01T00:00:00+00:00"
