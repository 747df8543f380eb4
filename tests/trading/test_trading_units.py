"""Pieces of the trader: candle checks, the signal contract, ids, config, state store, feed."""

from __future__ import annotations

import json
import math
import sqlite3

import pandas as pd
import pytest

from candlecast.backtest.config import ExecutionConfig
from candlecast.trading import (
    END,
    IDLE,
    Bar,
    ReplayFeed,
    SignalUnavailable,
    StateLockedError,
    StateStore,
    SymbolBook,
    TradeConfig,
    check_bar,
    client_order_id,
    parse_signal,
)
from candlecast.trading.book import working_order_view

STEP = 1_800_000_000_000  # 30m in ns
T0 = int(pd.Timestamp("2024-03-01", tz="UTC").value)


@pytest.mark.parametrize(
    ("bar", "rule"),
    [
        (Bar(T0 + STEP, 10.0, 11.0, 9.0, 10.5, 1.0), ""),
        (Bar(T0 + STEP, -1.0, 11.0, 9.0, 10.5, 1.0), "positive_prices"),
        (Bar(T0 + STEP, 10.0, math.nan, 9.0, 10.5, 1.0), "positive_prices"),
        (Bar(T0 + STEP, 10.0, 10.2, 9.0, 10.5, 1.0), "ohlc_consistent"),  # close > high
        (Bar(T0 + STEP, 10.0, 11.0, 10.1, 10.5, 1.0), "ohlc_consistent"),  # open < low
        (Bar(T0 + STEP, 10.0, 11.0, 9.0, 10.5, -1.0), "volume_non_negative"),
        (Bar(T0 + STEP + 60_000_000_000, 10.0, 11.0, 9.0, 10.5, 1.0), "timestamp_on_grid"),
        (Bar(T0, 10.0, 11.0, 9.0, 10.5, 1.0), "timestamp_unique"),
        (Bar(T0 - STEP, 10.0, 11.0, 9.0, 10.5, 1.0), "timestamp_increasing"),
    ],
)
def test_check_bar_rules(bar, rule):
    verdict = check_bar(bar, T0, STEP)
    assert verdict.ok is (rule == "")
    assert verdict.rule == rule
    if rule:
        assert pd.Timestamp(bar.ts, tz="UTC").isoformat()[:10] in verdict.reason


def test_check_bar_gap_is_ok_but_counted():
    verdict = check_bar(Bar(T0 + 4 * STEP, 10.0, 11.0, 9.0, 10.5, 1.0), T0, STEP)
    assert verdict.ok and verdict.rule == "gap" and verdict.missing == 3


GOOD = {"status": "ok", "prob_up": 0.61, "quantiles": {"q0.1": -0.01, "q0.9": 0.02},
        "confidence": 0.3, "disagreement": 0.05, "action": "long", "size_fraction": 0.5,
        "stop_price": 95.0, "take_profit": None, "model_version": "m7",
        "feature_timestamp": "2024-03-01T00:30:00Z", "target_position": 0.42,
        "policy": {"reason": "enter_long", "edge": 0.004, "entry_threshold": 0.0024,
                   "exit_threshold": 0.0, "size": 0.42, "horizon": 16,
                   "label": "h16-in1.00-out0.00-hold2-vol0.5-lo-ll2/3m"},
        "execution": {"entry": "limit", "exit": "limit", "limit_offset_bps": 2.0,
                      "expire_bars": 3, "on_expire": "market"},
        "forecasts": {"4": {"prob_up": 0.55, "expected_return": 0.001},
                      "16": {"prob_up": 0.61, "expected_return": 0.004}},
        "volatility": 0.0041}


def test_parse_signal_and_freshness():
    sig = parse_signal(GOOD)
    assert sig.side == 1 and sig.prob_up == 0.61 and math.isnan(sig.take_profit)
    assert sig.quantiles == {"q0.1": -0.01, "q0.9": 0.02}
    assert sig.has_target and sig.target_position == 0.42 and sig.reason == "enter_long"
    assert sig.policy.horizon == 16 and sig.policy.edge == 0.004
    assert sig.execution == ExecutionConfig(entry="limit", exit="limit", limit_offset_bps=2.0,
                                            expire_bars=3, on_expire="market")
    assert sig.forecasts[16].expected_return == 0.004 and sig.forecasts[4].prob_up == 0.55
    assert sig.volatility == 0.0041
    assert parse_signal(sig.to_dict()) == sig  # the contract round-trips
    close = pd.Timestamp(T0 + STEP, tz="UTC")
    assert sig.is_fresh(close)
    assert not sig.is_fresh(close + pd.Timedelta(minutes=30))  # an older candle's features
    assert sig.is_fresh(close + pd.Timedelta(minutes=30), max_lag_s=1800)
    assert not sig.is_fresh(close - pd.Timedelta(minutes=30))  # from the future: never
    assert not parse_signal({**GOOD, "status": "stale"}).is_fresh(close)
    assert not parse_signal({**GOOD, "feature_timestamp": None}).is_fresh(close)
    # a service older than the target contract: parsed, but no target and market execution
    old = {k: v for k, v in GOOD.items() if k not in ("target_position", "policy", "execution",
                                                      "forecasts", "volatility")}
    legacy = parse_signal(old)
    assert not legacy.has_target and legacy.execution == ExecutionConfig()
    flat = parse_signal({**GOOD, "action": "flat", "target_position": 0.0})
    assert flat.side == 0 and flat.has_target


@pytest.mark.parametrize(
    "change",
    [{"action": "buy"}, {"status": "great"}, {"prob_up": "high"}, {"prob_up": 1.5},
     {"quantiles": [1, 2]}, {"feature_timestamp": "yesterday-ish"}, {"confidence": True},
     {"target_position": 1.5}, {"target_position": "half"}, {"action": "short"},
     {"action": "flat"}, {"policy": {"edge": 0.1}}, {"policy": "enter"},
     {"policy": {"reason": "x", "horizon": 1.5}},
     {"execution": {"entry": "stop"}}, {"execution": {"expire_bars": 0}},
     {"execution": {"entry": "limit", "postOnly": True}}, {"forecasts": {"soon": {}}},
     {"forecasts": {"4": 0.1}}, {"forecasts": [1]}, {"volatility": "low"}],
)
def test_parse_signal_rejects_malformed(change):
    with pytest.raises(SignalUnavailable) as info:
        parse_signal({**GOOD, **change})
    assert info.value.kind == "malformed"


def test_book_round_trip_and_working_order_view():
    book = SymbolBook("BTC/USD", pos=0.5, bars=12, entry_bar=9, last_close=100.0)
    book.set_order(0.8, None, "target:rebalance", "cc-1", True, atr=2.0, style="limit",
                   limit=99.9, last_bar=14, on_expire="market")
    raw = json.loads(json.dumps(book.to_dict()))  # as the state store keeps it
    restored = SymbolBook.from_dict(raw)
    assert restored == book
    assert book.bars_held() == 3 and book.goal(100.0) == 0.8
    view = working_order_view(raw)
    assert view["style"] == "limit" and view["limit_price"] == 99.9 and view["side"] == "buy"
    assert view["bars_left"] == 3 and view["on_expire"] == "market"
    assert view["remaining"] == pytest.approx(0.3)
    flat = SymbolBook("ETH/USD")
    assert working_order_view(flat.to_dict()) is None and math.isnan(flat.target_position)
    entry = SymbolBook("ETH/USD")
    entry.set_order(0.0, -500.0, "target:enter_short", "cc-2", True)
    view = working_order_view(entry.to_dict())
    assert view["style"] == "market" and view["side"] == "sell" and view["bars_left"] is None
    assert view["remaining"] is None and view["budget"] == -500.0
    assert entry.goal(100.0) == -5.0
    old = {**flat.to_dict(), "last_sig": 1}  # a key of the signal trader's books
    del old["order_style"]
    assert SymbolBook.from_dict(old).order_style == "market"


def test_state_store_adds_new_journal_columns_to_an_old_file(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE bars (symbol TEXT, ts INTEGER, open REAL, high REAL, low REAL, "
            "close REAL, volume REAL, position REAL, signal_action TEXT, signal_status TEXT, "
            "model_version TEXT, PRIMARY KEY (symbol, ts));"
            "INSERT INTO bars VALUES ('BTC/USD', 1, 1, 1, 1, 1, 1, 0, 'flat', 'ok', 'm1');")
    with StateStore(path) as store:
        with store.transaction():
            store.add_bar("BTC/USD", 2, (1.0, 2.0, 0.5, 1.5, 3.0), 0.1, "long", "ok", "m2",
                          0.25, "enter_long")
            store.add_bar("BTC/USD", 3, (1.0, 2.0, 0.5, 1.5, 3.0), 0.1, "", "paused", "")
        bars = store.frame("bars")
        assert list(bars["target_position"].iloc[1:2]) == [0.25]
        assert bars["target_position"].iloc[[0, 2]].isna().all()
        assert list(bars["policy_reason"].fillna("")) == ["", "enter_long", ""]
        assert {"style", "limit_price"} <= set(store.frame("orders").columns)


def test_client_order_id_is_deterministic_and_exchange_safe():
    a = client_order_id("candlecast", "binance:BTC/USDT:1h", T0, "signal_entry:long")
    assert a == client_order_id("candlecast", "binance:BTC/USDT:1h", T0, "signal_entry:long")
    others = {client_order_id("candlecast", "binance:BTC/USDT:1h", T0 + STEP, "signal_entry:long"),
              client_order_id("candlecast", "binance:ETH/USDT:1h", T0, "signal_entry:long"),
              client_order_id("candlecast", "binance:BTC/USDT:1h", T0, "stop_loss:flat"),
              client_order_id("other", "binance:BTC/USDT:1h", T0, "signal_entry:long")}
    assert a not in others and len(others) == 4
    assert len(a) <= 36 and a.replace("-", "").replace("_", "").isalnum()


def test_trade_config_defaults_and_validation():
    cfg = TradeConfig()
    assert cfg.mode == "paper" and not cfg.is_live and cfg.series[0].key == "bitfinex:BTC/USD:30m"
    with pytest.raises(ValueError, match="explicit confirmation"):
        TradeConfig(mode="live").check_live_allowed()
    TradeConfig(mode="live", live_confirmed=True).check_live_allowed()
    for bad in ({"symbols": ()}, {"symbols": ("BTC/USD", "BTC/USD")}, {"timeframe": "1M"},
                {"service_url": "localhost:3000"}, {"signal_retries": -1}, {"nonsense": 1}):
        with pytest.raises(ValueError):
            TradeConfig(**bad)
    with pytest.raises(ValueError):
        cfg.mode = "live"  # type: ignore[misc]  # frozen


def test_state_store_transaction_rolls_back_and_locks(tmp_path):
    path = tmp_path / "s.db"
    with StateStore(path) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with store.transaction():
            store.put("a", {"x": 1})
        with pytest.raises(RuntimeError), store.transaction():
            store.put("a", {"x": 2})
            store.add_event("e", "m")
            raise RuntimeError("crash inside the candle")
        assert store.get("a") == {"x": 1} and store.frame("events").empty
        with pytest.raises(StateLockedError):
            StateStore(path)  # a second trader on the same state
        store.put_blob("f", {"buf": [1.0, math.nan], "n": None})
        blob = store.get_blob("f")
        assert blob["n"] is None and math.isnan(blob["buf"][1])
        evil = b"cos\nsystem\n(S'echo hi'\ntR."  # a pickle that would run code
        store.conn.execute("INSERT OR REPLACE INTO blobs VALUES ('evil', ?)",
                           (sqlite3.Binary(evil),))
        with pytest.raises(Exception, match="plain data"):
            store.get_blob("evil")
    StateStore(path).close()  # lock released


def _frame(n: int, start: int = T0) -> pd.DataFrame:
    ts = pd.to_datetime([start + i * STEP for i in range(n)], unit="ns", utc=True)
    return pd.DataFrame({"timestamp": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
                         "volume": 1.0})


def test_replay_feed_order_history_and_speed():
    a, b = _frame(10), _frame(6, T0 + 2 * STEP).drop(index=3)  # b starts later, has a hole
    clock = {"t": 0.0}
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock["t"] += s

    feed = ReplayFeed({"A": a, "B": b}, "30m", start=pd.Timestamp(T0 + 3 * STEP, tz="UTC"),
                      speed=1800.0, sleep=sleep, clock=lambda: clock["t"])
    assert [x.ts for x in feed.history("A", 2, None)] == [T0 + STEP, T0 + 2 * STEP]
    after: dict[str, int | None] = {"A": None, "B": None}
    seen = []
    while True:
        tick = feed.next_tick(after, wait_s=0.25)
        if tick == END:
            break
        if tick == IDLE:
            continue
        seen.append((tick.ts, sorted(tick.bars)))
        after.update({s: tick.ts for s in tick.bars})
    assert seen[0] == (T0 + 3 * STEP, ["A", "B"])
    assert (T0 + 5 * STEP, ["A"]) in seen  # B's hole
    assert len(seen) == 7 and seen[-1][0] == T0 + 9 * STEP
    # one candle per second of wall time (speed 1800 x 30m), waited in 0.25 s slices
    assert clock["t"] == pytest.approx(6.0) and max(slept) <= 0.25
