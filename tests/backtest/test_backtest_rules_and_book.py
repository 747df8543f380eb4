"""Rule baselines by hand and without look-ahead; the book on one time axis with gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.backtest.book import book_curve, book_equity, book_summary
from candlecast.backtest.config import BacktestConfig, CostConfig
from candlecast.backtest.rules import (
    RuleConfig,
    donchian_targets,
    rule_targets,
    sma_crossover_targets,
    tsmom_targets,
    vol_target_size,
)
from candlecast.backtest.targets import TargetSeries, run_targets


def test_sma_crossover_by_hand():
    close = np.array([1, 2, 3, 4, 3, 2, 1, 1, 2, 3], dtype=float)
    out = sma_crossover_targets(close, 2, 4)
    assert np.isnan(out[:3]).all()
    # t=3: SMA2 3.5 > SMA4 2.5 -> 1; t=5: SMA2 2.5 < SMA4 3.0 -> 0
    assert out[3] == 1.0 and out[4] == 1.0 and out[5] == 0.0 and out[6] == 0.0


def test_donchian_enters_on_a_break_of_the_previous_high_and_leaves_on_the_low():
    high = np.array([10, 11, 10, 12, 13, 12, 11, 10, 9, 12], dtype=float)
    low = high - 1
    close = high - 0.5
    out = donchian_targets(high, low, close, entry=2, exit_=2)
    # t=3: close 11.5 > max(high[1:3]) = 11 -> long; t=5: 11.5 is not below min(low[3:5]) =
    # 11 -> still long; t=6: close 10.5 < min(low[4:6]) = 11 -> flat
    assert out[2] == 0.0 and out[3] == 1.0 and out[5] == 1.0 and out[6] == 0.0


def test_tsmom_and_vol_target_size():
    vol = np.array([0.01, 0.02, np.nan, 0.0])
    size = vol_target_size(vol, 0.5, 10_000.0)
    assert size[0] == pytest.approx(0.5) and size[1] == pytest.approx(0.25)
    assert np.isnan(size[2]) and np.isnan(size[3])
    close = np.array([1.0, 2.0, 1.5, 1.0])
    out = tsmom_targets(close, 2, np.full(4, 0.01), 0.5, 10_000.0)
    assert np.isnan(out[:2]).all() and out[2] == pytest.approx(0.5) and out[3] == \
        pytest.approx(-0.5)


def test_rules_never_look_ahead(candle_factory):
    candles = candle_factory(1500, seed=11)
    vol = np.full(1500, 0.01)
    base = rule_targets(candles["high"].to_numpy(), candles["low"].to_numpy(),
                        candles["close"].to_numpy(), vol, RuleConfig(), 8760.0)
    shaken = candles.copy()
    cut = 1000
    for col in ("high", "low", "close"):
        shaken.loc[cut:, col] = shaken.loc[cut:, col].to_numpy()[::-1]
    other = rule_targets(shaken["high"].to_numpy(), shaken["low"].to_numpy(),
                         shaken["close"].to_numpy(), vol, RuleConfig(), 8760.0)
    for name in base:
        np.testing.assert_array_equal(base[name][:cut], other[name][:cut], err_msg=name)


def _flat_result(candles, name):
    return run_targets(candles, TargetSeries(np.zeros(len(candles))), None, CostConfig(),
                       BacktestConfig(), name=name)


def test_the_book_sums_the_accounts_and_never_invents_a_price(candle_factory):
    a = candle_factory(100, seed=1)
    b = candle_factory(100, seed=2)
    b = b.drop(index=range(40, 50)).reset_index(drop=True)  # a gap: no price there
    hold_a = run_targets(a, TargetSeries(np.ones(100)), None, CostConfig.zero(),
                         BacktestConfig())
    flat_b = _flat_result(b, "b")
    curve = book_curve([hold_a, flat_b])
    assert len(curve) == 100  # the union of the bars
    np.testing.assert_allclose(curve.to_numpy(), hold_a.equity + 10_000.0)  # b stays flat
    equity = book_equity([hold_a, flat_b])
    assert equity[0] == 20_000.0 and len(equity) == 101
    summary = book_summary([hold_a, flat_b])
    assert summary["trade_count"] == len(hold_a.trades)
    assert summary["exposure"] == pytest.approx((hold_a.position != 0).mean() / 2)


def test_a_coin_listed_later_counts_with_its_initial_equity(candle_factory):
    a = candle_factory(100, seed=3)
    late = candle_factory(60, seed=4, start=str(a["timestamp"].iloc[40].tz_localize(None)))
    curve = book_curve([_flat_result(a, "a"), _flat_result(late, "late")])
    assert (curve == 20_000.0).all() and curve.index[0] == a["timestamp"].iloc[0]
    assert isinstance(curve.index, pd.DatetimeIndex)
