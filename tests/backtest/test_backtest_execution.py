"""Fills: next-open timing, no look-ahead, costs, partial fills, funding, stop-before-target."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from candlecast.backtest import (
    BacktestConfig,
    CostConfig,
    CostModel,
    run_event_driven,
    run_vectorized,
)
from candlecast.risk import ExitConfig, LimitsConfig, RiskConfig, SizingConfig


def bars(opens, highs=None, lows=None, closes=None, volume=1e9, start="2024-03-04"):
    """A candle table from explicit prices (high/low default to max/min of open and close)."""
    o = np.asarray(opens, dtype=float)
    c = np.asarray(closes if closes is not None else o, dtype=float)
    h = np.asarray(highs if highs is not None else np.maximum(o, c), dtype=float)
    lo = np.asarray(lows if lows is not None else np.minimum(o, c), dtype=float)
    return pd.DataFrame({
        "timestamp": pd.date_range(start, periods=len(o), freq="1h", tz="UTC"),
        "open": o, "high": h, "low": lo, "close": c,
        "volume": np.broadcast_to(np.asarray(volume, dtype=float), o.shape).copy(),
        "symbol": "TST/USD", "timeframe": "1h",
    })


def test_cost_model_hand_numbers():
    model = CostModel(CostConfig(taker_fee_bps=10, maker_fee_bps=2, spread_bps=4,
                                 slippage_bps=1, impact_bps=100, max_participation=None))
    qty, price, fee, slip = model.taker(1, 25.0, 100.0, volume=100.0)
    # half spread 2 + slippage 1 + impact 100 * sqrt(0.25) = 50 -> 53 bps
    assert price == pytest.approx(100.0 * 1.0053)
    assert fee == pytest.approx(25 * price * 0.001)
    assert slip == pytest.approx(25 * 100.0 * 0.0053)
    qty, price, fee, slip = model.taker(-1, 25.0, 100.0, volume=100.0)
    assert price == pytest.approx(100.0 * (1 - 0.0053))
    assert model.maker(5.0, 110.0, 100.0) == (5.0, 110.0, pytest.approx(5 * 110 * 0.0002), 0.0)
    capped = CostModel(CostConfig(max_participation=0.1))
    assert capped.taker(1, 50.0, 100.0, volume=200.0)[0] == pytest.approx(20.0)
    assert capped.taker(1, 50.0, 100.0, volume=0.0)[0] == 0.0


def test_a_signal_at_t_fills_at_the_open_of_t_plus_1():
    c = bars([100, 101, 105, 107, 104, 103], closes=[100.5, 102, 106, 106.5, 103.5, 103])
    sig = np.array([0, 1, 1, 0, 0, 0])
    zero = CostConfig.zero()
    for result in (run_vectorized(c, sig, zero),
                   run_event_driven(c, sig, RiskConfig.plain(), zero)):
        fills = result.fills
        assert fills["bar"].tolist() == [2, 4]  # decided at closes 1 and 3
        assert fills["price"].tolist() == [105.0, 104.0]  # the opens of bars 2 and 4
        qty = 10_000 / 105.0  # sized from the close-1 equity, converted at the fill price
        assert fills["qty"].iloc[0] == pytest.approx(qty)
        assert result.equity[1] == 10_000  # nothing held at bar 1's close
        assert result.final_equity == pytest.approx(10_000 + qty * (104 - 105))


def test_no_look_ahead_changing_bar_t_plus_1_does_not_change_the_decision_at_t(btc_1h):
    c = btc_1h.sort_values("timestamp").reset_index(drop=True).iloc[:3000].copy()
    close = c["close"].to_numpy()
    sig = np.where(pd.Series(close).rolling(5).mean() > pd.Series(close).rolling(20).mean(), 1, 0)
    first = int(np.flatnonzero(np.diff(sig) != 0)[0] + 1)  # a decision bar
    base = run_event_driven(c, sig, RiskConfig(), atr=np.full(len(c), 50.0))
    changed = c.copy()
    changed.loc[first + 1, ["high", "close"]] *= 1.2  # the next bar's close and high jump
    after = run_event_driven(changed, sig, RiskConfig(), atr=np.full(len(c), 50.0))
    d0, d1 = base.decisions, after.decisions
    assert d0[d0["bar"] <= first].equals(d1[d1["bar"] <= first])
    f0, f1 = base.fills, after.fills
    assert f0[f0["bar"] <= first + 1].equals(f1[f1["bar"] <= first + 1])  # same fill at t+1
    assert not f0.equals(f1)  # and the change does matter later


def test_costs_reduce_pnl_monotonically(btc_1h):
    c = btc_1h.sort_values("timestamp").reset_index(drop=True)
    close = c["close"].to_numpy()
    sig = np.where(pd.Series(close).rolling(10).mean() > pd.Series(close).rolling(30).mean(), 1, -1)
    levels = [CostConfig.zero(), CostConfig.commission_only(5), CostConfig.commission_only(10),
              CostConfig(), CostConfig(spread_bps=10, slippage_bps=5, impact_bps=200),
              CostConfig(taker_fee_bps=30, spread_bps=10, slippage_bps=5, impact_bps=200)]
    finals = [run_vectorized(c, sig, costs).final_equity for costs in levels]
    assert all(a > b for a, b in zip(finals, finals[1:], strict=False)), finals
    # (money paid need not grow: higher costs shrink the account that pays them)
    paid = [run_vectorized(c, sig, costs).costs["total"] for costs in levels]
    assert paid[0] == 0 and all(p > 0 for p in paid[1:])


def test_partial_fills_when_volume_is_insufficient():
    # 10,000 equity at price 100 wants 100 units; each bar trades 300 units, cap 10% -> 30/bar
    c = bars([100] * 8, volume=300.0)
    sig = np.array([1, 1, 1, 1, 1, 1, 1, 1])
    costs = CostConfig(taker_fee_bps=0, spread_bps=0, slippage_bps=0, impact_bps=0,
                       max_participation=0.1)
    for result in (run_vectorized(c, sig, costs),
                   run_event_driven(c, sig, RiskConfig.plain(), costs)):
        assert result.fills["bar"].tolist() == [1, 2, 3, 4]
        assert result.fills["qty"].tolist() == pytest.approx([30, 30, 30, 10])
        assert result.position.tolist() == pytest.approx([0, 30, 60, 90, 100, 100, 100, 100])
        assert len(result.trades) == 1 and result.trades["qty"].iloc[0] == pytest.approx(100)
    zero_volume = bars([100] * 4, volume=[1000, 0, 0, 1000])
    res = run_vectorized(zero_volume, np.ones(4), costs)
    assert res.fills["bar"].tolist() == [3]  # nothing can fill on bars without volume


def test_funding_is_paid_by_longs_and_received_by_shorts():
    c = bars([100] * 10)
    costs = CostConfig(taker_fee_bps=0, spread_bps=0, slippage_bps=0, impact_bps=0,
                       max_participation=None, funding_rate_8h=0.0008)  # 1 bp per hour
    long_ = run_vectorized(c, np.ones(10), costs)
    short = run_vectorized(c, -np.ones(10), costs)
    held = 9  # closes of bars 1..9 with the position on
    assert long_.costs["funding"] == pytest.approx(10_000 * 0.0001 * held)
    assert short.costs["funding"] == pytest.approx(-10_000 * 0.0001 * held)
    assert long_.final_equity < 10_000 < short.final_equity
    event = run_event_driven(c, np.ones(10), RiskConfig.plain(), costs)
    assert event.final_equity == pytest.approx(long_.final_equity, rel=1e-12)


def test_a_bar_touching_stop_and_target_exits_at_the_stop():
    risk = RiskConfig(sizing=SizingConfig(method="fixed_notional"),
                      exits=ExitConfig(stop_loss_pct=0.05, stop_atr_multiple=None,
                                       take_profit_pct=0.05, chandelier_atr_multiple=None,
                                       breakeven_trigger_r=None),
                      limits=LimitsConfig(max_daily_loss=None, max_drawdown=None))
    # entry at the open of bar 1 (100); bar 2 spans 94..106: both levels touched
    c = bars([100, 100, 100, 100], highs=[100, 100, 106, 100], lows=[100, 100, 94, 100])
    res = run_event_driven(c, np.array([1, 1, 1, 1]), risk, CostConfig.zero())
    trade = res.trades.iloc[0]
    assert (trade["exit_reason"], trade["exit_bar"]) == ("stop_loss", 2)
    assert trade["exit_price"] == pytest.approx(95.0)
    # only the target touched -> take profit at its level (maker fill)
    c2 = bars([100, 100, 100, 100], highs=[100, 100, 106, 100], lows=[100, 100, 99, 100])
    trade = run_event_driven(c2, np.ones(4), risk, CostConfig.zero()).trades.iloc[0]
    assert (trade["exit_reason"], trade["exit_price"]) == ("take_profit", pytest.approx(105.0))
    # a gap through the stop fills at the (worse) open, with costs on top
    c3 = bars([100, 100, 90, 90], highs=[100, 100, 91, 90], lows=[100, 100, 89, 90])
    costs = CostConfig.commission_only(10)
    trade = run_event_driven(c3, np.ones(4), risk, costs).trades.iloc[0]
    assert trade["exit_price"] == pytest.approx(90.0) and trade["exit_reason"] == "stop_loss"
    assert trade["pnl"] < trade["gross_pnl"]


def test_shorts_and_reversals(candle_factory):
    c = candle_factory(300, seed=4)
    sig = np.where(np.arange(300) % 50 < 25, 1, -1)
    res = run_vectorized(c, sig, CostConfig.commission_only(10))
    assert set(res.trades["side"]) == {1, -1}
    assert (res.trades["exit_reason"].iloc[:-1] == "signal_reverse").all()
    long_only = run_vectorized(c, sig, CostConfig.commission_only(10),
                               BacktestConfig(allow_short=False))
    assert set(long_only.trades["side"]) == {1} and (long_only.position >= 0).all()
    # the net PnL of all trades is the change in equity
    assert res.trades["pnl"].sum() == pytest.approx(res.final_equity - 10_000, rel=1e-9)
    assert math.isclose(res.costs["fees"], res.fills["fee"].sum())
