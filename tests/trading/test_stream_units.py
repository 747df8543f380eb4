"""Pieces of the streaming feed without a network: the trader on stale ticks, the candle store
appender, the store's writer lock, metrics, status, configuration and URL re-pointing."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from prometheus_client import generate_latest
from stream_helpers import POLICY
from trading_helpers import (
    assert_same_fills,
    backtest_script,
    build_paper_trader,
    make_script,
    replay_slice,
    trader_fills,
)

from candlecast.data.schema import SeriesId
from candlecast.data.store import CandleStore
from candlecast.features import FeatureConfig
from candlecast.trading import StateStore, Tick, TradeConfig
from candlecast.trading.candle_appender import CandleAppender
from candlecast.trading.candles import Bar, bars_from_frame, frame_from_bars
from candlecast.trading.config import StreamConfig
from candlecast.trading.metrics import trader_registry
from candlecast.trading.store import feed_status

SERIES = SeriesId("binance", "BTC/USD", "30m")
START, N = 6000, 300


class StaleReplay:
    """A replay feed that hands some ticks on as stale (as the stream does while silent)."""

    def __init__(self, feed, stale: set[int]) -> None:
        self.feed, self.stale = feed, stale

    def history(self, symbol, n, before):
        return self.feed.history(symbol, n, before)

    def next_tick(self, after, wait_s):
        tick = self.feed.next_tick(after, wait_s)
        if isinstance(tick, Tick) and tick.ts in self.stale:
            return Tick(tick.ts, tick.bars, stale="stream silent for 40.0 s")
        return tick


def test_stale_ticks_decide_nothing_and_equal_a_backtest_that_holds(tmp_path, btc_30m):
    """While the data is stale the trader asks no signal and decides nothing; working orders,
    stops and limits still act: the backtest that keeps what is held on those bars."""
    full, replay, feats = replay_slice(btc_30m, START, N, FeatureConfig())
    script = make_script(replay, feats, btc_30m, START, **POLICY)
    plain = backtest_script(replay, feats, script)
    ts = pd.DatetimeIndex(replay["timestamp"]).asi8
    decided = plain.decisions.loc[plain.decisions["action"] == "target", "bar"].to_numpy()
    stale_bars = {int(b) + k for b in decided[2:5] for k in range(-2, 4)
                  if 0 <= int(b) + k < N}  # over decisions the policy would take
    stale = {int(ts[b]) for b in stale_bars}
    expected = backtest_script(replay, feats, script, held=stale_bars)
    trader, signals, _, store = build_paper_trader(tmp_path, full, replay, script)
    trader.feed = StaleReplay(trader.feed, stale)
    assert trader.run().status == "ended"
    assert signals.calls == N - len(stale)  # no signal asked on a stale tick
    assert len(expected.fills) > 4
    assert_same_fills(trader_fills(store), expected.fills)
    decisions = store.frame("decisions")
    assert not decisions[decisions["ts"].isin(stale)]["action"].isin(["target", "enter"]).any()
    assert (plain.decisions["bar"].isin(stale_bars) & (plain.decisions["action"] == "target")
            ).any()  # it mattered
    bars = store.frame("bars")
    assert set(bars.loc[bars["signal_status"] == "stale_data", "ts"]) == stale
    assert trader.event_counts["stale_data"] == len(stale)
    assert store.event_counts()["stale_data"] == len(stale)


def _bars(btc_30m, n: int = 20) -> list[Bar]:
    return bars_from_frame(btc_30m.iloc[1000:1000 + n].reset_index(drop=True))


def test_appender_is_atomic_idempotent_and_keeps_revisions(tmp_path, btc_30m):
    store = CandleStore(tmp_path)
    events: list = []
    appender = CandleAppender(store, {"BTC/USD": SERIES}, flush_s=60,
                              on_event=lambda k, m: events.append(k))
    bars = _bars(btc_30m)
    for bar in bars[:10]:
        assert appender.add("BTC/USD", bar)
    assert not appender.add("BTC/USD", bars[10]._replace(low=-1.0))  # fails the row rules
    assert appender.flush() == 10 and appender.rejected == 1
    first = store.path(SERIES).read_bytes()
    for bar in bars[:10]:  # the same candles again (a restart re-hands them on)
        appender.add("BTC/USD", bar)
    appender.flush()
    assert store.path(SERIES).read_bytes() == first
    revised = bars[3]._replace(volume=bars[3].volume * 1.5)
    appender.add("BTC/USD", revised)
    for bar in bars[10:]:
        appender.add("BTC/USD", bar)
    appender.close()
    stored = bars_from_frame(store.read(SERIES))
    assert stored == [*bars[:3], revised, *bars[4:]] and events == []


def test_appender_keeps_candles_when_a_write_fails(tmp_path, btc_30m):
    class Flaky(CandleStore):
        fail = True

        def upsert(self, series, candles):
            if self.fail:
                self.fail = False
                raise OSError("disk full")
            return super().upsert(series, candles)

    events: list = []
    store = Flaky(tmp_path)
    appender = CandleAppender(store, {"BTC/USD": SERIES}, on_event=lambda k, m: events.append(
        (k, m)))
    bars = _bars(btc_30m, 5)
    for bar in bars:
        appender.add("BTC/USD", bar)
    assert appender.flush() == 0 and appender.pending() == 5
    assert events[0][0] == "store_error" and "disk full" in events[0][1]
    assert appender.flush() == 5 and bars_from_frame(store.read(SERIES)) == bars


def _append_many(root: str, start: int, n: int) -> None:
    store = CandleStore(root)
    base = pd.Timestamp("2024-01-01", tz="UTC").value
    for i in range(start, start + n):
        bar = Bar(base + i * int(SERIES.step.value), 10.0, 11.0, 9.0, 10.5, float(i))
        store.upsert(SERIES, frame_from_bars([bar], *SERIES.key.split(":")))


def test_store_writers_of_one_series_never_lose_each_others_candles(tmp_path):
    """Two processes appending to one series at once (the trader and an ingest): the series
    lock makes each read-merge-write whole, so every candle is kept."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), k * 100, 25)) for k in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(CandleStore(tmp_path).read(SERIES)) == 50


def test_metrics_read_the_trader_and_its_feed():
    health = SimpleNamespace(stale="stream silent for 31.0 s", last_message_age_s=31.0,
                             connected=0, groups=1)
    feed = SimpleNamespace(health=lambda: health, stats=lambda: {
        "messages": 120, "reconnects": 2, "candles_stream": 40, "candles_rest": 3})
    trader = SimpleNamespace(event_counts={"stream_silent": 1, "stale_data": 2},
                             equity=lambda: 10_250.5, latencies_s=[0.012],
                             account=SimpleNamespace(killed=False), paused=False, feed=feed)
    text = generate_latest(trader_registry(trader)).decode()
    for line in ('candlecast_trader_events_total{kind="stale_data"} 2.0',
                 "candlecast_trader_equity 10250.5", "candlecast_trader_last_tick_seconds 0.012",
                 "candlecast_feed_stale 1.0", "candlecast_feed_last_message_age_seconds 31.0",
                 "candlecast_feed_connected_subscriptions 0.0",
                 "candlecast_feed_messages_total 120.0",
                 "candlecast_feed_reconnects_total 2.0",
                 'candlecast_feed_candles_total{source="rest"} 3.0'):
        assert line in text, line
    trader.feed = object()  # the polling feed: trader metrics only
    assert "candlecast_feed" not in generate_latest(trader_registry(trader)).decode()


def test_status_reports_the_feed_from_the_journal(tmp_path):
    with StateStore(tmp_path / "s.db") as store:
        assert feed_status(store) is None
        with store.transaction():
            store.add_event("stream_connected", "subscription 0 receiving")
            store.add_event("stale_data", "stream silent", int(pd.Timestamp("2024-01-01").value))
            store.add_event("stream_silent", "no message for 31.0 s")
            store.add_event("no_fresh_signal", "BTC/USD: timeout")
        status = feed_status(store)
        assert status is not None
        assert status["state"] == "stale" and "31.0" in status["detail"]
        assert status["last_stale_candle"].startswith("2024-01-01")
        assert store.event_counts() == {"no_fresh_signal": 1, "stale_data": 1,
                                        "stream_connected": 1, "stream_silent": 1}


def test_stream_settings_are_validated_and_loaded_from_params(repo_root):
    from candlecast.config import load_params

    with pytest.raises(ValueError, match="reconnect_max_s"):
        StreamConfig(reconnect_base_s=5, reconnect_max_s=1)
    with pytest.raises(ValueError, match="ws_url"):
        StreamConfig(ws_url="http://127.0.0.1:9000")
    with pytest.raises(ValueError, match="feed"):
        TradeConfig(feed="websocket")
    trade = load_params(repo_root / "params.yaml").trade
    assert trade.feed in ("poll", "stream") and trade.stream.candle_store == "data/raw"


def test_ws_and_rest_urls_are_repointed_separately():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
    from candlecast.exchange.ccxt_stream import CcxtStreamSource
    from candlecast.exchange.errors import UnknownExchangeError

    source = CcxtStreamSource.create("binance", api_url="http://127.0.0.1:8001",
                                     ws_url="ws://127.0.0.1:9001")
    urls = source._exchange.urls["api"]  # noqa: SLF001
    assert urls["ws"]["spot"] == "ws://127.0.0.1:9001/ws"
    assert urls["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:9001/ws-api/v3"
    assert urls["public"].startswith("http://127.0.0.1:8001/")
    with pytest.raises(UnknownExchangeError, match="no WebSocket support"):
        CcxtStreamSource.create("coinmate")
    with pytest.raises(ValueError, match="ws_url"):
        CcxtStreamSource.create("binance", ws_url="http://x")


def test_docs_name_every_stream_event_and_metric(repo_root):
    """docs/trading.md explains every event kind the streaming feed can journal and every
    metric the trader exports (found in the code, so a new one cannot go undocumented)."""
    import re

    src = repo_root / "src" / "candlecast" / "trading"
    code = {name: (src / name).read_text() for name in (
        "candle_builder.py", "stream.py", "stream_hub.py", "stream_worker.py",
        "candle_appender.py", "metrics.py", "trader.py")}
    notes = set(re.findall(r'StreamNote\("(\w+)"',
                           code["candle_builder.py"] + code["stream_hub.py"]))
    events = {f"candle_{k}" for k in notes}
    for name in ("stream.py", "stream_hub.py", "stream_worker.py", "candle_appender.py"):
        events |= set(re.findall(r'(?:_event|\.event|on_event)\(\s*"(\w+)"', code[name]))
    events.add("stale_data")
    metrics = set(re.findall(r'MetricFamily\("(\w+)"', code["metrics.py"]))
    doc = (repo_root / "docs" / "trading.md").read_text()
    assert len(events) >= 20 and len(metrics) >= 10
    missing = sorted(k for k in events | metrics if k not in doc)
    assert missing == []
