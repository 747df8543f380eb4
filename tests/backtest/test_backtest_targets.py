"""The target-position backtester: the policy's decisions through the shared fill rules and the
risk engine, with costs. Hand-made bars for the rules, seeded random walks for the properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from candlecast.backtest.config import BacktestConfig, CostConfig, ExecutionConfig
from candlecast.backtest.targets import TargetSeries, run_targets
from candlecast.policy import Policy, PolicyConfig, PolicyDecider
from candlecast.risk import RiskConfig

BPY = 8760.0  # hourly test bars


def bars(opens, highs=None, lows=None, closes=None, volume=1e9):
    o = np.asarray(opens, dtype=float)
    c = np.asarray(closes if closes is not None else o, dtype=float)
    h = np.asarray(highs if highs is not None else np.maximum(o, c), dtype=float)
    lo = np.asarray(lows if lows is not None else np.minimum(o, c), dtype=float)
    return pd.DataFrame({
        "timestamp": pd.date_range("2024-03-04", periods=len(o), freq="1h", tz="UTC"),
        "open": o, "high": h, "low": lo, "close": c,
        "volume": np.broadcast_to(np.asarray(volume, dtype=float), o.shape).copy(),
        "symbol": "TST/USD", "timeframe": "1h",
    })


def noisy_forecast(candles, horizon=4, ic_noise=3.0, seed=0):
    """A forecast of the next ``horizon`` log return with a lot of noise (IC ~ 0.3)."""
    close = candles["close"].to_numpy()
    fwd = np.full(len(close), np.nan)
    fwd[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    rng = np.random.default_rng(seed)
    er = fwd + rng.normal(0, ic_noise * np.nanstd(fwd), len(fwd))
    return np.nan_to_num(er / (1 + ic_noise ** 2), nan=0.0)


def policy(costs=None, **kw):
    return Policy(PolicyConfig(**kw), costs or CostConfig(), BPY)


def test_very_high_costs_never_trade(candle_factory):
    candles = candle_factory(3000, seed=1)
    costs = CostConfig(taker_fee_bps=500, maker_fee_bps=500, spread_bps=200)
    p = policy(costs, horizon=4, entry_margin=1.0, allow_short=True)
    for ex in (ExecutionConfig(), ExecutionConfig(entry="limit", exit="limit")):
        p = Policy(PolicyConfig(horizon=4, entry_margin=1.0, allow_short=True, execution=ex),
                   costs, BPY)
        decider = PolicyDecider(p, noisy_forecast(candles), np.full(3000, 0.01))
        result = run_targets(candles, decider, RiskConfig(), costs, BacktestConfig(), ex,
                             atr=np.full(3000, 1.0))
        assert len(result.fills) == 0
        assert result.final_equity == BacktestConfig().initial_equity


def test_zero_cost_perfect_forecast_captures_every_move(candle_factory):
    """Decided at close t (= open t+1 in these bars), filled at open t+1, the forecast is the
    next open-to-open move: always on the right side, fully invested, no cost -> equity grows
    by exactly (1 + |move|) per bar."""
    candles = candle_factory(400, seed=2)
    o, c = candles["open"].to_numpy(), candles["close"].to_numpy()
    assert (o[1:] == c[:-1]).all()  # the factory's bars open at the previous close
    move = np.full(len(o), np.nan)
    move[:-1] = c[1:] / c[:-1] - 1.0  # what the position decided at close t earns in bar t+1
    p = Policy(PolicyConfig(horizon=1, entry_margin=1.0, exit_margin=0.0, min_hold_bars=0,
                            vol_target=None, allow_short=True, min_change=0.0),
               CostConfig.zero(), BPY)
    result = run_targets(candles, PolicyDecider(p, np.nan_to_num(np.log1p(move)),
                                                np.full(len(o), 0.01)),
                         None, CostConfig.zero(), BacktestConfig())
    expected = 10_000.0 * np.prod(1.0 + np.abs(move[:-1]))
    assert result.equity[-1] == pytest.approx(expected, rel=1e-9)
    buy_hold = 10_000.0 * o[-1] / o[1]
    assert result.equity[-1] > 10 * buy_hold


def test_changing_future_bars_never_changes_todays_position(candle_factory):
    candles = candle_factory(2000, seed=3)
    er = noisy_forecast(candles, seed=3)
    vol = np.full(2000, 0.008)
    atr = (candles["high"] - candles["low"]).rolling(14, min_periods=1).mean().to_numpy()
    p = policy(horizon=4, entry_margin=0.5, allow_short=True)
    base = run_targets(candles, PolicyDecider(p, er, vol), RiskConfig(), CostConfig(),
                       BacktestConfig(), atr=atr)
    cut = 1200
    future = candles.copy()
    rng = np.random.default_rng(9)
    shock = np.exp(np.cumsum(rng.normal(0, 0.02, 2000 - cut)))
    for col in ("open", "high", "low", "close"):
        future.loc[cut:, col] = future.loc[cut:, col].to_numpy() * shock
    er2, atr2 = er.copy(), atr.copy()
    er2[cut:] = -er2[cut:]
    atr2[cut:] *= 3
    other = run_targets(future, PolicyDecider(p, er2, vol), RiskConfig(), CostConfig(),
                        BacktestConfig(), atr=atr2)
    # the decision at close cut-1 fills at open cut (changed): positions agree through cut-1
    np.testing.assert_array_equal(base.position[:cut], other.position[:cut])
    np.testing.assert_array_equal(base.equity[:cut], other.equity[:cut])
    before = base.decisions[base.decisions["bar"] < cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, other.decisions[other.decisions["bar"] < cut]
                                  .reset_index(drop=True))
    assert len(base.fills) > 20


def test_costs_reduce_pnl(candle_factory):
    candles = candle_factory(3000, seed=4)
    er, vol = noisy_forecast(candles, seed=4), np.full(3000, 0.008)
    p0 = policy(CostConfig.zero(), horizon=4, entry_margin=0.5, allow_short=True,
                vol_target=None, min_hold_bars=0)
    costs = CostConfig(impact_bps=0.0, max_participation=None)
    free = run_targets(candles, PolicyDecider(p0, er, vol), None, CostConfig.zero(),
                       BacktestConfig())
    paid = run_targets(candles, PolicyDecider(p0, er, vol), None, costs, BacktestConfig())
    assert len(free.fills) == len(paid.fills) > 50  # the same decisions...
    assert paid.final_equity < free.final_equity  # ...cost money
    assert paid.costs["total"] > 0


def test_no_engine_equals_the_plain_risk_engine(candle_factory):
    candles = candle_factory(3000, seed=5)
    er, vol = noisy_forecast(candles, seed=5), np.full(3000, 0.008)
    for ex in (ExecutionConfig(), ExecutionConfig(entry="limit", exit="limit", expire_bars=2,
                                                  on_expire="market")):
        p = Policy(PolicyConfig(horizon=4, entry_margin=0.5, allow_short=True, execution=ex),
                   CostConfig(), BPY)
        fast = run_targets(candles, PolicyDecider(p, er, vol), None, CostConfig(),
                           BacktestConfig(), ex)
        plain = run_targets(candles, PolicyDecider(p, er, vol), RiskConfig.plain(bars_per_year=BPY),
                            CostConfig(), BacktestConfig(), ex)
        # the engine sizes the same notional as qty = fraction x equity / price (1 ulp apart)
        np.testing.assert_allclose(fast.equity, plain.equity, rtol=1e-10)
        pd.testing.assert_frame_equal(fast.fills, plain.fills, rtol=1e-10)
        assert len(fast.fills) > 50


# ---------------------------------------------------------------- limit orders

LIMIT = ExecutionConfig(entry="limit", exit="limit", expire_bars=1, on_expire="cancel")


def _enter_once(n):
    """Target long 100 % from bar 0's close, nothing else."""
    return TargetSeries(np.r_[1.0, np.full(n - 1, np.nan)])


def test_a_touch_is_not_a_fill_trading_through_is():
    costs = CostConfig(max_participation=None)
    # decided at close 100 -> buy limit at 100; bar 1 touches 100 exactly, bar 2 trades below
    touch = bars([100, 101, 101], lows=[100, 100.0, 100.5], closes=[100, 101, 101])
    r = run_targets(touch, _enter_once(3), None, costs, BacktestConfig(), LIMIT)
    assert len(r.fills) == 0
    assert "expire" in set(r.decisions["action"])
    through = bars([100, 101, 101], lows=[100, 99.99, 100.5], closes=[100, 101, 101])
    r = run_targets(through, _enter_once(3), None, costs, BacktestConfig(), LIMIT)
    assert len(r.fills) == 1
    fill = r.fills.iloc[0]
    assert fill["price"] == 100.0 and fill["bar"] == 1
    assert fill["fee"] == pytest.approx(fill["qty"] * 100.0 * 2e-4)  # the maker fee
    assert fill["slippage"] == 0.0


def test_limit_offset_expiry_and_turn_to_market():
    costs = CostConfig(max_participation=None)
    ex = ExecutionConfig(entry="limit", limit_offset_bps=50, expire_bars=2, on_expire="market")
    # limit at 99.5: bars 1 and 2 stay above it, so it turns into a market order at open 3
    b = bars([100, 100, 100, 100.2, 100.2], lows=[100, 99.6, 99.5, 100, 100])
    r = run_targets(b, _enter_once(5), None, costs, BacktestConfig(), ex)
    assert list(r.fills["bar"]) == [3]
    assert r.fills["price"].iloc[0] > 100.2  # taker: above the open by half spread + slippage
    ex_cancel = ex.model_copy(update={"on_expire": "cancel"})
    r = run_targets(b, _enter_once(5), None, costs, BacktestConfig(), ex_cancel)
    assert len(r.fills) == 0


def test_limit_partial_fills_under_the_volume_cap():
    costs = CostConfig(max_participation=0.1)
    ex = ExecutionConfig(entry="limit", expire_bars=3, on_expire="cancel")
    # 10,000 of equity at 100 = ~100 units; 10 % of 300 units of volume = 30 per bar
    b = bars([100] * 6, lows=[100, 99, 99, 99, 99, 99], volume=300.0)
    r = run_targets(b, _enter_once(6), None, costs, BacktestConfig(), ex)
    assert list(r.fills["bar"]) == [1, 2, 3]
    assert r.fills["qty"].tolist() == pytest.approx([30.0, 30.0, 30.0])
    assert r.position[-1] == pytest.approx(90.0)  # the rest expired


def test_limit_fills_only_on_bars_that_trade_through(candle_factory):
    """Property: every maker fill of a long/short limit policy on random bars lies on a bar
    that traded through its price (low below a buy, high above a sell)."""
    candles = candle_factory(4000, seed=6)
    er, vol = noisy_forecast(candles, seed=6), np.full(4000, 0.008)
    ex = ExecutionConfig(entry="limit", exit="limit", limit_offset_bps=3, expire_bars=2)
    p = Policy(PolicyConfig(horizon=4, entry_margin=0.5, allow_short=True, execution=ex),
               CostConfig(), BPY)
    r = run_targets(candles, PolicyDecider(p, er, vol), RiskConfig(), CostConfig(),
                    BacktestConfig(), ex, atr=np.full(4000, 2.0))
    maker = r.fills[r.fills["slippage"] == 0.0]
    assert len(maker) > 50
    bar_low = candles["low"].to_numpy()[maker["bar"]]
    bar_high = candles["high"].to_numpy()[maker["bar"]]
    buys = maker["side"].to_numpy() > 0
    assert (bar_low[buys] < maker["price"].to_numpy()[buys]).all()
    assert (bar_high[~buys] > maker["price"].to_numpy()[~buys]).all()


# ---------------------------------------------------------------- the risk engine

def test_risk_engine_still_owns_stops_and_halts(candle_factory):
    """A long target held through a crash: the ATR stop exits; the policy may re-enter later,
    but a drawdown halt refuses it and the halt is a recorded decision."""
    o = np.r_[np.full(50, 100.0), np.linspace(100, 50, 50), np.full(50, 50.0)]
    candles = bars(o)
    risk = RiskConfig.model_validate({"exits": {"stop_atr_multiple": 3.0,
                                                "chandelier_atr_multiple": None,
                                                "breakeven_trigger_r": None},
                                      "limits": {"max_drawdown": 0.05}})
    r = run_targets(candles, TargetSeries(np.ones(150)), risk, CostConfig(), BacktestConfig(),
                    atr=np.full(150, 1.0))
    reasons = set(r.fills["reason"])
    assert "stop_loss" in reasons
    decisions = r.decisions
    assert "halt_max_drawdown" in set(decisions["reason"]) or \
        "reject_drawdown_halt" in set(decisions["reason"])
    assert r.position[-1] == 0.0


def test_kill_switch_flattens_and_stops_trading(candle_factory):
    candles = candle_factory(500, seed=7)
    candles["volume"] = 1e9
    kill_at = candles["timestamp"].iloc[200]
    r = run_targets(candles, TargetSeries(np.ones(500)), RiskConfig.plain(bars_per_year=BPY),
                    CostConfig(), BacktestConfig(), kill_at=kill_at)
    assert r.fills["reason"].iloc[-1] == "kill_switch"
    assert (r.position[202:] == 0).all()


def test_target_series_min_change():
    s = TargetSeries([0.5, 0.55, 0.7, 0.0, -0.2, math.nan], min_change=0.1)
    assert s.decide(0, 0.0, 0)[0] == 0.5
    assert s.decide(1, 0.5, 1)[0] == 0.5  # 0.05 < 0.1: hold
    assert s.decide(2, 0.5, 2)[0] == 0.7
    assert s.decide(3, 0.7, 3)[0] == 0.0  # flat always passes
    assert s.decide(4, 0.05, 0)[0] == -0.2  # a side change always passes
    assert s.decide(5, 0.3, 0)[0] == 0.3  # unknown: keep
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        TargetSeries([1.5])
