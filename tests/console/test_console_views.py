"""The console's pure views, by hand: numbers in, numbers out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from candlecast.console import views
from candlecast.console.messages import alert_text, positions_text, profit_text, status_text

NS = 10**9
STEP = 30 * 60 * NS
T0 = int(pd.Timestamp("2019-08-01", tz="UTC").value)


def ticks_of(equity):
    return pd.DataFrame({"seq": np.arange(len(equity)), "ts": T0 + STEP * np.arange(len(equity)),
                         "cash": equity, "funding_paid": 0.0, "equity": equity})


def test_equity_curve_and_drawdown_by_hand():
    curve = views.equity_curve(ticks_of([100.0, 110.0, 99.0, 121.0]), max_points=10)
    assert curve["equity"] == [100.0, 110.0, 99.0, 121.0]
    assert curve["drawdown"] == pytest.approx([0.0, 0.0, -0.1, 0.0])
    assert curve["time"][0] == "2019-08-01T00:00:00+00:00" and not curve["thinned"]


def test_thinning_keeps_the_ends_and_the_deepest_drawdown():
    equity = 100.0 + np.sin(np.arange(10_000) / 50.0)
    equity[7777] = 50.0  # a crash between the evenly spaced points
    curve = views.equity_curve(ticks_of(equity), max_points=100)
    assert curve["thinned"] and curve["points_total"] == 10_000
    assert len(curve["equity"]) <= 101
    assert curve["equity"][0] == equity[0] and curve["equity"][-1] == equity[-1]
    assert min(curve["drawdown"]) == pytest.approx(50.0 / equity[:7777].max() - 1.0)


def test_positions_unrealized_pnl_by_hand():
    books = {"BTC/USD": {"pos": -0.5, "last_close": 9000.0, "pending": False, "reason": ""},
             "ETH/USD": {"pos": 0.0, "last_close": 200.0}}
    risk = {"positions": {"BTC/USD": {"entry_price": 10_000.0, "stop": 10_400.0,
                                      "stop_reason": "stop_loss", "target": None}}}
    rows = views.positions(["BTC/USD", "ETH/USD"], books, risk)
    btc, eth = rows
    assert btc["side"] == "short" and btc["qty"] == -0.5 and btc["entry"] == 10_000.0
    assert btc["unrealized_pnl"] == pytest.approx(500.0)  # short 0.5 from 10,000 to 9,000
    assert btc["unrealized_pct"] == pytest.approx(0.1)
    assert btc["stop"] == 10_400.0
    assert eth == {**eth, "side": "flat", "qty": 0.0, "entry": None, "unrealized_pnl": None,
                   "target_position": None, "policy_reason": None}
    books["BTC/USD"] |= {"target_position": -0.45, "policy_reason": "hold", "pending": True,
                         "order_style": "limit"}
    (btc, _eth) = views.positions(["BTC/USD", "ETH/USD"], books, risk)
    assert btc["target_position"] == -0.45 and btc["policy_reason"] == "hold"
    assert btc["working_order"] and btc["order_style"] == "limit"


def test_profit_splits_realized_and_unrealized():
    fills = pd.DataFrame({"fee": [1.0, 2.0], "slippage": [0.5, 0.25]})
    rows = [{"unrealized_pnl": 30.0}, {"unrealized_pnl": None}]
    out = views.profit(ticks_of([1000.0, 980.0, 1050.0]), fills, rows)
    assert out["pnl"] == pytest.approx(50.0) and out["unrealized_pnl"] == 30.0
    assert out["realized_pnl"] == pytest.approx(20.0)
    assert out["fees"] == 3.0 and out["fills"] == 2
    assert out["max_drawdown"] == pytest.approx(-0.02)


def test_backtest_comparison_same_period_by_hand():
    ticks = ticks_of([1000.0, 1010.0, 1020.0, 1100.0])  # paper: +10%
    # the backtest curve starts earlier (one bar before the paper session) and is thinned
    curve = pd.DataFrame({
        "step": [0, 1, 3, 4, 10],
        "timestamp": [pd.Timestamp(T0 + k * STEP, unit="ns", tz="UTC").isoformat()
                      for k in (-1, 0, 2, 3, 9)],
        "ensemble": [500.0, 2000.0, 2040.0, 2100.0, 9999.0],
        "buy_and_hold": 1.0})
    out = views.backtest_comparison(ticks, {"x:BTC/USD:30m": curve}, "ensemble")
    assert out["available"]
    assert out["backtest"]["return"] == pytest.approx([0.0, 0.02, 0.05])  # from 2,000
    assert out["paper_return"] == pytest.approx(0.10)
    assert out["backtest_return"] == pytest.approx(0.05)
    assert out["difference"] == pytest.approx(0.05)  # at the last backtest point: 10% - 5%
    assert out["max_abs_gap"] == pytest.approx(0.05)


def test_backtest_comparison_says_why_not():
    ticks = ticks_of([1000.0, 1001.0])
    later = pd.DataFrame({"timestamp": ["2020-01-01T00:00:00Z"], "ensemble": [1.0]})
    out = views.backtest_comparison(ticks, {"k": later}, "ensemble")
    assert not out["available"] and "does not cover the paper period" in out["reason"]
    out = views.backtest_comparison(ticks, {"k": later}, "policy")
    assert not out["available"] and "no strategy 'policy'" in out["reason"]
    assert not views.backtest_comparison(ticks.iloc[:0], {}, "ensemble")["available"]


def test_status_states():
    flags = {"paused": False, "kill_switch": False, "kill_reason": None}
    assert views.trader_status({"killed": False}, {}, flags, None)["state"] == "trading"
    assert views.trader_status({"killed": False}, {}, flags, None, idle=True)["state"] == "idle"
    assert views.trader_status({"killed": False}, {}, {**flags, "paused": True},
                               None)["state"] == "paused"
    assert views.trader_status({"killed": False}, {"drawdown_halted": True}, flags,
                               None)["state"] == "halted"
    assert views.trader_status({"killed": False}, {"day": 5, "halted_until_day": 5}, flags,
                               None)["state"] == "halted"
    assert views.trader_status({"killed": False}, {}, {**flags, "kill_switch": True},
                               None)["state"] == "kill requested"
    killed = views.trader_status({"killed": True, "kill_reason": "x"}, {}, flags, T0)
    assert killed["state"] == "killed" and killed["last_candle"] == "2019-08-01T00:00:00+00:00"


def test_signal_rows_feature_time_is_the_fresh_candles_close():
    latest = {"BTC/USD": {"ts": T0 + STEP, "signal_status": "unavailable", "signal_action": "",
                          "model_version": ""}}
    fresh = {"BTC/USD": {"ts": T0, "signal_status": "ok", "signal_action": "long",
                         "model_version": "7"}}
    (row,) = views.signal_rows(["BTC/USD"], latest, fresh, STEP)
    assert row["status"] == "unavailable" and row["action"] is None
    assert row["fresh_action"] == "long" and row["fresh_model_version"] == "7"
    assert row["feature_timestamp"] == "2019-08-01T00:30:00+00:00"
    assert row["target_position"] is None and row["fresh_target_position"] is None  # old file
    # the target contract: the policy's target (fraction of equity) and reason per candle
    latest["BTC/USD"] |= {"target_position": math.nan, "policy_reason": ""}
    fresh["BTC/USD"] |= {"target_position": -0.35, "policy_reason": "enter_short"}
    (row,) = views.signal_rows(["BTC/USD"], latest, fresh, STEP)
    assert row["target_position"] is None and row["policy_reason"] is None
    assert row["fresh_target_position"] == -0.35
    assert row["fresh_policy_reason"] == "enter_short"


def test_decision_counts_cover_every_decision():
    decisions = pd.DataFrame({"action": ["enter", "reject", "reject", "exit"],
                              "reason": ["signal_entry", "max_trades", "max_trades", "stop_loss"]})
    counts = views.decision_counts(decisions)
    assert counts[0] == {"action": "reject", "reason": "max_trades", "count": 2}
    assert sum(c["count"] for c in counts) == 4


def test_clean_makes_json_safe_values():
    assert views.clean({"a": math.nan, "b": [np.float64(1.5), np.inf], "c": np.int64(3)}) == {
        "a": None, "b": [1.5, None], "c": 3}


def test_chat_texts():
    trader = {"available": True, "mode": "paper", "exchange": "bitfinex", "symbols": ["BTC/USD"],
              "timeframe": "30m", "candles_processed": 3, "orders": [],
              "status": {"state": "paused", "killed": False, "last_candle": "t",
                         "signal_failures": 2},
              "summary": {"equity": 10_500.0, "return": 0.05, "drawdown": -0.01},
              "positions": [{"symbol": "BTC/USD", "side": "long", "qty": 0.25, "entry": 8000.0,
                             "stop": 7800.0, "last_close": 8100.0, "unrealized_pnl": 25.0,
                             "unrealized_pct": 0.0125}],
              "profit": {"pnl": 500.0, "return": 0.05, "realized_pnl": 475.0,
                         "unrealized_pnl": 25.0, "fees": 3.0, "fills": 4,
                         "max_drawdown": -0.02}}
    registry = {"available": True, "model": "candlecast-ensemble", "champion": {"version": "2"}}
    status = status_text(trader, registry)
    assert "state: paused" in status and "equity 10,500.00 (+5.00%)" in status
    assert "no fresh signal for 2 candle(s)" in status and "candlecast-ensemble v2" in status
    assert positions_text(trader) == ("BTC/USD long 0.25 @ 8,000.00, stop 7,800.00, last "
                                      "8,100.00, unrealized 25.00 (+1.25%)")
    trader["positions"][0] |= {"target_position": 0.2025, "policy_reason": "hold"}
    assert positions_text(trader).endswith("(+1.25%); policy target +0.2025 (hold)")
    assert profit_text(trader).startswith("PnL 500.00 (+5.00%)")
    assert alert_text({"event": "trade_fill", "message": "m"}) == "💱 trade_fill: m"
    assert len(alert_text({"event": "x", "message": "y" * 10_000})) <= 4000
