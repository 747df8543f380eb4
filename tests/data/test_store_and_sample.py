"""The Parquet candle store (atomic upserts) and the bundled sample loaders."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from candlecast.data import CandleStore, SeriesId, timeframe_to_timedelta
from candlecast.data.sample import SampleDataError, load_coinbase, load_sample
from candlecast.data.store import write_parquet_atomic

SERIES = SeriesId("testex", "BTC/USD", "1h")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upsert_over_an_overlapping_window_is_idempotent(tmp_path, candle_factory):
    store = CandleStore(tmp_path)
    candles = candle_factory(500, seed=1)
    store.upsert(SERIES, candles.iloc[:300])
    store.upsert(SERIES, candles.iloc[200:])
    once = _digest(store.path(SERIES))
    store.upsert(SERIES, candles.iloc[100:400])
    assert _digest(store.path(SERIES)) == once
    stored = store.read(SERIES)
    pd.testing.assert_frame_equal(
        stored,
        candles.pipe(lambda f: f.assign(timestamp=f["timestamp"].astype("datetime64[ns, UTC]"))),
        check_dtype=False,
    )
    assert stored["timestamp"].is_monotonic_increasing and stored["timestamp"].is_unique


def test_upsert_replaces_a_stored_candle_and_keeps_time_order(tmp_path, candle_factory):
    store = CandleStore(tmp_path)
    candles = candle_factory(50, seed=2)
    store.upsert(SERIES, candles)
    fixed = candles.iloc[[10]].assign(close=123.0)
    store.upsert(SERIES, fixed)
    stored = store.read(SERIES)
    assert len(stored) == 50
    assert stored.loc[10, "close"] == 123.0


def test_upsert_rejects_rows_of_another_series(tmp_path, candle_factory):
    store = CandleStore(tmp_path)
    with pytest.raises(ValueError, match="do not belong to series testex:ETH/USD:1h"):
        store.upsert(SeriesId("testex", "ETH/USD", "1h"), candle_factory(5))
    assert not any(tmp_path.rglob("*.parquet"))


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, candle_factory, monkeypatch):
    store = CandleStore(tmp_path)
    store.upsert(SERIES, candle_factory(20))
    before = _digest(store.path(SERIES))

    def boom(self, path, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        store.upsert(SERIES, candle_factory(40, seed=9))
    assert _digest(store.path(SERIES)) == before
    assert [p.name for p in store.path(SERIES).parent.iterdir()] == ["candles.parquet"]


def test_store_lists_series_from_partition_folders(tmp_path, candle_factory):
    store = CandleStore(tmp_path)
    store.upsert(SERIES, candle_factory(3))
    assert store.path(SERIES).relative_to(tmp_path).as_posix() == (
        "exchange=testex/symbol=BTC-USD/timeframe=1h/candles.parquet"
    )
    assert store.series() == [SERIES]


def test_bitfinex_loader_maps_the_open_close_high_low_column_order(btc_30m):
    # first row of BTC.csv.gz: Date,open,CLOSE,high,low,volume = 4367.1,4386.3,4387.5,4365.0,755.52
    first = btc_30m.iloc[0]
    assert first["timestamp"] == pd.Timestamp("2017-10-01 00:00", tz="UTC")
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        4367.1,
        4387.5,
        4365.0,
        4386.3,
    )
    assert len(btc_30m) == 35019
    assert btc_30m["timestamp"].is_monotonic_increasing


def test_coinbase_loader_reverses_rows_parses_12h_clock_and_keeps_base_volume(btc_1h):
    # oldest first after reversal; the file's own 5 back-in-time hours (Nov 2017) are kept for
    # the validation gate to quarantine, not silently sorted away
    steps = btc_1h["timestamp"].diff().dropna()
    assert (steps <= pd.Timedelta(0)).sum() == 5
    assert btc_1h["timestamp"].iloc[0] == pd.Timestamp("2017-07-01 11:00", tz="UTC")
    last = btc_1h.iloc[-1]
    # newest line of the file: 2019-10-17 09-AM,BTCUSD,8051,8056.83,8021.23,8035.88,61.25,492394.56
    assert last["timestamp"] == pd.Timestamp("2019-10-17 09:00", tz="UTC")
    assert (last["close"], last["volume"]) == (8035.88, 61.25)
    pm = btc_1h[btc_1h["timestamp"] == pd.Timestamp("2017-07-01 12:00", tz="UTC")]
    assert pm["close"].item() == 2488.43


def _write_gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_truncated_gzip_gives_a_clear_error(tmp_path, repo_root):
    data = (repo_root / "data/sample/bitfinex_30m/BTC.csv.gz").read_bytes()
    target = tmp_path / "bitfinex_30m" / "BTC.csv.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleDataError, match="malformed or truncated"):
        load_sample(tmp_path, "bitfinex_30m", "BTC/USD")


def test_wrong_header_and_non_numbers_are_named(tmp_path):
    _write_gz(
        tmp_path / "bitfinex_30m/BTC.csv.gz", "Date,BTC.open,BTC.high\n2020-01-01 00:00:00,1,2\n"
    )
    with pytest.raises(SampleDataError, match="header"):
        load_sample(tmp_path, "bitfinex_30m", "BTC/USD")
    _write_gz(
        tmp_path / "bitfinex_30m/BTC.csv.gz",
        "Date,BTC.open,BTC.close,BTC.high,BTC.low,BTC.volume\n"
        "2020-01-01 00:00:00,1,2,3,0.5,10\n2020-01-01 00:30:00,1,oops,3,0.5,10\n",
    )
    with pytest.raises(SampleDataError, match="'BTC.close' has a non-number 'oops' at data row 1"):
        load_sample(tmp_path, "bitfinex_30m", "BTC/USD")


def test_empty_download_and_unknown_names(tmp_path):
    _write_gz(tmp_path / "bitfinex_30m/BTC.csv.gz", "")
    with pytest.raises(SampleDataError, match="is empty"):
        load_sample(tmp_path, "bitfinex_30m", "BTC/USD")
    with pytest.raises(SampleDataError, match="unknown sample dataset 'kraken_1m'"):
        load_sample(tmp_path, "kraken_1m", "BTC/USD")
    with pytest.raises(SampleDataError, match="'DOGE/USD' is not in sample dataset"):
        load_sample(tmp_path, "bitfinex_30m", "DOGE/USD")


def test_coinbase_bad_date_is_reported(tmp_path):
    path = _write_gz(
        tmp_path / "c.csv.gz",
        "comment\ndate,symbol,open,high,low,close,volume_btc,volume\n"
        "2019-10-17 13-XM,BTCUSD,1,2,0.5,1,1,1\n",
    )
    with pytest.raises(SampleDataError, match="unparseable date"):
        load_coinbase(path, "BTC/USD")


@pytest.mark.parametrize("bad", ["0m", "1M", "5x", "h1", ""])
def test_bad_timeframes_are_rejected(bad):
    with pytest.raises(ValueError, match="timeframe"):
        timeframe_to_timedelta(bad)


def test_series_key_round_trip_and_validation():
    series = SeriesId("bitfinex", "BTC/USD", "30m")
    assert SeriesId.from_key(series.key) == series
    assert series.step == pd.Timedelta(minutes=30)
    with pytest.raises(ValueError, match="unified symbol"):
        SeriesId("bitfinex", "BTCUSD", "30m")
    with pytest.raises(ValueError, match="exchange id"):
        SeriesId("Bit Finex", "BTC/USD", "30m")


def test_write_parquet_atomic_creates_parents(tmp_path, candle_factory):
    path = tmp_path / "a" / "b" / "c.parquet"
    write_parquet_atomic(candle_factory(3), path)
    assert len(pd.read_parquet(path)) == 3
