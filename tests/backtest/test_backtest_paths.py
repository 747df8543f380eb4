"""The vectorized and event-driven paths agree on plain signals; the fast paths are exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.backtest import (
    BacktestConfig,
    CostConfig,
    buy_and_hold,
    prepare_market,
    run_event_driven,
    run_vectorized,
    sma_crossover_signal,
)
from candlecast.risk import ExitConfig, LimitsConfig, RiskConfig, SizingConfig


@pytest.fixture(scope="module")
def real(btc_1h):
    return prepare_market(btc_1h.sort_values("timestamp").reset_index(drop=True))


def simple_atr(market, window=14):
    prev = np.concatenate([[market.close[0]], market.close[:-1]])
    tr = np.maximum(market.high - market.low,
                    np.maximum(np.abs(market.high - prev), np.abs(market.low - prev)))
    return pd.Series(tr).rolling(window).mean().to_numpy()


@pytest.mark.parametrize("costs", [CostConfig(), CostConfig.commission_only(10),
                                   CostConfig(funding_rate_8h=0.0001, max_participation=0.02)],
                         ids=["default", "commission", "funding+tight-volume"])
@pytest.mark.parametrize("long_only", [True, False], ids=["long", "long-short"])
def test_vectorized_equals_event_driven_on_plain_signals(real, costs, long_only):
    sig = sma_crossover_signal(real.close, 10, 30, long_only=long_only)
    vec = run_vectorized(real, sig, costs)
    evt = run_event_driven(real, sig, RiskConfig.plain(), costs)
    np.testing.assert_allclose(vec.equity, evt.equity, rtol=1e-9)
    np.testing.assert_allclose(vec.position, evt.position, rtol=1e-9, atol=1e-12)
    assert vec.fills["bar"].tolist() == evt.fills["bar"].tolist()
    assert vec.fills["reason"].tolist() == evt.fills["reason"].tolist()
    assert len(vec.trades) == len(evt.trades) > 100
    np.testing.assert_allclose(vec.trades["pnl"], evt.trades["pnl"], rtol=1e-7, atol=1e-6)


def test_fractional_positions_agree_too(candle_factory):
    c = candle_factory(2000, seed=11)
    sig = sma_crossover_signal(c["close"].to_numpy(), 5, 20, long_only=False)
    cfg = BacktestConfig(position_fraction=0.4)
    vec = run_vectorized(c, sig, CostConfig(), cfg)
    evt = run_event_driven(c, sig, RiskConfig.plain(0.4), CostConfig(), cfg)
    np.testing.assert_allclose(vec.equity, evt.equity, rtol=1e-9)


def test_linear_scan_equals_the_order_loop(real):
    sig = sma_crossover_signal(real.close, 10, 30, long_only=False)
    for costs in (CostConfig.commission_only(10),
                  CostConfig(impact_bps=0, max_participation=None)):
        scan = run_vectorized(real, sig, costs)
        loop = run_vectorized(real, sig, costs, use_scan=False)
        np.testing.assert_allclose(scan.equity, loop.equity, rtol=1e-10)
        assert scan.fills["reason"].tolist() == loop.fills["reason"].tolist()


ALL_EXITS = ExitConfig(stop_loss_pct=0.03, stop_atr_multiple=2.0, take_profit_r=3.0,
                       trailing_pct=0.02, chandelier_atr_multiple=2.5, breakeven_trigger_r=0.7,
                       time_stop_bars=48)
FAST_VS_PER_BAR = {  # name: (risk, costs, backtest config, extra run_event_driven arguments)
    "default": (RiskConfig(), CostConfig(), BacktestConfig(), {}),
    "bench_long_only": (RiskConfig(limits=LimitsConfig(max_drawdown=None)),
                        CostConfig.commission_only(10), BacktestConfig(allow_short=False), {}),
    "all_exits_tight_limits": (
        RiskConfig(exits=ALL_EXITS,
                   limits=LimitsConfig(max_drawdown=0.15, max_daily_loss=0.01,
                                       cooldown_bars_after_loss=3, max_trades_per_day=3)),
        CostConfig(), BacktestConfig(reenter=True), {}),
    "limits_without_close_on_halt": (
        RiskConfig(limits=LimitsConfig(max_drawdown=0.2, max_daily_loss=0.02,
                                       cooldown_bars_after_loss=3, close_on_halt=False)),
        CostConfig(), BacktestConfig(), {}),
    "trailing_and_target_only": (
        RiskConfig(sizing=SizingConfig(method="fixed_notional", notional_fraction=0.5),
                   exits=ExitConfig(stop_atr_multiple=None, chandelier_atr_multiple=None,
                                    breakeven_trigger_r=None, trailing_pct=0.015,
                                    take_profit_pct=0.04)),
        CostConfig(), BacktestConfig(), {}),
    "funding_and_partial_fills": (RiskConfig(exits=ExitConfig(time_stop_bars=12,
                                                              take_profit_r=2.0)),
                                  CostConfig(max_participation=0.02), BacktestConfig(),
                                  {"funding": True}),
    "kill_switch": (RiskConfig(), CostConfig(), BacktestConfig(), {"kill_at": 0.6}),
    "plain": (RiskConfig.plain(), CostConfig(), BacktestConfig(), {}),
}


@pytest.mark.parametrize("name", list(FAST_VS_PER_BAR))
def test_the_fast_path_equals_the_per_bar_engine_calls(real, name):
    """run_event_driven's fast path (flat bars jumped over, RiskEngine.hold through bars in a
    trade where nothing happens) against quiet_ok=False, which calls check_exit and
    on_bar_close on every bar in a trade: the same equity, fills, decisions and reasons, and
    final risk state, to the last bit, on real data with every exit and limit active."""
    risk, costs, cfg, extra = FAST_VS_PER_BAR[name]
    sig = sma_crossover_signal(real.close, 10, 30, long_only=not cfg.allow_short)
    kwargs = {"atr": simple_atr(real), "volatility": None}
    if "kill_at" in extra:
        kwargs["kill_at"] = real.timestamps[int(real.n * extra["kill_at"])]
    if "funding" in extra:  # a per-bar rate that changes sign
        kwargs["funding"] = 1e-4 * np.cos(np.arange(real.n) / 7.0)
    fast = run_event_driven(real, sig, risk, costs, cfg, **kwargs)
    slow = run_event_driven(real, sig, risk, costs, cfg, quiet_ok=False, **kwargs)
    assert np.array_equal(fast.equity, slow.equity)
    assert np.array_equal(fast.position, slow.position)
    assert fast.fills.equals(slow.fills)
    assert fast.decisions.equals(slow.decisions)
    assert fast.trades.equals(slow.trades)
    assert fast.final_risk_state.to_dict() == slow.final_risk_state.to_dict()
    assert len(fast.decisions) > 100 and fast.final_equity != cfg.initial_equity


def test_the_fast_path_cases_reach_every_exit_and_limit(real):
    """The cases above are not hollow: between them they exit by every rule and halt."""
    reasons = set()
    for name in FAST_VS_PER_BAR:
        risk, costs, cfg, extra = FAST_VS_PER_BAR[name]
        sig = sma_crossover_signal(real.close, 10, 30, long_only=not cfg.allow_short)
        kill = ({"kill_at": real.timestamps[int(real.n * extra["kill_at"])]} if "kill_at" in extra
                else {})
        res = run_event_driven(real, sig, risk, costs, cfg, atr=simple_atr(real), **kill)
        reasons |= set(res.decisions["reason"])
    assert {"stop_loss", "trailing_stop", "chandelier_stop", "breakeven_stop", "take_profit",
            "time_stop", "halt_daily_loss", "halt_max_drawdown", "kill_switch", "signal_exit",
            "reject_cooldown", "reject_max_trades_per_day"} <= reasons


def test_buy_and_hold_pays_costs_once(real):
    held = buy_and_hold(real, CostConfig.commission_only(10))
    assert held.fills["bar"].tolist() == [1]
    gross = 10_000 / real.open[1] * real.close[-1] / (1 + 0.001)
    assert held.final_equity == pytest.approx(gross, rel=1e-3)
    assert held.final_equity < buy_and_hold(real, CostConfig.zero()).final_equity
