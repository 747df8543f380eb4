"""The policy is pure and does what its rule says: thresholds from costs, hysteresis, minimum
hold, vol targeting, long-only, no rebalance below min_change, no look at anything else."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from candlecast.backtest.config import CostConfig, ExecutionConfig
from candlecast.policy import (
    Forecast,
    Policy,
    PolicyConfig,
    PolicyReason,
    round_trip_cost,
    side_cost,
)

BPY = 17_520.0  # 30m bars per year
COSTS = CostConfig()  # taker 10 + half spread 1 + slippage 1 = 12 bps a side; maker 2


def make(**kw):
    return Policy(PolicyConfig(**kw), COSTS, BPY)


def test_round_trip_cost_by_style():
    assert side_cost(COSTS, "market") == pytest.approx(12e-4)
    assert side_cost(COSTS, "limit") == pytest.approx(2e-4)
    assert round_trip_cost(COSTS, ExecutionConfig()) == pytest.approx(24e-4)
    assert round_trip_cost(COSTS, ExecutionConfig(entry="limit")) == pytest.approx(14e-4)
    assert round_trip_cost(COSTS, ExecutionConfig(entry="limit", exit="limit")) == \
        pytest.approx(4e-4)


def test_entry_needs_the_edge_to_pay_the_round_trip_times_the_margin():
    p = make(entry_margin=2.0, vol_target=None, allow_short=True)
    thr = 2.0 * 24e-4
    assert p.decide(Forecast(thr * 0.99, 0.01), 0.0, 0).reason == PolicyReason.BELOW_ENTRY
    d = p.decide(Forecast(thr * 1.01, 0.01), 0.0, 0)
    assert d.reason == PolicyReason.ENTER_LONG and d.target == 1.0
    d = p.decide(Forecast(-thr * 1.01, 0.01), 0.0, 0)
    assert d.reason == PolicyReason.ENTER_SHORT and d.target == -1.0
    assert d.entry_threshold == pytest.approx(thr)


def test_long_only_never_shorts_and_leaves_a_short():
    p = make(entry_margin=1.0, vol_target=None, allow_short=False)
    assert p.decide(Forecast(-1.0, 0.01), 0.0, 0).target == 0.0
    d = p.decide(Forecast(0.5, 0.01), -0.4, 3)
    assert d.target == 0.0 and d.reason == PolicyReason.SHORT_NOT_ALLOWED


def test_hysteresis_holds_between_exit_and_entry_thresholds():
    p = make(entry_margin=2.0, exit_margin=0.5, min_hold_bars=0, vol_target=None)
    c = 24e-4
    between = 1.0 * c  # below entry (2c), above exit (0.5c)
    assert p.decide(Forecast(between, 0.01), 0.0, 0).target == 0.0  # flat stays flat
    d = p.decide(Forecast(between, 0.01), 1.0, 5)
    assert d.target == 1.0 and d.reason == PolicyReason.HOLD  # held stays held
    d = p.decide(Forecast(0.4 * c, 0.01), 1.0, 5)
    assert d.target == 0.0 and d.reason == PolicyReason.EXIT


def test_minimum_hold_delays_the_exit_but_not_forever():
    p = make(entry_margin=1.0, exit_margin=0.0, min_hold_bars=4, vol_target=None)
    for held in range(4):
        d = p.decide(Forecast(-0.0001, 0.01), 1.0, held)
        assert d.target == 1.0 and d.reason == PolicyReason.MIN_HOLD
    assert p.decide(Forecast(-0.0001, 0.01), 1.0, 4).reason == PolicyReason.EXIT


def test_reversal_when_the_other_side_clears_the_entry_threshold():
    p = make(entry_margin=1.0, exit_margin=0.0, min_hold_bars=0, vol_target=None,
             allow_short=True)
    d = p.decide(Forecast(-0.01, 0.01), 1.0, 3)
    assert d.target == -1.0 and d.reason == PolicyReason.REVERSE


@pytest.mark.parametrize("vol", [0.002, 0.004, 0.008])
def test_vol_targeting_scales_inversely_with_volatility(vol):
    p = make(entry_margin=1.0, vol_target=0.5, max_position=1.0)
    d = p.decide(Forecast(0.05, vol), 0.0, 0)
    expected = min(1.0, 0.5 / (vol * math.sqrt(BPY)))
    assert d.target == pytest.approx(expected)
    assert p.size(vol / 2) == pytest.approx(min(1.0, 2 * expected))


def test_no_rebalance_below_min_change_but_resize_above():
    p = make(entry_margin=1.0, vol_target=0.5, min_change=0.1)
    vol = 0.5 / (0.6 * math.sqrt(BPY))  # vol-target size 0.6
    assert p.decide(Forecast(0.05, vol), 0.55, 9).target == 0.55  # |0.6 - 0.55| < 0.1: hold
    d = p.decide(Forecast(0.05, vol), 0.45, 9)
    assert d.reason == PolicyReason.REBALANCE and d.target == pytest.approx(0.6)


def test_unknown_forecast_keeps_the_position_and_opens_nothing():
    p = make(entry_margin=1.0)
    assert p.decide(Forecast(math.nan, 0.01), 0.0, 0).target == 0.0
    d = p.decide(Forecast(math.nan, 0.01), 0.7, 3)
    assert d.target == 0.7 and d.reason == PolicyReason.NO_FORECAST
    assert p.decide(Forecast(0.5, math.nan), 0.0, 0).target == 0.0  # cannot size: no entry


def test_pure_same_inputs_same_answer_and_no_state():
    p = make(entry_margin=1.0, allow_short=True)
    rng = np.random.default_rng(3)
    cases = [(Forecast(float(e), float(v)), float(pos), int(h)) for e, v, pos, h in zip(
        rng.normal(0, 0.01, 200), rng.uniform(0.001, 0.02, 200), rng.uniform(-1, 1, 200),
        rng.integers(0, 10, 200), strict=True)]
    first = [p.decide(*c) for c in cases]
    again = [p.decide(*c) for c in reversed(cases)][::-1]
    assert first == again


def test_config_rejects_exit_at_or_above_entry():
    with pytest.raises(ValidationError, match="exit_margin"):
        PolicyConfig(entry_margin=1.0, exit_margin=1.0)
