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
from candlecast.risk import LimitsConfig, RiskConfig


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


def test_skipping_quiet_bars_changes_nothing(real):
    sig = sma_crossover_signal(real.close, 10, 30, long_only=False)
    atr = simple_atr(real)
    configs = [RiskConfig(),
               RiskConfig(limits=LimitsConfig(max_drawdown=0.2, max_daily_loss=0.02,
                                              cooldown_bars_after_loss=3, close_on_halt=False))]
    for risk in configs:
        fast = run_event_driven(real, sig, risk, CostConfig(), atr=atr)
        slow = run_event_driven(real, sig, risk, CostConfig(), atr=atr, quiet_ok=False)
        assert np.array_equal(fast.equity, slow.equity)
        assert fast.decisions.equals(slow.decisions)
        assert len(fast.decisions) > 300


def test_buy_and_hold_pays_costs_once(real):
    held = buy_and_hold(real, CostConfig.commission_only(10))
    assert held.fills["bar"].tolist() == [1]
    gross = 10_000 / real.open[1] * real.close[-1] / (1 + 0.001)
    assert held.final_equity == pytest.approx(gross, rel=1e-3)
    assert held.final_equity < buy_and_hold(real, CostConfig.zero()).final_equity
