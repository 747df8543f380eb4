"""The streaming feed end to end: the REAL ccxt.pro client on a fake Binance WebSocket (and REST)
on 127.0.0.1 replaying real Bitfinex candles of two symbols on one connection, with every fault
a stream has; a paper trader on it.

Asserted: the trader processed exactly the stored candles (none lost: the backfill filled every
candle missed while disconnected, stalled or cut off by a malformed message; none doubled; the
exchange's own holes stay gaps), its decisions, orders, fills and equity equal a replay of the
same candles through the same trader (whatever its decision logic), nothing was opened on a tick
handed on while the stream was silent, every fault left its event, and the candle store holds
the traded candles with the exchange's later revision.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_binance_ws import StreamFault  # noqa: E402
from stream_helpers import (  # noqa: E402
    STEP_NS,
    SYMBOLS,
    SeriesSignals,
    bundled,
    guard,
    market,
    running_exchange,
    series_scripts,
    stream_config,
    stream_feed,
)
from trading_helpers import MemorySink  # noqa: E402

from candlecast.backtest import BacktestConfig, CostConfig  # noqa: E402
from candlecast.data.schema import SeriesId  # noqa: E402
from candlecast.data.store import CandleStore  # noqa: E402
from candlecast.features import FeatureConfig  # noqa: E402
from candlecast.risk import RiskConfig  # noqa: E402
from candlecast.trading import PaperBroker, ReplayFeed, StateStore, TradeConfig, Trader  # noqa: E402
from candlecast.trading.candles import bars_from_frame  # noqa: E402

FIRST = pd.Timestamp("2018-06-05", tz="UTC")  # holes in this window: ETH 11:00, BTC 14:00
N = 120
FAULTS = [
    StreamFault(6, "duplicate"),
    StreamFault(9, "out_of_order", market="ETHUSD"),
    StreamFault(12, "revise"),
    StreamFault(16, "bad_value", market="ETHUSD"),
    StreamFault(30, "disconnect", at=0.5),  # mid-candle
    StreamFault(50, "stall", at=0.5, candles=8),
    StreamFault(80, "malformed", at=0.5),
]


def _trade_config(tmp_path: Path, name: str, **fields) -> TradeConfig:
    return TradeConfig(exchange="binance", symbols=SYMBOLS, timeframe="30m",
                       state_db=str(tmp_path / f"{name}.db"),
                       kill_switch_file=str(tmp_path / "KILL"), pause_file=str(tmp_path / "P"),
                       signal_retries=0, poll_interval_s=0.02, state_sync="NORMAL", **fields)


def _trader(cfg: TradeConfig, feed, scripts) -> tuple[Trader, SeriesSignals]:
    sink = MemorySink()
    signals = SeriesSignals(sink, scripts)
    trader = Trader(cfg, broker=PaperBroker(CostConfig()), feed=feed, signals=signals,
                    store=StateStore(cfg.state_db, synchronous="NORMAL"), risk=RiskConfig(),
                    costs=CostConfig(), backtest=BacktestConfig(), features=FeatureConfig(),
                    feature_sink=sink)
    return trader, signals


def _journal(store: StateStore) -> dict[str, pd.DataFrame]:
    out = {t: store.frame(t) for t in ("bars", "ticks", "orders", "fills", "decisions")}
    out["decisions"] = out["decisions"].drop(columns=["id"])
    out["orders"] = out["orders"].drop(columns=["updated_at"])
    out["bars"] = out["bars"].drop(columns=["signal_status"])
    return out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["ohlcv", "trades"])
def test_stream_trader_equals_replay_through_every_fault(tmp_path, kind):
    frames = bundled()
    end = FIRST + N * pd.Timedelta("30min")
    scripts = series_scripts(frames, FIRST, end)
    window = {s: f[(f["timestamp"] >= FIRST) & (f["timestamp"] < end)] for s, f in frames.items()}
    n_ticks = len(set().union(*(set(w["timestamp"]) for w in window.values())))
    cfg = _trade_config(tmp_path, "stream", feed="stream")
    with running_exchange(frames, FIRST, N, FAULTS) as ex:
        store = CandleStore(tmp_path / "raw")
        feed = stream_feed(ex, stream_config(kind), store=store)
        trader, _ = _trader(cfg, feed, scripts)
        feed.start()
        ex.wait_subscribed()
        ex.ws.play()
        timer = guard(120, trader.stop)
        summary = trader.run(max_ticks=n_ticks)
        timer.cancel()
        feed.close()
        with trader._tx():  # noqa: SLF001 - journal the events reported while closing
            pass
        ws = ex.ws
    assert summary.status == "max_ticks", summary
    journal = _journal(trader.store)
    events = trader.store.frame("events")
    counts = trader.store.event_counts()

    # 1. exactly the stored candles: none lost, none doubled, the exchange's holes are gaps
    bars = journal["bars"]
    for symbol in SYMBOLS:
        got = bars[bars["symbol"] == symbol][["ts", "open", "high", "low", "close", "volume"]]
        expected = [tuple(b) for b in bars_from_frame(window[symbol])]
        assert [tuple(r) for r in got.itertuples(index=False)] == expected, symbol
    assert counts.get("gap") == 2 and counts.get("exchange_gap", 0) >= 2
    assert "bad_candle" not in counts

    # 2. parity: the same candles replayed through the same trader, the stream's stale ticks
    # (handed on while it was silent) replayed as candles without a signal
    stale = bars[trader.store.frame("bars")["signal_status"] == "stale_data"]
    stall = FIRST.value + 50 * STEP_NS  # 8 candles of silence, the threshold is 4
    assert stale["ts"].between(stall + 4 * STEP_NS, stall + 9 * STEP_NS).sum() >= 2
    replay_cfg = _trade_config(tmp_path, "replay")
    history = {s: f[f["timestamp"] < end] for s, f in frames.items()}
    replay, signals = _trader(replay_cfg, ReplayFeed(history, "30m", start=FIRST), scripts)
    signals.down = {(SeriesId("binance", s, "30m").key, ts)
                    for s, ts in zip(stale["symbol"], stale["ts"], strict=True)}
    assert replay.run().status == "ended"
    reference = _journal(replay.store)
    assert len(reference["fills"]) >= 10  # the window trades
    for table in ("bars", "ticks", "orders", "fills", "decisions"):
        pd.testing.assert_frame_equal(journal[table], reference[table], check_exact=False,
                                      rtol=1e-12, obj=table)

    # 3. nothing decided while the data was stale (a risk exit may be: stops still act)
    decisions = journal["decisions"]
    assert not decisions[decisions["ts"].isin(stale["ts"])]["action"].isin(
        ["target", "enter"]).any()
    assert decisions["action"].isin(["target", "enter"]).sum() >= 10
    stale_events = events[events["kind"] == "stale_data"]
    assert len(stale_events) == stale["ts"].nunique() and all("no new positions" in m
                                                   for m in stale_events["message"])

    # 4. every fault is visible, with its reason
    assert ws.fired == ["revise", "disconnect", "stall", "malformed"]
    for needed in ("stream_connected", "stream_disconnected", "reconnect", "stream_silent",
                   "stream_recovered", "candle_revised", "candle_malformed", "backfill"):
        assert counts.get(needed, 0) >= 1, (needed, counts)
    assert counts["stream_disconnected"] >= 3 and counts["stream_silent"] >= 2
    if kind == "trades":  # (ccxt's candle cache absorbs a repeated or reordered snapshot)
        assert counts.get("candle_duplicate", 0) >= 1
        assert counts.get("candle_incomplete", 0) >= 3  # each reconnection cut a candle
    messages = " ".join(events["message"])
    assert "no message for" in messages and "after it was handed on" in messages
    assert trader.event_counts["stream_disconnected"] == counts["stream_disconnected"]
    stats = feed.stats()
    assert stats["candles_stream"] + stats["candles_rest"] == len(bars)
    assert stats["candles_stream"] > stats["candles_rest"] > 0

    # 5. both symbols on one connection (one SUBSCRIBE for both streams per connection)
    streams = {"ohlcv": "@kline_30m", "trades": "@trade"}[kind]
    assert ws.subscriptions[0] == [f"{market(s).lower()}{streams}" for s in SYMBOLS]
    assert ws.connections_opened == len(ws.subscriptions) == counts["stream_disconnected"] + 1

    # 6. the candle store: what was traded, with the exchange's revision of candle 12
    for symbol in SYMBOLS:
        stored = store.read(SeriesId("binance", symbol, "30m"))
        expected = window[symbol].reset_index(drop=True)[stored.columns].copy()
        if symbol == SYMBOLS[0]:
            i = int(np.flatnonzero(expected["timestamp"] == FIRST + 12 * pd.Timedelta("30min"))[0])
            expected.loc[i, "volume"] *= 1.5
        pd.testing.assert_frame_equal(stored, expected, check_exact=True)


@pytest.mark.timeout(120)
def test_second_symbol_of_a_burst_is_read_from_ccxt_cache(tmp_path):
    """ccxt.pro's ``watch_ohlcv_for_symbols`` returns the updates of the symbol whose message
    resolved its race of futures; another symbol's message in the same burst resolves nothing
    awaited, and its update surfaces only with that symbol's next message (for a candle's last
    snapshot: never before the candle is over). Reading ccxt's caches after each wake-up (what
    the feed does) sees every candle's final values."""
    import asyncio

    frames = bundled()
    with running_exchange(frames, FIRST, 12) as ex:
        source = ex.connect()()
        pairs = [[s, "30m"] for s in SYMBOLS]

        async def run() -> tuple[dict, dict]:
            returned, cached = {}, {}
            await source.load_markets()
            raw = source._exchange  # noqa: SLF001 - to compare with ccxt's own return value
            task = asyncio.ensure_future(raw.watch_ohlcv_for_symbols(pairs))
            await asyncio.sleep(0.2)
            ex.ws.play()
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                done, _ = await asyncio.wait({task}, timeout=deadline - time.monotonic())
                if not done:
                    break
                for symbol, by_tf in task.result().items():
                    returned |= {(symbol, row[0]): tuple(row[1:]) for row in by_tf["30m"]}
                for symbol in SYMBOLS:
                    cached |= {(symbol, row[0]): tuple(row[1:])
                               for row in source.candle_updates(symbol, "30m").rows}
                task = asyncio.ensure_future(raw.watch_ohlcv_for_symbols(pairs))
            task.cancel()
            await source.close()
            return returned, cached

        returned, cached = asyncio.run(run())
        expected = {(s, b.ts // 1_000_000): tuple(b[1:]) for s in SYMBOLS
                    for b in ex.expected(s)[:10]}
    assert {k: cached.get(k) for k in expected} == expected
    wrong = sum(returned.get(k) != v for k, v in expected.items())
    print(f"from ccxt's return values, {wrong} of {len(expected)} candles had stale values")


@pytest.mark.timeout(120)
def test_a_burst_of_thousands_of_trades_does_not_wedge_the_connection():
    """ccxt.pro's hand-drain of aiohttp's queue leaks its size accounting until aiohttp stops
    reading for good (about 4,200 burst messages with ccxt 4.5.64 / aiohttp 3.14.5); the
    adapter's clients read one message at a time, so every trade of a 6,392-trade burst
    arrives (without them, 3,383 did)."""
    import asyncio

    frames = bundled()
    n = 800
    with running_exchange(frames, FIRST, n, candle_wall_s=0.0005) as ex:
        source = ex.connect()()
        expected = 4 * sum(len(ex.expected(s)) for s in SYMBOLS)

        async def run() -> int:
            await source.load_markets()
            count = 0
            task = asyncio.ensure_future(source.wait_trades(list(SYMBOLS)))
            await asyncio.sleep(0.3)
            ex.ws.play()
            while count < expected:
                done, _ = await asyncio.wait({task}, timeout=5)
                if not done:
                    break
                count += sum(len(r.rows) for _, r in source.trade_reads(list(SYMBOLS)))
                task = asyncio.ensure_future(source.wait_trades(list(SYMBOLS)))
            task.cancel()
            await source.close()
            return count

        count = asyncio.run(run())
        sent = ex.ws.sent["trade"]
    assert count == sent == expected > 6000


@pytest.mark.timeout(120)
def test_rest_down_during_a_reconnection_leaves_a_reported_gap(tmp_path):
    """Candle stream, a disconnect just before candle 6 closes (its last snapshots are lost:
    the stream cannot hand it on) and the REST API failing from then on: the backfill fails
    and is retried, then after ``backfill_give_up_s`` the candle becomes a gap and trading
    goes on with the stream's next candles (nothing waits forever for a candle no one can
    provide), all of them the stored candles."""
    from fake_binance import Fault

    frames = bundled()
    n = 16
    end = FIRST + n * pd.Timedelta("30min")
    scripts = series_scripts(frames, FIRST, end)
    cfg = _trade_config(tmp_path, "gap", feed="stream")
    with running_exchange(frames, FIRST, n, [StreamFault(6, "disconnect", at=0.97)]) as ex:
        feed = stream_feed(ex, stream_config("ohlcv", backfill_give_up_s=3 * 1800.0,
                                             backfill_retries=1, reconnect_base_s=0.05))
        trader, _ = _trader(cfg, feed, scripts)  # primes over REST first
        served = ex.rest_fake.klines_served
        ex.rest_fake.faults.update({i: Fault("http", status=503)
                                    for i in range(served, served + 100_000)})
        feed.start()
        ex.wait_subscribed()
        ex.ws.play()
        timer = guard(60, trader.stop)
        summary = trader.run(max_ticks=9)
        timer.cancel()
        feed.close()
        with trader._tx():  # noqa: SLF001
            pass
    assert summary.status == "max_ticks", summary
    counts = trader.store.event_counts()
    events = trader.store.frame("events")
    assert counts.get("backfill_failed", 0) >= 2 and "backfill" not in counts
    given_up = events[events["kind"] == "gap_unfilled"]
    assert len(given_up) >= 2  # candle 6 of both symbols at least
    bars = trader.store.frame("bars")
    lost = int((FIRST + 6 * pd.Timedelta("30min")).value)
    assert lost not in set(bars["ts"]) and set(given_up["ts"]).isdisjoint(set(bars["ts"]))
    assert (bars["ts"] > lost).sum() >= 2  # traded on after the gap
    for symbol in SYMBOLS:
        stored = {b.ts: tuple(b[1:]) for b in bars_from_frame(frames[symbol])}
        mine = bars[bars["symbol"] == symbol]
        assert all(stored[t] == (o, h, lo, c, v) for t, o, h, lo, c, v in mine[
            ["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False))
    assert counts.get("gap", 0) >= 2  # the trader saw the hole
